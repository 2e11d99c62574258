/**
 * What every sink does to records before it writes them: the checks that turn a bad record into
 * a per-record error (for the dead-letter path) instead of a failed batch, the one order of
 * records all sinks share, the newest-per-key reduction of a batch, and the JSON forms of values.
 */
import { STREAM_NAME } from '../../crds/dataproduct.schema.ts';
import {
  MAX_STREAM_NAME_LENGTH,
  compareOffsets,
  isOffset,
  parseOffset,
} from '../../lib/eventlog/event-log.ts';
import { RESERVED_FIELD_PREFIX } from '../../lib/validation/semantic.ts';
import type { Checkpoint, SinkRecord } from './sink.ts';

/**
 * Longest record key, in UTF-8 bytes. Keys come from user data; the cap keeps them well inside
 * what every target indexes (a Postgres btree entry holds about 2.7 kB) and what the log accepts
 * as an event subject.
 */
export const MAX_KEY_BYTES = 1024;

/** Deepest nesting of arrays and objects a field value may have. */
export const MAX_VALUE_DEPTH = 64;

/** Longest checkpoint name. */
const MAX_CHECKPOINT_NAME_LENGTH = 256;

const STREAM_NAME_PATTERN = new RegExp(STREAM_NAME);

/** How strict {@link checkFieldValue} is about strings. */
export interface ValueRules {
  /** Whether U+0000 may appear in strings (Postgres text and jsonb cannot hold it). */
  allowNul: boolean;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

function checkString(value: string, rules: ValueRules): string | undefined {
  if (!value.isWellFormed()) return 'contains an unpaired UTF-16 surrogate (not valid Unicode)';
  if (!rules.allowNul && value.includes('\u0000'))
    return 'contains the character U+0000, which this target cannot store';
  return undefined;
}

/**
 * Why a field value cannot be stored, or undefined when it can. Accepted: what a transform
 * yields as JSON — null, strings, finite numbers, booleans, arrays and plain objects — plus
 * bigints (CEL `int`) and valid Dates (CEL `timestamp`). `where` names the value in the message;
 * messages never quote the value itself (it may be personal data).
 */
export function checkFieldValue(
  value: unknown,
  where: string,
  rules: ValueRules,
  depth = 0,
): string | undefined {
  switch (typeof value) {
    case 'undefined':
      return undefined;
    case 'string': {
      const why = checkString(value, rules);
      return why === undefined ? undefined : `${where} ${why}`;
    }
    case 'number':
      return Number.isFinite(value) ? undefined : `${where} is not a finite number`;
    case 'boolean':
    case 'bigint':
      return undefined;
    case 'object': {
      if (value === null) return undefined;
      if (value instanceof Date) {
        return Number.isNaN(value.getTime()) ? `${where} is an invalid timestamp` : undefined;
      }
      if (depth >= MAX_VALUE_DEPTH) return `${where} is nested deeper than ${MAX_VALUE_DEPTH} levels`;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          const why = checkFieldValue(value[i], `${where}[${i}]`, rules, depth + 1);
          if (why !== undefined) return why;
        }
        return undefined;
      }
      if (isPlainObject(value)) {
        for (const [name, item] of Object.entries(value)) {
          const nameWhy = checkString(name, rules);
          if (nameWhy !== undefined) return `a property name in ${where} ${nameWhy}`;
          const why = checkFieldValue(item, `${where}.${name}`, rules, depth + 1);
          if (why !== undefined) return why;
        }
        return undefined;
      }
      return `${where} is a ${value.constructor?.name ?? 'non-JSON object'}, not a JSON value`;
    }
    default:
      return `${where} is a ${typeof value}, not a JSON value`;
  }
}

/**
 * Why a record cannot be written, or undefined when its shape is sound: a non-empty,
 * well-formed key of at most {@link MAX_KEY_BYTES} bytes, a valid stream name and offset, a
 * known op, and for an upsert a plain object of storable field values whose names do not start
 * with the reserved "_". Target-specific checks
 * (column types, event size) come on top of this in each sink's `validateRecord`.
 */
export function checkRecord(record: unknown, rules: ValueRules): string | undefined {
  if (!isPlainObject(record)) return 'the record is not an object';
  const { key, stream, offset, op, fields } = record;
  if (typeof key !== 'string') return 'the key is not a string';
  if (key.length === 0) return 'the key is empty';
  const keyWhy = checkString(key, rules);
  if (keyWhy !== undefined) return `the key ${keyWhy}`;
  // A UTF-8 byte count is at most three per UTF-16 unit: skip counting when it cannot matter.
  if (key.length * 3 > MAX_KEY_BYTES) {
    const bytes = Buffer.byteLength(key);
    if (bytes > MAX_KEY_BYTES) return `the key is ${bytes} bytes long; at most ${MAX_KEY_BYTES} are allowed`;
  }
  if (
    typeof stream !== 'string' ||
    stream.length > MAX_STREAM_NAME_LENGTH ||
    !STREAM_NAME_PATTERN.test(stream)
  ) {
    return 'the stream is not a valid stream name';
  }
  if (!isOffset(offset)) return 'the offset is not an event-log offset';
  if (op === 'delete') return undefined;
  if (op !== 'upsert') return 'the op is neither "upsert" nor "delete"';
  if (fields === undefined) return undefined;
  if (!isPlainObject(fields)) return 'the fields are not an object';
  for (const [name, value] of Object.entries(fields)) {
    // Offtake's own columns and hash fields (`_offset`, `_stream`, ...) start with "_".
    if (name.startsWith(RESERVED_FIELD_PREFIX)) {
      return `the field name ${JSON.stringify(name.slice(0, 64))} is reserved (names starting with "${RESERVED_FIELD_PREFIX}" are Offtake's)`;
    }
    const why = checkFieldValue(value, `field ${JSON.stringify(name.slice(0, 64))}`, rules);
    if (why !== undefined) return why;
  }
  return undefined;
}

