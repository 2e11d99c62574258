/**
 * Seed planning: fixes the high-water mark of every source stream and splits the replay range
 * `[start, highWaterMark]` into chunks that workers can process in parallel, in any order.
 * A pure function of what the log reported, so the plan can be stored and reused after a crash.
 */
import type { DataProductSpec } from '../crds/generated/types.ts';
import {
  OFFSET_ZERO,
  compareOffsets,
  offsetAtTime,
  offsetTime,
  parseOffset,
  previousOffset,
  type Offset,
  type StreamInfo,
} from '../lib/eventlog/event-log.ts';
import { OfftakeError } from '../lib/errors.ts';
import type { Checkpoint } from './sinks/sink.ts';

/** One piece of the replay: an inclusive offset range of one stream. */
export interface SeedChunk {
  index: number;
  stream: string;
  from: Offset;
  to: Offset;
  /** Events the chunk is expected to hold (exact when the chunk spans its whole stream). */
  estimatedEvents: number;
}

/** What the seed replays. */
export interface SeedPlan {
  /** Per source stream, the last offset when the seed began ({@link OFFSET_ZERO} when empty). */
  highWaterMark: Checkpoint;
  chunks: SeedChunk[];
  /** Events to replay in all (estimated when the range starts inside a stream). */
  total: number;
  /** When the plan was made, RFC 3339. */
  plannedAt: string;
}

/** Options of {@link planSeed}. */
export interface SeedPlanOptions {
  /** Aim for chunks of about this many events (default 25,000). */
  chunkEvents?: number;
  /** Never fewer chunks per stream than this, when the range allows (default 1). */
  minChunksPerStream?: number;
  /** Never more chunks per stream than this (default 256). */
  maxChunksPerStream?: number;
  /** The time of planning (default now). */
  now?: Date;
}

type StartFrom = DataProductSpec['source']['startFrom'];

/** The first offset the replay includes, or null when the seed replays nothing (`latest`). */
export function replayStart(startFrom: StartFrom): Offset | null {
  if (startFrom === undefined || startFrom === 'earliest') return OFFSET_ZERO;
  if (startFrom === 'latest') return null;
  if (typeof startFrom === 'object' && 'offset' in startFrom) {
    return parseOffset(startFrom.offset, 'startFrom offset');
  }
  if (typeof startFrom === 'object' && 'time' in startFrom) {
    const ms = Date.parse(startFrom.time);
    if (Number.isNaN(ms)) throw new OfftakeError('invalid-spec', 'startFrom.time is not an RFC 3339 time.');
    return offsetAtTime(ms);
  }
  throw new OfftakeError('invalid-spec', 'startFrom must be earliest, latest, {time} or {offset}.');
}

/**
 * Plans a seed from each source stream's description at seed start (`null` for a stream that
 * does not exist yet): the high-water marks, and chunks split by append time.
 */
export function planSeed(
  spec: Pick<DataProductSpec, 'source'>,
  streams: ReadonlyMap<string, StreamInfo | null>,
  options: SeedPlanOptions = {},
): SeedPlan {
  const { chunkEvents, minChunksPerStream, maxChunksPerStream } = {
    chunkEvents: 25_000,
    minChunksPerStream: 1,
    maxChunksPerStream: 256,
    ...options,
  };
  const start = replayStart(spec.source.startFrom);
  const highWaterMark: Checkpoint = {};
  const chunks: SeedChunk[] = [];
  for (const stream of spec.source.streams) {
    const info = streams.get(stream) ?? null;
    const hwm = info?.lastOffset ?? OFFSET_ZERO;
    highWaterMark[stream] = hwm;
    if (start === null || info === null || info.firstOffset === null || info.lastOffset === null) continue;
    const first = compareOffsets(start, info.firstOffset) > 0 ? start : info.firstOffset;
    if (compareOffsets(first, hwm) > 0) continue;
    const estimated = estimateEvents(info, first);
    const wanted = Math.min(
      maxChunksPerStream,
      Math.max(minChunksPerStream, Math.ceil(estimated / Math.max(1, chunkEvents))),
    );
    // Rounding the running sum keeps the chunks' estimates adding up to the stream's.
    let share = 0;
    let assigned = 0;
    for (const [from, to, part] of splitByTime(first, hwm, wanted)) {
      share += part;
      const upTo = Math.round(estimated * Math.min(1, share));
      chunks.push({ index: chunks.length, stream, from, to, estimatedEvents: upTo - assigned });
      assigned = upTo;
    }
  }
  const total = chunks.reduce((sum, c) => sum + c.estimatedEvents, 0);
  return { highWaterMark, chunks, total, plannedAt: (options.now ?? new Date()).toISOString() };
}

/** Events of a stream at or after `from`: its length, scaled by time when `from` is inside it. */
function estimateEvents(info: StreamInfo, from: Offset): number {
  if (info.firstOffset === null || info.lastOffset === null) return 0;
  if (compareOffsets(from, info.firstOffset) <= 0) return info.length;
  const t0 = offsetTime(info.firstOffset);
  const t1 = offsetTime(info.lastOffset);
  if (t1 <= t0) return info.length;
  const share = (t1 - offsetTime(from) + 1) / (t1 - t0 + 1);
  return Math.max(1, Math.round(info.length * Math.min(1, Math.max(0, share))));
}

/**
 * Splits `[from, to]` into up to `n` consecutive ranges at millisecond boundaries; returns each
 * range with its share of the time span. Offsets are `<ms>-<seq>`, so a boundary at `<t>-0`
 * separates every event appended before `t` from every event appended at or after it.
 */
function splitByTime(from: Offset, to: Offset, n: number): [Offset, Offset, number][] {
  const t0 = offsetTime(from);
  const t1 = offsetTime(to);
  const span = t1 - t0 + 1;
  const parts = Math.max(1, Math.min(n, t1 - t0 + 1));
  if (parts === 1) return [[from, to, 1]];
  const out: [Offset, Offset, number][] = [];
  let start = from;
  let startMs = t0;
  for (let k = 1; k <= parts; k++) {
    const boundaryMs = k === parts ? null : t0 + Math.floor((k * span) / parts);
    if (boundaryMs === null) {
      out.push([start, to, (t1 - startMs + 1) / span]);
      break;
    }
    if (boundaryMs <= startMs) continue;
    const end = previousOffset(offsetAtTime(boundaryMs));
    out.push([start, end, (boundaryMs - startMs) / span]);
    start = offsetAtTime(boundaryMs);
    startMs = boundaryMs;
  }
  return out;
}
