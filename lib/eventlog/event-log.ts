/**
 * The central event log: named, append-only streams of CloudEvents, each event at an offset
 * the log assigned. This file is the backend-neutral contract — the Redis Streams backend
 * (`redis-event-log.ts`) implements it today; a Kafka or NATS JetStream backend would
 * implement the same interface. No backend type appears here.
 */
import { STREAM_NAME } from '../../crds/dataproduct.schema.ts';
import { OfftakeError } from '../errors.ts';

/** Longest stream name. */
export const MAX_STREAM_NAME_LENGTH = 100;
const STREAM_NAME_PATTERN = new RegExp(STREAM_NAME);

/**
 * Checks a stream name (the same rule as a DataProduct's `source.streams`) before it reaches a
 * key or a URL; throws `invalid-name` (400) otherwise.
 */
export function checkStreamName(name: unknown): string {
  if (typeof name !== 'string' || name.length > MAX_STREAM_NAME_LENGTH || !STREAM_NAME_PATTERN.test(name)) {
    const shown = typeof name === 'string' ? JSON.stringify(name.slice(0, 120)) : 'The value';
    throw new OfftakeError(
      'invalid-name',
      `${shown} is not a valid stream name: use 1-${MAX_STREAM_NAME_LENGTH} lower-case letters, digits, '-', '_' or '.', starting and ending with a letter or digit.`,
      { errors: [{ pointer: '/stream', message: 'invalid stream name', kind: 'name' }] },
    );
  }
  return name;
}

/**
 * A position in a stream, as the log assigned it: an opaque string of the form `<ms>-<seq>`
 * (the append time in milliseconds since the epoch, then a sequence number within that
 * millisecond). Offsets rise strictly with every append to a stream; compare them with
 * {@link compareOffsets}, never as strings.
 */
export type Offset = string;

/** The offset before every event of every stream. */
export const OFFSET_ZERO: Offset = '0-0';

const OFFSET_PATTERN = /^(\d{1,20})-(\d{1,20})$/;
const U64_MAX = (1n << 64n) - 1n;

function offsetParts(offset: Offset): [bigint, bigint] {
  const m = OFFSET_PATTERN.exec(offset);
  if (m === null) throw new OfftakeError('invalid-offset', `${JSON.stringify(offset)} is not an offset.`);
  const ms = BigInt(m[1]);
  const seq = BigInt(m[2]);
  if (ms > U64_MAX || seq > U64_MAX) {
    throw new OfftakeError('invalid-offset', `${JSON.stringify(offset)} is out of the offset range.`);
  }
  return [ms, seq];
}

/** True when `value` is a well-formed offset. */
export function isOffset(value: unknown): value is Offset {
  if (typeof value !== 'string' || !OFFSET_PATTERN.test(value)) return false;
  try {
    offsetParts(value);
    return true;
  } catch {
    return false;
  }
}

/**
 * Checks that `value` is an offset and returns it in canonical form (no leading zeros).
 * Throws `invalid-offset` (400) naming `what` otherwise.
 */
export function parseOffset(value: unknown, what = 'offset'): Offset {
  if (typeof value !== 'string') {
    throw new OfftakeError('invalid-offset', `The ${what} must be a string of the form <ms>-<seq>.`);
  }
  const m = OFFSET_PATTERN.exec(value);
  if (m === null) {
    throw new OfftakeError(
      'invalid-offset',
      `The ${what} ${JSON.stringify(value.slice(0, 64))} does not parse: offsets have the form <ms>-<seq>, e.g. 1718000000000-0.`,
    );
  }
  const [ms, seq] = offsetParts(value);
  return `${ms}-${seq}`;
}

/** Orders two offsets: negative when `a` comes before `b`, 0 when equal, positive after. */
export function compareOffsets(a: Offset, b: Offset): number {
  const [am, as] = offsetParts(a);
  const [bm, bs] = offsetParts(b);
  if (am !== bm) return am < bm ? -1 : 1;
  if (as !== bs) return as < bs ? -1 : 1;
  return 0;
}