/**
 * Orders two records by the position of the events that produced them: offset first (numerically,
 * {@link compareOffsets}), then stream name (code-unit order; stream names are ASCII, so this is
 * also byte order and Postgres' "C" collation). Negative when `a` comes first.
 */
export function compareRecords(a: SinkRecord, b: SinkRecord): number {
  const byOffset = compareOffsets(a.offset, b.offset);
  if (byOffset !== 0) return byOffset;
  return a.stream < b.stream ? -1 : a.stream > b.stream ? 1 : 0;
}

/**
 * The newest record of each key in a batch, in first-seen key order. Sinks send one change per
 * key: a Postgres upsert cannot touch a row twice in one statement, and older changes would be
 * overwritten by the guard anyway.
 */
export function latestPerKey(records: readonly SinkRecord[]): SinkRecord[] {
  const latest = new Map<string, SinkRecord>();
  for (const record of records) {
    const seen = latest.get(record.key);
    if (seen === undefined || compareRecords(seen, record) < 0) latest.set(record.key, record);
  }
  return [...latest.values()];
}

/** An offset split into its canonical (no leading zeros) millisecond and sequence parts. */
export function offsetParts(offset: string): { ms: string; seq: string } {
  const canonical = parseOffset(offset);
  const dash = canonical.indexOf('-');
  return { ms: canonical.slice(0, dash), seq: canonical.slice(dash + 1) };
}

/**
 * Checks a checkpoint before it is stored (its name, and that every entry maps a valid stream
 * name to a valid offset) and returns its JSON form with canonical offsets. Throws a plain
 * Error: a bad checkpoint is a bug in the caller, not bad data.
 */
export function checkpointJson(name: string, position: Checkpoint): string {
  if (typeof name !== 'string' || name.length === 0 || name.length > MAX_CHECKPOINT_NAME_LENGTH) {
    throw new Error(`A checkpoint name must be a string of 1-${MAX_CHECKPOINT_NAME_LENGTH} characters.`);
  }
  if (!isPlainObject(position))
    throw new Error('A checkpoint position must be an object of stream -> offset.');
  const canonical: Checkpoint = {};
  for (const [stream, offset] of Object.entries(position)) {
    if (stream.length > MAX_STREAM_NAME_LENGTH || !STREAM_NAME_PATTERN.test(stream)) {
      throw new Error(`The checkpoint ${JSON.stringify(name)} names an invalid stream.`);
    }
    if (!isOffset(offset)) {
      throw new Error(`The checkpoint ${JSON.stringify(name)} holds an invalid offset for stream ${stream}.`);
    }
    canonical[stream] = parseOffset(offset);
  }
  return JSON.stringify(canonical);
}

/** Reads back a checkpoint stored by {@link checkpointJson}; null when absent or unreadable. */
export function parseCheckpoint(json: unknown): Checkpoint | null {
  let value: unknown = json;
  if (typeof json === 'string') {
    try {
      value = JSON.parse(json);
    } catch {
      return null;
    }
  }
  if (!isPlainObject(value)) return null;
  const position: Checkpoint = {};
  for (const [stream, offset] of Object.entries(value)) {
    if (!isOffset(offset)) return null;
    position[stream] = offset;
  }
  return position;
}

// Node 21+ has JSON.rawJSON; the TypeScript lib in use does not declare it yet.
const rawJson = (JSON as unknown as { rawJSON: (text: string) => unknown }).rawJSON;

/**
 * A value in the form the JSON serialiser takes: bigints become raw JSON numbers (exact, no
 * rounding through a double), Dates their ISO text; everything else passes through.
 */
export function jsonReady(value: unknown): unknown {
  if (typeof value === 'bigint') return rawJson(value.toString());
  if (typeof value !== 'object' || value === null) return value;
  if (value instanceof Date) return value.toISOString();
  if (Array.isArray(value)) return value.map(jsonReady);
  const out: Record<string, unknown> = {};
  for (const [name, item] of Object.entries(value)) out[name] = jsonReady(item);
  return out;
}

function bigintReplacer(_name: string, value: unknown): unknown {
  return typeof value === 'bigint' ? rawJson(value.toString()) : value;
}

/** The JSON text of a checked value; bigints are written exactly. */
export function toJsonText(value: unknown): string {
  return JSON.stringify(value, bigintReplacer);
}
