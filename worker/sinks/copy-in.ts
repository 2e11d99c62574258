/**
 * Streaming data into `COPY ... FROM STDIN` through `pg-copy-streams`, with backpressure and
 * without the library's sharp edges: after the server rejected the data, its stream no longer
 * has a connection, and a chunk still buffered in it would be flushed into a null connection
 * from a socket 'drain' handler — an uncaught exception. So on the first error nothing more is
 * written and the stream is destroyed at once (dropping what it buffered; a CopyFail it may send
 * then is ignored by the server, which has left copy mode). When the data source throws, the
 * stream is destroyed with that error, which sends CopyFail: the server aborts the COPY and the
 * connection stays usable (for the caller's ROLLBACK, which pg queues behind the COPY).
 */
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';

/** How many bytes the COPY stream buffers before `write()` asks the writer to wait. */
const HIGH_WATER_MARK = 256 * 1024;

/** How much is written before the writer yields to the event loop, even when write() never says wait. */
const SLICE = 1024 * 1024;

/**
 * Runs `sql` (a `COPY ... FROM STDIN`) on `client` and streams `chunks` into it, waiting for
 * 'drain' whenever `write()` returns false. Resolves with the number of rows copied once the
 * server has committed the COPY to the current transaction; rejects with the server's error, or
 * with the error the source threw (the COPY is then aborted). Either way the connection is ready
 * for the next statement, which in a transaction must be a ROLLBACK after a rejection.
 */
export function copyIn(
  client: pg.ClientBase,
  sql: string,
  chunks: Iterable<string | Buffer>,
): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const copy = client.query(copyFrom(sql, { highWaterMark: HIGH_WATER_MARK }));
    const source = chunks[Symbol.iterator]();
    let settled = false;
    // Stays attached: after the first error the stream may report again (the server's answer
    // to our CopyFail, or its own destroy), and an 'error' without a listener would crash.
    copy.on('error', (err: Error) => {
      if (settled) return;
      settled = true;
      copy.destroy();
      reject(err);
    });
    // 'finish' comes after the server's CommandComplete and ReadyForQuery.
    copy.on('finish', () => {
      if (settled) return;
      settled = true;
      resolve(copy.rowCount);
    });
    const pump = (): void => {
      if (settled) return;
      let sent = 0;
      try {
        for (let next = source.next(); next.done !== true; next = source.next()) {
          sent += next.value.length;
          if (!copy.write(next.value)) {
            copy.once('drain', () => setImmediate(pump));
            return;
          }
          // A local socket often takes every write at once, so write() keeps returning true
          // and this loop would send the whole batch without the event loop ever reading the
          // socket: a server error (say at row 1) would go unnoticed until the end. Let it
          // read between slices.
          if (sent >= SLICE) {
            setImmediate(pump);
            return;
          }
        }
      } catch (err) {
        const error = err instanceof Error ? err : new Error(String(err));
        settled = true;
        copy.destroy(error);
        reject(error);
        return;
      }
      copy.end();
    };
    pump();
  });
}