/** The append time of an offset, in milliseconds since the epoch. */
export function offsetTime(offset: Offset): number {
  return Number(offsetParts(offset)[0]);
}

/** The smallest offset after `offset`. */
export function nextOffset(offset: Offset): Offset {
  const [ms, seq] = offsetParts(offset);
  return seq === U64_MAX ? `${ms + 1n}-0` : `${ms}-${seq + 1n}`;
}

/** The largest offset before `offset` ({@link OFFSET_ZERO} stays itself). */
export function previousOffset(offset: Offset): Offset {
  const [ms, seq] = offsetParts(offset);
  if (seq > 0n) return `${ms}-${seq - 1n}`;
  if (ms > 0n) return `${ms - 1n}-${U64_MAX}`;
  return OFFSET_ZERO;
}

/** The first offset a log could assign at time `ms` (an event appended at or after `ms` is at or after it). */
export function offsetAtTime(ms: number): Offset {
  return `${Math.max(0, Math.floor(ms))}-0`;
}

/** An attribute value a CloudEvents extension may carry. */
export type ExtensionValue = string | number | boolean;

/**
 * An event as a producer submits it: the CloudEvents 1.0 attributes (JSON format). `id` +
 * `source` identify the event (and make a retry idempotent); `subject` is the event's key;
 * `time` defaults to the append time and `datacontenttype` to `application/json`. Other
 * lower-case attributes are CloudEvents extensions; `offset` is reserved for the log.
 */
export interface EventInput {
  specversion?: '1.0';
  id: string;
  source: string;
  type: string;
  time?: string;
  subject?: string;
  datacontenttype?: string;
  dataschema?: string;
  /** The payload; any JSON value when `datacontenttype` is JSON, else a string. */
  data?: unknown;
  /** A binary payload, base64-encoded (instead of `data`). */
  data_base64?: string;
  [extension: string]: unknown;
}

/** A CloudEvents 1.0 envelope as the log keeps it: every defaulted attribute filled in. */
export interface CloudEvent extends EventInput {
  specversion: '1.0';
  time: string;
  datacontenttype: string;
}

/** An event read from the log: its envelope plus the offset the log assigned. */
export interface LogEvent extends CloudEvent {
  offset: Offset;
}

/** What an append did: per submitted event, in order, its offset and whether it was a retry. */
export interface AppendResult {
  /** The offset of each submitted event; for a duplicate, the offset of the original. */
  offsets: Offset[];
  /** `true` where the event was a retry (same `source` + `id` within the dedup window) and was not stored again. */
  duplicates: boolean[];
}

/**
 * Which part of a stream to read. Offsets and times combine: the range starts at the latest
 * of `from`, `after` and `since`, and ends at the earliest of `to` and `until`.
 */
export interface RangeOptions {
  /** First offset to include. */
  from?: Offset;
  /** Include only offsets after this one (a cursor, or the last offset a reader has seen). */
  after?: Offset;
  /** Last offset to include. */
  to?: Offset;
  /** Include events appended at or after this time (by append time, i.e. the offset's time). */
  since?: Date;
  /** Include events appended before this time. */
  until?: Date;
  /** Include only events of these types. */
  types?: readonly string[];
}

/** Options of {@link EventLog.read}: a range plus the size of one page. */
export interface ReadOptions extends RangeOptions {
  /** Most events in the page (default 100). */
  limit?: number;
  /** Stop the page once its events' stored size passes this many bytes (at least one event is returned). */
  maxBytes?: number;
}

/** One page of a range read. */
export interface ReadPage {
  events: LogEvent[];
  /**
   * Pass as `after` to read the next page, or `null` when the range is exhausted (its end, or
   * the stream's current end, was reached). With a type filter a page may hold fewer than
   * `limit` events and still have a `next`.
   */
  next: Offset | null;
}

/** Options of {@link EventLog.scan}: a range read in batches to its end. */
export interface ScanOptions extends RangeOptions {
  /** Entries fetched per round trip (default 1000). */
  batchSize?: number;
}

