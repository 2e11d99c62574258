/**
 * The live tail of one product: follows each source stream from the checkpoint on (events of the
 * product's types only: the checkpoint is the last of those applied), runs every
 * batch through the filter and transform, and writes its records with the new checkpoint in the
 * same atomic step of the sink — the checkpoint never runs ahead of the data. Batches of all
 * streams go through one writer, one at a time, and the next batch of a stream is read only
 * after the previous one is written: a slow sink slows the reading down.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { isOfftakeError } from '../lib/errors.ts';
import {
  OFFSET_ZERO,
  compareOffsets,
  type EventLog,
  type LogEvent,
  type Offset,
} from '../lib/eventlog/event-log.ts';
import { processBatch, writeBatch } from './batch-writer.ts';
import type { CompiledProduct } from './compiled-product.ts';
import type { DeadLetterQueue } from './dead-letter-queue.ts';
import type { Checkpoint, Sink } from './sinks/sink.ts';

/** What a live tail needs. */
export interface LiveTailOptions {
  eventLog: EventLog;
  sink: Sink;
  product: CompiledProduct;
  deadLetters: DeadLetterQueue;
  /** The name the checkpoint is stored under in the sink. */
  checkpointName: string;
  /** Most events per batch (default 1000). */
  batchSize?: number;
  /** How often to look again for a source stream that does not exist yet, in ms (default 2000). */
  missingStreamRetryMs?: number;
  /**
   * When to purge the sink's tombstones: those of events more than `retentionMs` older than the
   * checkpoint on every stream, at most once per `intervalMs`, after a committed batch. Absent:
   * never.
   */
  tombstonePurge?: TombstonePurge;
  /**
   * Told when a purge fails. A purge is housekeeping: its failure never stops the tail, and the
   * purge is tried again after the interval.
   */
  onPurgeError?: (err: unknown) => void;
}

/** See {@link LiveTailOptions.tombstonePurge}. */
export interface TombstonePurge {
  retentionMs: number;
  intervalMs: number;
}

/** What the tail reports after each committed batch. */
export interface TailBatchReport {
  checkpoint: Checkpoint;
  processed: number;
  written: number;
  deadLettered: number;
  /** Tombstones purged after this batch. */
  tombstonesPurged: number;
  /** Seconds the batch took to run through the filter and transform and be written. */
  seconds: number;
}

/**
 * The bound below which a tail's tombstones may go, in ms of an offset (decimal), or undefined
 * while some stream has no checkpoint. Every event still to come on stream S lies after the
 * checkpoint of S, so none is older than the earliest checkpoint: a tombstone older than that
 * can never again be needed to turn an older event away. `retentionMs` keeps them longer still,
 * for a worker that lost its job without noticing yet.
 */
export function tombstoneBound(
  streams: readonly string[],
  position: Checkpoint,
  retentionMs: number,
): string | undefined {
  let earliest: Offset | undefined;
  for (const stream of streams) {
    const offset = position[stream];
    if (offset === undefined) return undefined;
    if (earliest === undefined || compareOffsets(offset, earliest) < 0) earliest = offset;
  }
  if (earliest === undefined) return undefined;
  const bound = BigInt(earliest.slice(0, earliest.indexOf('-'))) - BigInt(retentionMs);
  return bound > 0n ? bound.toString() : undefined;
}

type Step = { stream: string; result: IteratorResult<LogEvent[]> };

/** Sleeps `ms`, or less when `signal` aborts (never rejects). */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return delay(ms, undefined, { signal }).catch(() => undefined);
}

/** Follows a product's source streams into its sink. */
export class LiveTail {
  private readonly options: LiveTailOptions &
    Required<Omit<LiveTailOptions, 'tombstonePurge' | 'onPurgeError'>>;
  /** When tombstones were last purged (ms since the epoch; 0: not yet, so the first batch purges). */
  private lastPurge = 0;

  constructor(options: LiveTailOptions) {
    this.options = { batchSize: 1000, missingStreamRetryMs: 2000, ...options };
  }

