/**
 * SQL building blocks of the postgres target: identifier checking and quoting, and the mapping
 * of transform values (JSON, plus CEL's bigints and timestamps) onto the column types a product
 * may declare. Values are checked in TypeScript before any SQL runs, so a value that does not
 * fit its column is a per-record error for the dead-letter path, never a failed batch.
 */
import { POSTGRES_COLUMN_TYPES } from '../../crds/dataproduct.schema.ts';
import { OfftakeError } from '../../lib/errors.ts';
import { explainSqlIdentifier } from '../../lib/validation/names.ts';
import { toJsonText } from './records.ts';

/** A column type a product may declare. */
export type PostgresColumnType = (typeof POSTGRES_COLUMN_TYPES)[number];

/** A value as it is sent to Postgres (inside a typed array parameter). */
export type ColumnValue = string | number | boolean | null;

/** Why a value does not fit its column. */
export interface ColumnMismatch {
  mismatch: string;
}

const COLUMN_TYPES: ReadonlySet<string> = new Set(POSTGRES_COLUMN_TYPES);

/** True when `type` is one of {@link POSTGRES_COLUMN_TYPES}. */
export function isColumnType(type: unknown): type is PostgresColumnType {
  return typeof type === 'string' && COLUMN_TYPES.has(type);
}

/** How `format_type()` names each declared type, for comparing an existing table with the spec. */
export const FORMATTED_COLUMN_TYPES: Readonly<Record<PostgresColumnType, string>> = Object.freeze({
  text: 'text',
  integer: 'integer',
  bigint: 'bigint',
  numeric: 'numeric',
  'double precision': 'double precision',
  boolean: 'boolean',
  timestamptz: 'timestamp with time zone',
  date: 'date',
  jsonb: 'jsonb',
});

/**
 * Quotes an identifier the way PostgreSQL's `quote_ident` does when quoting is needed: wrapped
 * in double quotes, inner double quotes doubled. Refuses NUL, which no identifier may hold.
 */
export function quoteIdent(name: string): string {
  if (name.includes('\u0000'))
    throw new OfftakeError('invalid-name', 'An SQL identifier cannot contain U+0000.');
  return `"${name.replaceAll('"', '""')}"`;
}

/**
 * Checks a name before it reaches SQL: a lower-case identifier of at most 63 characters that
 * never needs quoting, not a reserved word, not `pg_`-prefixed. Throws `invalid-name` naming
 * `what` otherwise. Names are quoted as well ({@link quoteIdent}) — defence in depth.
 */
export function checkIdentifier(name: unknown, what: string): string {
  const why = typeof name === 'string' ? explainSqlIdentifier(name) : 'must be a string';
  if (why !== undefined) {
    const shown = typeof name === 'string' ? JSON.stringify(name.slice(0, 80)) : 'the value';
    throw new OfftakeError('invalid-name', `The ${what} ${shown} is not a usable SQL name: ${why}.`, {
      errors: [{ pointer: '', message: `${what}: ${why}`, kind: 'name' }],
    });
  }
  return name as string;
}

const INT32_MIN = -(2n ** 31n);
const INT32_MAX = 2n ** 31n - 1n;
const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;
const INTEGER_TEXT = /^[+-]?\d{1,40}$/;
// Numbers as JSON writes them, plus a leading "+" or a bare "." fraction; exponents kept small
// enough that Postgres never overflows.
const NUMERIC_TEXT = /^[+-]?(?:\d{1,1000}(?:\.\d{0,1000})?|\.\d{1,1000})(?:[eE][+-]?\d{1,3})?$/;
const DATE_TEXT = /^(\d{4})-(\d{2})-(\d{2})$/;
const TIMESTAMP_TEXT =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

function mismatch(text: string): ColumnMismatch {
  return { mismatch: text };
}

function describe(value: unknown): string {
  if (Array.isArray(value)) return 'an array';
  if (value instanceof Date) return 'a timestamp';
  if (typeof value === 'object') return 'an object';
  return `a ${typeof value}`;
}

function isValidDate(year: number, month: number, day: number): boolean {
  if (year < 1 || month < 1 || month > 12 || day < 1) return false;
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0;
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1];
  return day <= days;
}

function integerValue(value: unknown, min: bigint, max: bigint, type: string): ColumnValue | ColumnMismatch {
  let n: bigint;
  if (typeof value === 'bigint') n = value;
  else if (typeof value === 'number' && Number.isInteger(value)) n = BigInt(value);
  else if (typeof value === 'string' && INTEGER_TEXT.test(value)) n = BigInt(value);
  else if (typeof value === 'number')
    return mismatch(`is not a whole number, so it does not fit a ${type} column`);
  else if (typeof value === 'string')
    return mismatch(`is text that is not a whole number, so it does not fit a ${type} column`);
  else return mismatch(`is ${describe(value)}; a ${type} column takes whole numbers`);
  if (n < min || n > max) return mismatch(`is outside the range of a ${type} column (${min} to ${max})`);
  return n >= BigInt(Number.MIN_SAFE_INTEGER) && n <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(n)
    : n.toString();
}

