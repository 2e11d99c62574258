/**
 * The naive baseline the benchmarks measure the sinks against: the same guarded, idempotent
 * write of each target, but one record per round trip and no batching (the checkpoint rides
 * with the last record). Works with every {@link Sink}, so the ratio a benchmark prints is the
 * gain of batching alone — not of a weaker guarantee.
 */
import type { Checkpoint, Sink, SinkRecord, SinkWriteResult } from './sink.ts';

/** Writes `records` one at a time through `sink`, then (with the last) the checkpoint. */
export async function writeOneByOne(
  sink: Sink,
  records: readonly SinkRecord[],
  checkpoint?: { name: string; position: Checkpoint },
): Promise<SinkWriteResult> {
  const total: SinkWriteResult = { written: 0, skipped: 0 };
  if (records.length === 0) {
    if (checkpoint !== undefined) await sink.write([], checkpoint);
    return total;
  }
  for (let i = 0; i < records.length; i++) {
    const last = i === records.length - 1;
    const result = await sink.write([records[i]], last ? checkpoint : undefined);
    total.written += result.written;
    total.skipped += result.skipped;
  }
  return total;
}
