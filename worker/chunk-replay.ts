/**
 * The replay of one seed chunk: reads its offset range from the log, runs the product's filter
 * and transform, and writes the records without a checkpoint (sinks are order-independent, so
 * chunks may run in parallel and in any order). Only events of the product's types are read
 * (`processed` counts those). Resumes after its cursor — the last offset of a written batch — so
 * a retried chunk does not start over. Reading the next batch overlaps with
 * writing the previous one; at most one write is in flight, so memory stays bounded and a slow
 * sink slows the reading down.
 */
import type { EventLog } from '../lib/eventlog/event-log.ts';
import { processBatch, writeBatch } from './batch-writer.ts';
import type { CompiledProduct } from './compiled-product.ts';
import type { DeadLetterQueue } from './dead-letter-queue.ts';
import type { ChunkProgress } from './pipeline-state-store.ts';
import type { SeedChunk } from './seed-plan.ts';
import type { Sink } from './sinks/sink.ts';

/** What a chunk replay needs. */
export interface ChunkReplayOptions {
  eventLog: EventLog;
  sink: Sink;
  product: CompiledProduct;
  deadLetters: DeadLetterQueue;
  /** Events per read (default 1000). */
  batchSize?: number;
}

/**
 * Called after each written batch with the chunk's progress (and the seconds the batch took to
 * run through the filter and transform and be written), and once more when the chunk is done;
 * may persist it.
 */
export type ChunkProgressListener = (progress: ChunkProgress, batchSeconds?: number) => Promise<void>;

/** Replays seed chunks of one product. */
export class ChunkReplay {
  private readonly options: Required<ChunkReplayOptions>;

  constructor(options: ChunkReplayOptions) {
    this.options = { batchSize: 1000, ...options };
  }

  /**
   * Replays `chunk` from after `progress.cursor` (from its start when null) to its end, or until
   * `signal` aborts (then after the in-flight write). Returns the final progress, `done` when
   * the chunk's range was read to its end.
   */
  async run(
    chunk: SeedChunk,
    progress: ChunkProgress,
    signal: AbortSignal,
    onProgress: ChunkProgressListener,
  ): Promise<ChunkProgress> {
    const { eventLog, sink, product, deadLetters, batchSize } = this.options;
    let current: ChunkProgress = { ...progress };
    if (current.done) return current;
    const range = current.cursor === null ? { from: chunk.from } : { after: current.cursor };
    // The log filters by type without parsing, so events of other types cost next to nothing.
    const types = product.types === null ? undefined : [...product.types];
    const scan = eventLog.scan(chunk.stream, { ...range, to: chunk.to, batchSize, types });
    let inFlight: Promise<void> | null = null;
    let interrupted = false;
    for await (const events of scan) {
      if (signal.aborted) {
        interrupted = true;
        break;
      }
      const started = performance.now();
      const batch = processBatch(product, events, chunk.stream);
      const processing = performance.now() - started;
      const last = events[events.length - 1].offset;
      const count = events.length;
      if (inFlight !== null) await inFlight;
      if (signal.aborted) {
        interrupted = true;
        break;
      }
      const writing = performance.now();
      inFlight = writeBatch(sink, deadLetters, batch).then(async ({ written, deadLettered }) => {
        const seconds = (processing + performance.now() - writing) / 1000;
        current = {
          cursor: last,
          processed: current.processed + count,
          written: current.written + written,
          deadLettered: current.deadLettered + deadLettered,
          done: false,
        };
        await onProgress(current, seconds);
      });
      // Awaited before the next write or at the end; until then a failure must not count as unhandled.
      inFlight.catch(() => undefined);
    }
    if (inFlight !== null) await inFlight;
    if (interrupted || signal.aborted) return current;
    current = { ...current, done: true };
    await onProgress(current);
    return current;
  }
}