  /**
   * Tails from `start` (per stream, the last applied offset) until `signal` aborts; then the
   * batch being written is finished and the last committed checkpoint returned. Rejects when
   * reading or writing fails; the committed checkpoint is the place to resume from.
   */
  async run(
    start: Checkpoint,
    signal: AbortSignal,
    onBatch?: (report: TailBatchReport) => void | Promise<void>,
  ): Promise<Checkpoint> {
    const { sink, product, deadLetters, checkpointName } = this.options;
    const position: Checkpoint = { ...start };
    // Our own controller stops the followers when we leave on an error, too.
    const stop = new AbortController();
    const forward = () => stop.abort();
    signal.addEventListener('abort', forward, { once: true });
    if (signal.aborted) stop.abort();
    const iterators = new Map<string, AsyncIterator<LogEvent[]>>();
    const pending = new Map<string, Promise<Step>>();
    const arm = (stream: string) => {
      const step = iterators
        .get(stream)!
        .next()
        .then((result) => ({ stream, result }));
      // Raced below; a follower that fails after we stopped listening must not count as unhandled.
      step.catch(() => undefined);
      pending.set(stream, step);
    };
    try {
      for (const stream of product.streams) {
        iterators.set(stream, this.follow(stream, position[stream], stop.signal)[Symbol.asyncIterator]());
        arm(stream);
      }
      while (pending.size > 0 && !stop.signal.aborted) {
        const { stream, result } = await Promise.race(pending.values());
        pending.delete(stream);
        if (result.done === true) continue;
        const events = result.value;
        const started = performance.now();
        const batch = processBatch(product, events, stream);
        const next = { ...position, [stream]: events[events.length - 1].offset };
        const { written, deadLettered } = await writeBatch(sink, deadLetters, batch, {
          name: checkpointName,
          position: next,
        });
        const seconds = (performance.now() - started) / 1000;
        Object.assign(position, next);
        const tombstonesPurged = await this.purgeTombstones(position);
        await onBatch?.({
          checkpoint: { ...position },
          processed: events.length,
          written,
          deadLettered,
          tombstonesPurged,
          seconds,
        });
        arm(stream);
      }
      return { ...position };
    } finally {
      signal.removeEventListener('abort', forward);
      stop.abort();
      // Let every follower see the abort and release its connection.
      await Promise.allSettled([...pending.values()]);
      await Promise.allSettled([...iterators.values()].map(async (it) => it.return?.()));
    }
  }

  /** Purges the sink's tombstones behind `position` when a purge is due; answers how many went. */
  private async purgeTombstones(position: Checkpoint): Promise<number> {
    const { sink, tombstonePurge, product } = this.options;
    if (tombstonePurge === undefined || sink.purgeTombstones === undefined) return 0;
    const now = Date.now();
    if (now - this.lastPurge < tombstonePurge.intervalMs) return 0;
    const bound = tombstoneBound(product.streams, position, tombstonePurge.retentionMs);
    if (bound === undefined) return 0;
    this.lastPurge = now;
    try {
      return await sink.purgeTombstones(bound);
    } catch (err) {
      this.options.onPurgeError?.(err);
      return 0;
    }
  }

  /** Follows one stream after `after`, waiting for the stream to be created when it does not exist yet. */
  private async *follow(
    stream: string,
    after: Offset | undefined,
    signal: AbortSignal,
  ): AsyncGenerator<LogEvent[]> {
    const { eventLog, batchSize, missingStreamRetryMs, product } = this.options;
    const types = product.types === null ? undefined : [...product.types];
    // Never "from now": a stream without a position is followed from its start.
    let last = after ?? OFFSET_ZERO;
    while (!signal.aborted) {
      try {
        for await (const events of eventLog.follow(stream, { after: last, batchSize, signal, types })) {
          last = events[events.length - 1].offset;
          yield events;
        }
        return;
      } catch (err) {
        if (!isOfftakeError(err, 'stream-not-found') || signal.aborted) throw err;
        await pause(missingStreamRetryMs, signal);
      }
    }
  }
}
