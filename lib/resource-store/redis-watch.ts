/**
 * A watch over the embedded resource store's change stream: an async iterable of
 * {@link WatchEvent}s read with `XREAD BLOCK` on a connection of its own.
 */
import type { Redis } from 'ioredis';
import { OfftakeError } from '../errors.ts';
import type { StoredDataProduct, Watch, WatchEvent } from './resource-store.ts';

/** What a {@link RedisWatch} reads and from where. */
export interface RedisWatchOptions {
  /** A dedicated connection: blocking reads would stall every other command on a shared one. The watch owns it. */
  connection: Redis;
  /** The change stream's key. */
  changesKey: string;
  /** The resourceVersion the watch starts after; rejects (e.g. `watch-expired`) when it cannot start. */
  startAfter: Promise<number>;
  /** Only changes in this namespace; all when absent. */
  namespace?: string;
  /** How long one XREAD blocks before it is reissued, in milliseconds. */
  blockMs?: number;
  /** How many changes one XREAD fetches at most. */
  batchSize?: number;
  /** Called once when the watch closes, so its owner can forget it. */
  onClose?: () => void;
}

/**
 * One running watch over the change stream. Entry IDs are `<resourceVersion>-1` and every
 * resourceVersion has exactly one entry, so reading after `<N>-1` yields every change after
 * N in order, and a hole in the sequence means the stream was trimmed past this reader: the
 * watch then fails with `watch-expired` (HTTP 410) rather than silently skipping changes.
 */
export class RedisWatch implements Watch {
  private readonly connection: Redis;
  private readonly changesKey: string;
  private readonly startAfter: Promise<number>;
  private readonly namespace: string | undefined;
  private readonly blockMs: number;
  private readonly batchSize: number;
  private readonly onClose: (() => void) | undefined;
  private readonly events: AsyncGenerator<WatchEvent, void, undefined>;
  private closed = false;

  constructor(opts: RedisWatchOptions) {
    this.connection = opts.connection;
    this.changesKey = opts.changesKey;
    this.startAfter = opts.startAfter;
    this.namespace = opts.namespace;
    this.blockMs = opts.blockMs ?? 5000;
    this.batchSize = opts.batchSize ?? 256;
    this.onClose = opts.onClose;
    // Failures reach the consumer as rejected reads; without a listener ioredis would also
    // print every connection error to stderr.
    this.connection.on('error', () => undefined);
    // Nobody may be iterating yet; the start is awaited (and its rejection reported) on the first read.
    this.startAfter.catch(() => undefined);
    this.events = this.read();
  }

  [Symbol.asyncIterator](): AsyncGenerator<WatchEvent, void, undefined> {
    return this.events;
  }

  /** Stops the watch: a pending read ends at once (iteration finishes) and the connection is released. */
  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      // disconnect, not quit: QUIT would queue behind the blocking XREAD.
      this.connection.disconnect();
      this.onClose?.();
    }
    return Promise.resolve();
  }

  private async *read(): AsyncGenerator<WatchEvent, void, undefined> {
    try {
      let last: number;
      try {
        last = await this.startAfter;
      } catch (err) {
        if (this.closed) return;
        throw err;
      }
      while (!this.closed) {
        let reply: [key: string, entries: [id: string, fields: string[]][]][] | null;
        try {
          reply = await this.connection.xread(
            'COUNT',
            this.batchSize,
            'BLOCK',
            this.blockMs,
            'STREAMS',
            this.changesKey,
            `${last}-1`,
          );
        } catch (err) {
          if (this.closed) return;
          throw new OfftakeError('unavailable', 'The resource store watch lost its Redis connection.', {
            cause: err,
          });
        }
        if (reply === null || reply.length === 0) continue;
        for (const [id, fields] of reply[0][1]) {
          const version = Number(id.slice(0, id.indexOf('-')));
          if (version !== last + 1) {
            throw new OfftakeError(
              'watch-expired',
              `The watch fell behind: the changes after resourceVersion ${last} are no longer kept (the oldest kept is ${version}). List again and watch from the list's resourceVersion.`,
            );
          }
          last = version;
          const event = decodeChange(fields, String(version));
          if (this.namespace !== undefined && event.object.metadata.namespace !== this.namespace) continue;
          yield event;
          if (this.closed) return;
        }
      }
    } finally {
      await this.close();
    }
  }
}

/** Turns a change-stream entry's fields into a watch event stamped with its resourceVersion. */
function decodeChange(fields: string[], resourceVersion: string): WatchEvent {
  let type: string | undefined;
  let json: string | undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    if (fields[i] === 'type') type = fields[i + 1];
    else if (fields[i] === 'object') json = fields[i + 1];
  }
  if ((type !== 'ADDED' && type !== 'MODIFIED' && type !== 'DELETED') || json === undefined) {
    throw new OfftakeError(
      'internal',
      `The change stream holds a malformed entry at resourceVersion ${resourceVersion}.`,
    );
  }
  const object = JSON.parse(json) as StoredDataProduct;
  object.metadata.resourceVersion = resourceVersion;
  return { type, object };
}