function timestampValue(value: unknown): ColumnValue | ColumnMismatch {
  if (value instanceof Date) return value.toISOString();
  if (typeof value !== 'string') {
    return mismatch(
      `is ${describe(value)}; a timestamptz column takes an RFC 3339 timestamp such as 2024-06-01T12:00:00Z`,
    );
  }
  const m = TIMESTAMP_TEXT.exec(value);
  if (
    m === null ||
    !isValidDate(Number(m[1]), Number(m[2]), Number(m[3])) ||
    Number(m[4]) > 23 ||
    Number(m[5]) > 59 ||
    Number(m[6]) > 60 ||
    // Postgres accepts zone offsets up to 15:59.
    (m[8] !== undefined && (Number(m[9]) > 15 || Number(m[10]) > 59))
  ) {
    return mismatch('is not an RFC 3339 timestamp (e.g. 2024-06-01T12:00:00Z, years 0001-9999)');
  }
  return value;
}

function dateValue(value: unknown): ColumnValue | ColumnMismatch {
  if (value instanceof Date) return value.toISOString().slice(0, 10);
  if (typeof value !== 'string')
    return mismatch(`is ${describe(value)}; a date column takes a date such as 2024-06-01`);
  const m = DATE_TEXT.exec(value);
  if (m === null || !isValidDate(Number(m[1]), Number(m[2]), Number(m[3]))) {
    return mismatch('is not a date of the form YYYY-MM-DD (years 0001-9999)');
  }
  return value;
}

/**
 * Maps one transform value onto a column type, or says why it does not fit. `null` and absent
 * values become SQL NULL. Rules: `text` takes strings, and numbers and booleans as their JSON
 * text; `integer` / `bigint` take whole numbers (numbers, bigints or digit strings) in range;
 * `numeric` and `double precision` take finite numbers, bigints and numeric strings;
 * `boolean` takes booleans and "true" / "false"; `timestamptz` takes RFC 3339 strings and Dates;
 * `date` takes YYYY-MM-DD and Dates; `jsonb` takes any JSON value. The value has passed
 * `checkRecord` already (finite numbers, well-formed strings without U+0000).
 */
export function toColumnValue(type: PostgresColumnType, value: unknown): ColumnValue | ColumnMismatch {
  if (value === null || value === undefined) return null;
  switch (type) {
    case 'text':
      if (typeof value === 'string') return value;
      if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean')
        return String(value);
      if (value instanceof Date) return value.toISOString();
      return mismatch(
        `is ${describe(value)}; a text column takes text, numbers or booleans (use jsonb for structures)`,
      );
    case 'integer':
      return integerValue(value, INT32_MIN, INT32_MAX, 'integer');
    case 'bigint':
      return integerValue(value, INT64_MIN, INT64_MAX, 'bigint');
    case 'numeric':
      if (typeof value === 'number') return String(value);
      if (typeof value === 'bigint') return value.toString();
      if (typeof value === 'string') {
        return NUMERIC_TEXT.test(value)
          ? value
          : mismatch('is text that is not a number, so it does not fit a numeric column');
      }
      return mismatch(`is ${describe(value)}; a numeric column takes numbers`);
    case 'double precision': {
      let n: number;
      if (typeof value === 'number') n = value;
      else if (typeof value === 'bigint') n = Number(value);
      else if (typeof value === 'string' && NUMERIC_TEXT.test(value)) n = Number(value);
      else if (typeof value === 'string')
        return mismatch('is text that is not a number, so it does not fit a double precision column');
      else return mismatch(`is ${describe(value)}; a double precision column takes numbers`);
      return Number.isFinite(n) ? n : mismatch('is outside the range of a double precision column');
    }
    case 'boolean':
      if (typeof value === 'boolean') return value;
      if (value === 'true' || value === 'false') return value === 'true';
      return mismatch(`is ${describe(value)}; a boolean column takes true or false`);
    case 'timestamptz':
      return timestampValue(value);
    case 'date':
      return dateValue(value);
    case 'jsonb':
      return toJsonText(value);
  }
}

/** True when {@link toColumnValue} said the value does not fit. */
export function isMismatch(value: ColumnValue | ColumnMismatch): value is ColumnMismatch {
  return typeof value === 'object' && value !== null;
}