/** Options of {@link EventLog.follow}. */
export interface FollowOptions {
  /** Start after this offset (e.g. the last one a reader saw). */
  after?: Offset;
  /** Start at this offset (inclusive). */
  from?: Offset;
  /** Start at the first event appended at or after this time. */
  since?: Date;
  /** Only events of these types. */
  types?: readonly string[];
  /** Most events per yielded batch (default 500). */
  batchSize?: number;
  /** Stops the follower and releases its connection. */
  signal?: AbortSignal;
}

/**
 * How long a stream keeps its events. Absent limits do not apply; a stream without a
 * retention keeps every event forever — the log never trims by default.
 */
export interface Retention {
  /** Keep at most this many of the newest events. */
  maxLength?: number;
  /** Drop events appended more than this many seconds ago. Applied on append and by {@link EventLog.applyRetention}. */
  maxAgeSeconds?: number;
}

/** What a stream holds. */
export interface StreamInfo {
  name: string;
  /** Events currently in the stream. */
  length: number;
  firstOffset: Offset | null;
  lastOffset: Offset | null;
  /** Append time of the first and last event, RFC 3339. */
  firstTime: string | null;
  lastTime: string | null;
  /** The stream's retention; `null` = every event is kept. */
  retention: Retention | null;
  /** When the stream was created (first append or configuration), RFC 3339. */
  createdAt: string;
}

/** The limits a log enforces on every append. */
export interface EventLogLimits {
  /** Largest stored envelope of one event, in bytes (`too-large`, 413). */
  maxEventBytes: number;
  /** Most events in one append (`batch-too-large`, 413). */
  maxBatchEvents: number;
}

/**
 * The event log. Every method throws {@link OfftakeError}s for what a caller can fix:
 * `invalid-name` (stream name), `invalid-event` (with `/<index>/<attribute>` pointers and an
 * `index` extension), `too-large`, `batch-too-large`, `invalid-offset`, `invalid-range`,
 * `stream-not-found`; and `unavailable` when a durability promise could not be confirmed.
 */
export interface EventLog {
  /** The limits this log enforces on appends. */
  readonly limits: EventLogLimits;

  /**
   * Appends events to a stream (created on first append), in order, in one round trip.
   * All or nothing: every event is validated first, and one invalid event rejects the batch
   * with nothing stored. An event whose `source` + `id` was appended to the stream within
   * the dedup window is not stored again; its result carries the original offset.
   */
  append(stream: string, events: readonly EventInput[]): Promise<AppendResult>;

  /** Reads one page of a range, oldest first. */
  read(stream: string, options?: ReadOptions): Promise<ReadPage>;

  /**
   * Reads a whole range in batches, oldest first, holding at most two batches in memory: the
   * replay path. The range's end is fixed when each batch is fetched, so events appended
   * during a scan without `to` are included until the scan catches up.
   */
  scan(stream: string, options?: ScanOptions): AsyncIterable<LogEvent[]>;

  /**
   * Follows a stream: yields batches of events as they are appended, from the given start
   * (default: the current end). Blocks while nothing is new; reads the next batch only when
   * the consumer asks for it (backpressure). Ends when `signal` aborts.
   */
  follow(stream: string, options?: FollowOptions): AsyncIterable<LogEvent[]>;

  /** Describes a stream; `stream-not-found` when it does not exist. */
  describe(stream: string): Promise<StreamInfo>;

  /** Describes every stream, by name. */
  listStreams(): Promise<StreamInfo[]>;

  /** Sets (or with `null` removes) a stream's retention, creating the stream if needed, and applies it now. */
  setRetention(stream: string, retention: Retention | null): Promise<StreamInfo>;

  /** Applies a stream's retention now (appends apply it too); returns how many events were dropped. */
  applyRetention(stream: string): Promise<number>;

  /** Deletes a stream and every event in it; `false` when it did not exist. */
  deleteStream(stream: string): Promise<boolean>;

  /** Stops every follower this log started. Does not close connections the caller owns. */
  close(): Promise<void>;
}
