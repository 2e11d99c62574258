/**
 * CloudEvents 1.0 for the event log: checking and normalising envelopes (JSON event format),
 * and reading events out of an HTTP request body (HTTP protocol binding: structured, batched
 * and binary modes, plus plain JSON and NDJSON). Pure functions, no I/O: every backend and the
 * HTTP face share them, so an event is judged the same way whichever way it came in.
 */
import { EVENT_TYPE } from '../../crds/dataproduct.schema.ts';
import { OfftakeError, type FieldError } from '../errors.ts';
import type { EventLogLimits } from './event-log.ts';

/** An event checked and serialised, ready for a backend to store. */
export interface PreparedEvent {
  source: string;
  id: string;
  type: string;
  /** The normalised CloudEvents JSON envelope, without offset. */
  json: string;
}

/** Longest value of each context attribute, in characters. */
export const ATTRIBUTE_LIMITS = Object.freeze({
  id: 256,
  source: 1024,
  type: 256,
  subject: 1024,
  datacontenttype: 256,
  dataschema: 1024,
  extension: 1024,
});

const EVENT_TYPE_PATTERN = new RegExp(EVENT_TYPE);
const EXTENSION_NAME = /^[a-z0-9]{1,20}$/;
/** Attributes a producer may not set: the log owns them. */
const RESERVED = new Set(['offset']);
// Whitespace or a control character (code points up to U+001F, and U+007F) anywhere.
const SPACE_OR_CONTROL = /[\s\p{Cc}]/u;
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;
const MEDIA_TYPE = /^[A-Za-z0-9!#$&^_.+-]+\/[A-Za-z0-9!#$&^_.+-]+(\s*;.*)?$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

/** The essence of a media type: `type/subtype`, lower case, without parameters. */
export function mediaTypeEssence(mediaType: string): string {
  const semi = mediaType.indexOf(';');
  return (semi < 0 ? mediaType : mediaType.slice(0, semi)).trim().toLowerCase();
}

/** True when a media type declares JSON data (`application/json`, `text/json`, `*\/*+json`). */
export function isJsonMediaType(mediaType: string): boolean {
  const essence = mediaTypeEssence(mediaType);
  return essence === 'application/json' || essence === 'text/json' || essence.endsWith('+json');
}

function isRfc3339(value: string): boolean {
  const m = RFC3339.exec(value);
  if (m === null) return false;
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  const days =
    month === 2 ? (leap ? 29 : 28) : month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31;
  // Seconds may be 60 (a leap second); the offset, if any, must be a real one.
  const offset = m[8].length === 6 ? Number(m[8].slice(1, 3)) * 60 + Number(m[8].slice(4)) : 0;
  return (
    month >= 1 &&
    month <= 12 &&
    day >= 1 &&
    day <= days &&
    Number(m[4]) <= 23 &&
    Number(m[5]) <= 59 &&
    Number(m[6]) <= 60 &&
    offset < 24 * 60
  );
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Checks one event and serialises its normalised envelope: `specversion` 1.0, `time` filled
 * with `now` when absent, `datacontenttype` defaulting to `application/json`, a base64 JSON
 * payload decoded into `data`. Throws `invalid-event` (every problem of this event, pointers
 * `/<index>/<attribute>`, extension `index`) or `too-large`.
 */
export function prepareEvent(
  raw: unknown,
  index: number,
  limits: EventLogLimits,
  now: string,
): PreparedEvent {
  const at = `/${index}`;
  if (!isPlainObject(raw)) {
    throw invalidEvent(index, [{ pointer: at, message: 'an event must be a JSON object', kind: 'type' }]);
  }
  const errors: FieldError[] = [];
  const fail = (attribute: string, message: string, kind = 'attribute'): void => {
    errors.push({ pointer: `${at}/${attribute}`, message, kind });
  };
  const text = (
    attribute: keyof typeof ATTRIBUTE_LIMITS,
    value: unknown,
    required: boolean,
  ): string | undefined => {
    if (value === undefined || value === null) {
      if (required) fail(attribute, `${attribute} is required`, 'required');
      return undefined;
    }
    if (typeof value !== 'string') {
      fail(attribute, `${attribute} must be a string`);
      return undefined;
    }
    if (value.length === 0) {
      fail(attribute, `${attribute} must not be empty`);
      return undefined;
    }
    if (value.length > ATTRIBUTE_LIMITS[attribute]) {
      fail(attribute, `${attribute} is longer than ${ATTRIBUTE_LIMITS[attribute]} characters`);
      return undefined;
    }
    return value;
  };

  let extensions: Record<string, string | number | boolean> | undefined;
  for (const key of Object.keys(raw)) {
    switch (key) {
      case 'specversion':
      case 'id':
      case 'source':
      case 'type':
      case 'time':
      case 'subject':
      case 'datacontenttype':
      case 'dataschema':
      case 'data':
      case 'data_base64':
        continue;
    }
    const value = raw[key];
    if (value === undefined || value === null) continue;
    if (RESERVED.has(key)) {
      fail(key, `${key} is set by the log and may not be submitted`, 'reserved');
    } else if (!EXTENSION_NAME.test(key)) {
      fail(
        key.slice(0, 64),
        'unknown attribute: extension attribute names are 1-20 lower-case letters or digits',
        'unknown',
      );
    } else if (
      typeof value === 'boolean' ||
      (typeof value === 'string' && value.length <= ATTRIBUTE_LIMITS.extension)
    ) {
      (extensions ??= {})[key] = value;
    } else if (
      typeof value === 'number' &&
      Number.isInteger(value) &&
      value >= INT32_MIN &&
      value <= INT32_MAX
    ) {
      (extensions ??= {})[key] = value;
    } else {
      fail(
        key,
        'an extension attribute must be a string (up to 1024 characters), a boolean or a 32-bit integer',
      );
    }
  }

  const specversion = raw.specversion;
  if (specversion !== undefined && specversion !== null && specversion !== '1.0') {
    fail('specversion', 'specversion must be "1.0"');
  }
  const id = text('id', raw.id, true);
  const source = text('source', raw.source, true);
  if (source !== undefined && SPACE_OR_CONTROL.test(source))
    fail('source', 'source must be a URI-reference without spaces');
  const type = text('type', raw.type, true);
  if (type !== undefined && !EVENT_TYPE_PATTERN.test(type)) {
    fail('type', `type must match ${EVENT_TYPE} (letters, digits and . _ : / -)`);
  }
  let time = now;
  if (raw.time !== undefined && raw.time !== null) {
    if (typeof raw.time !== 'string' || !isRfc3339(raw.time)) {
      fail('time', 'time must be an RFC 3339 timestamp, e.g. 2024-06-01T12:00:00Z');
    } else {
      time = raw.time;
    }
  }
  const subject = text('subject', raw.subject, false);
  const dataschema = text('dataschema', raw.dataschema, false);
  if (dataschema !== undefined && SPACE_OR_CONTROL.test(dataschema))
    fail('dataschema', 'dataschema must be a URI without spaces');
  let datacontenttype = text('datacontenttype', raw.datacontenttype, false);
  if (datacontenttype !== undefined && !MEDIA_TYPE.test(datacontenttype)) {
    fail('datacontenttype', 'datacontenttype must be a media type, e.g. application/json');
    datacontenttype = undefined;
  }
  const contentType = datacontenttype ?? 'application/json';
  const json = isJsonMediaType(contentType);

  let data: unknown = raw.data;
  let dataBase64: string | undefined;
  const hasData = data !== undefined && data !== null;
  if (raw.data_base64 !== undefined && raw.data_base64 !== null) {
    if (hasData) {
      fail('data_base64', 'an event carries either data or data_base64, not both');
    } else if (typeof raw.data_base64 !== 'string' || !BASE64.test(raw.data_base64)) {
      fail('data_base64', 'data_base64 must be base64 (RFC 4648)');
    } else if (json) {
      // A JSON payload is kept as JSON so that filters can reach into it.
      try {
        data = JSON.parse(Buffer.from(raw.data_base64, 'base64').toString('utf8'));
      } catch {
        fail('data_base64', `data is not JSON although datacontenttype says ${contentType}`, 'data');
      }
    } else {
      dataBase64 = raw.data_base64;
    }
  } else if (hasData && !json && typeof data !== 'string') {
    fail(
      'data',
      `data must be a string (or data_base64 used) when datacontenttype is ${contentType}`,
      'data',
    );
  }

  if (errors.length > 0) throw invalidEvent(index, errors);

  const envelope: Record<string, unknown> = { specversion: '1.0', id, source, type, time };
  if (subject !== undefined) envelope.subject = subject;
  envelope.datacontenttype = contentType;
  if (dataschema !== undefined) envelope.dataschema = dataschema;
  if (extensions !== undefined) Object.assign(envelope, extensions);
  if (dataBase64 !== undefined) envelope.data_base64 = dataBase64;
  else if (data !== undefined && data !== null) envelope.data = data;
  let serialised: string;
  try {
    serialised = JSON.stringify(envelope);
  } catch (cause) {
    throw invalidEvent(
      index,
      [{ pointer: `${at}/data`, message: 'data cannot be serialised as JSON', kind: 'data' }],
      cause,
    );
  }
  // A UTF-8 byte is at most 3 per UTF-16 unit: skip the exact count when it cannot matter.
  if (serialised.length * 3 > limits.maxEventBytes) {
    const bytes = Buffer.byteLength(serialised);
    if (bytes > limits.maxEventBytes) {
      throw new OfftakeError(
        'too-large',
        `Event ${index} is ${bytes} bytes as stored; the limit is ${limits.maxEventBytes} bytes.`,
        {
          errors: [{ pointer: at, message: `event larger than ${limits.maxEventBytes} bytes`, kind: 'size' }],
          extensions: { index },
        },
      );
    }
  }
  return { source: source!, id: id!, type: type!, json: serialised };
}

/**
 * Checks a batch: its size first (`batch-too-large`), then every event (see
 * {@link prepareEvent}); the first invalid event rejects the whole batch.
 */
export function prepareEvents(
  events: readonly unknown[],
  limits: EventLogLimits,
  now = new Date(),
): PreparedEvent[] {
  if (events.length > limits.maxBatchEvents) {
    throw new OfftakeError(
      'batch-too-large',
      `The batch has ${events.length} events; the limit is ${limits.maxBatchEvents}.`,
      { extensions: { limit: limits.maxBatchEvents } },
    );
  }
  const time = now.toISOString();
  const prepared = new Array<PreparedEvent>(events.length);
  for (let i = 0; i < events.length; i++) prepared[i] = prepareEvent(events[i], i, limits, time);
  return prepared;
}

function invalidEvent(index: number, errors: FieldError[], cause?: unknown): OfftakeError {
  const first = errors[0];
  const where = first.pointer.split('/').slice(2).join('/') || 'event';
  return new OfftakeError(
    'invalid-event',
    `Event ${index} is invalid: ${where}: ${first.message}${errors.length > 1 ? ` (and ${errors.length - 1} more)` : ''}.`,
    { errors, extensions: { index }, cause },
  );
}

// ---------------------------------------------------------------------------------------------
// HTTP protocol binding

/** The media types a POST of events accepts. */
export const EVENT_MEDIA_TYPES = Object.freeze({
  json: 'application/json',
  ndjson: 'application/x-ndjson',
  structured: 'application/cloudevents+json',
  batch: 'application/cloudevents-batch+json',
});

/** An HTTP request carrying events, reduced to what the binding needs. */
export interface HttpEventsRequest {
  /** Lower-case header names, as node gives them. */
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** Events read from a request: raw (not yet checked) event objects, and whether the body was a batch. */
export interface HttpEvents {
  events: unknown[];
  batch: boolean;
  /** Which mode the body was in. */
  mode: 'json' | 'ndjson' | 'structured' | 'batch' | 'binary';
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function decodeText(body: Buffer): string {
  try {
    return utf8.decode(body);
  } catch (cause) {
    throw new OfftakeError('invalid-json', 'The body is not valid UTF-8.', { cause });
  }
}

function header(req: HttpEventsRequest, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(', ') : v;
}

/** Where a JSON.parse error is, as line and column of `text`. */
function jsonError(text: string, cause: unknown, what: string, pointer = '', lineOffset = 0): OfftakeError {
  const message = cause instanceof Error ? cause.message : String(cause);
  const pos = /position (\d+)/.exec(message);
  const error: FieldError = {
    pointer,
    message: message.replace(/\s*\(line \d+ column \d+\)/, ''),
    kind: 'json',
  };
  if (pos !== null) {
    const before = text.slice(0, Number(pos[1]));
    const nl = before.lastIndexOf('\n');
    error.line = lineOffset + before.split('\n').length;
    error.column = Number(pos[1]) - nl;
  } else if (lineOffset > 0) {
    error.line = lineOffset + 1;
  }
  return new OfftakeError('invalid-json', `${what} is not valid JSON: ${error.message}`, {
    errors: [error],
    cause,
  });
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw jsonError(text, cause, what);
  }
}

function requireSpecversion(events: unknown[], batch: boolean): void {
  events.forEach((event, i) => {
    if (isPlainObject(event) && event.specversion === undefined) {
      throw new OfftakeError(
        'invalid-event',
        `Event ${i} is invalid: specversion is required in CloudEvents format.`,
        {
          errors: [
            {
              pointer: batch ? `/${i}/specversion` : '/specversion',
              message: 'specversion is required',
              kind: 'required',
            },
          ],
          extensions: { index: i },
        },
      );
    }
  });
}

/**
 * Reads the events of a POST body according to the CloudEvents HTTP binding: structured
 * (`application/cloudevents+json`), batched (`application/cloudevents-batch+json`), binary
 * (any body with `ce-specversion` and `ce-*` headers), plus plain JSON (one object or an
 * array) and NDJSON (`application/x-ndjson`, one event per line). Throws
 * `unsupported-media-type` (415), `invalid-json` or `invalid-event`.
 */
export function eventsFromHttp(req: HttpEventsRequest): HttpEvents {
  const contentType = header(req, 'content-type');
  const essence = contentType === undefined ? '' : mediaTypeEssence(contentType);
  const charset =
    contentType === undefined ? undefined : /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(contentType)?.[1];
  if (charset !== undefined && !/^(utf-?8|us-ascii)$/i.test(charset)) {
    throw new OfftakeError('unsupported-media-type', `The charset ${charset} is not supported; send UTF-8.`);
  }

  if (essence === EVENT_MEDIA_TYPES.structured) {
    const value = parseJson(decodeText(req.body), 'The body');
    if (!isPlainObject(value)) {
      throw new OfftakeError(
        'invalid-event',
        `A structured CloudEvent is one JSON object; send batches as ${EVENT_MEDIA_TYPES.batch}.`,
        {
          errors: [{ pointer: '', message: 'expected a JSON object', kind: 'type' }],
          extensions: { index: 0 },
        },
      );
    }
    requireSpecversion([value], false);
    return { events: [value], batch: false, mode: 'structured' };
  }
  if (essence === EVENT_MEDIA_TYPES.batch) {
    const value = parseJson(decodeText(req.body), 'The body');
    if (!Array.isArray(value)) {
      throw new OfftakeError('invalid-event', 'A CloudEvents batch is a JSON array of events.', {
        errors: [{ pointer: '', message: 'expected a JSON array', kind: 'type' }],
      });
    }
    requireSpecversion(value, true);
    return { events: value, batch: true, mode: 'batch' };
  }
  if (header(req, 'ce-specversion') !== undefined)
    return { events: [binaryEvent(req, contentType)], batch: false, mode: 'binary' };
  if (essence === EVENT_MEDIA_TYPES.json) {
    const value = parseJson(decodeText(req.body), 'The body');
    if (Array.isArray(value)) return { events: value, batch: true, mode: 'json' };
    return { events: [value], batch: false, mode: 'json' };
  }
  if (essence === EVENT_MEDIA_TYPES.ndjson || essence === 'application/jsonl') {
    return { events: ndjsonEvents(decodeText(req.body)), batch: true, mode: 'ndjson' };
  }
  throw new OfftakeError(
    'unsupported-media-type',
    `${contentType === undefined ? 'A body without Content-Type' : `Content-Type ${JSON.stringify(contentType.slice(0, 100))}`} is not accepted here: send ${Object.values(EVENT_MEDIA_TYPES).join(', ')}, or a binary-mode CloudEvent with ce-* headers.`,
  );
}

const NOT_BLANK = /\S/;

function ndjsonEvents(text: string): unknown[] {
  const events: unknown[] = [];
  let start = 0;
  let line = 0;
  while (start <= text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    const last = end > start && text.charCodeAt(end - 1) === 13 ? end - 1 : end;
    const chunk = last > start ? text.slice(start, last) : '';
    // Blank lines (a trailing newline, mostly) separate nothing.
    if (NOT_BLANK.test(chunk)) {
      try {
        events.push(JSON.parse(chunk));
      } catch (cause) {
        const err = jsonError(chunk, cause, `Line ${line + 1}`, `/${events.length}`, line);
        err.extensions.index = events.length;
        throw err;
      }
    }
    line++;
    start = end + 1;
  }
  return events;
}

function binaryEvent(req: HttpEventsRequest, contentType: string | undefined): Record<string, unknown> {
  const event: Record<string, unknown> = {};
  for (const [name, raw] of Object.entries(req.headers)) {
    if (!name.startsWith('ce-') || raw === undefined) continue;
    const attribute = name.slice(3);
    const value = Array.isArray(raw) ? raw.join(', ') : raw;
    if (attribute === 'data' || attribute === 'data_base64' || attribute === 'datacontenttype') {
      throw new OfftakeError(
        'invalid-event',
        `The header ${name} is not allowed: in binary mode the body is the data and Content-Type its type.`,
        {
          errors: [{ pointer: `/${attribute}`, message: `header ${name} not allowed`, kind: 'attribute' }],
          extensions: { index: 0 },
        },
      );
    }
    let decoded: string;
    try {
      decoded = decodeURIComponent(value);
    } catch (cause) {
      throw new OfftakeError('invalid-event', `The header ${name} is not correctly percent-encoded.`, {
        errors: [{ pointer: `/${attribute}`, message: 'bad percent-encoding', kind: 'attribute' }],
        extensions: { index: 0 },
        cause,
      });
    }
    event[attribute] = decoded;
  }
  if (contentType !== undefined) event.datacontenttype = contentType;
  if (req.body.length > 0) {
    const type = contentType ?? 'application/json';
    if (isJsonMediaType(type)) {
      try {
        event.data = JSON.parse(utf8.decode(req.body));
      } catch {
        throw new OfftakeError(
          'invalid-event',
          `Event 0 is invalid: data is not JSON although the content type says ${type}.`,
          {
            errors: [
              {
                pointer: '/data',
                message: `data is not JSON although the content type is ${type}`,
                kind: 'data',
              },
            ],
            extensions: { index: 0 },
          },
        );
      }
    } else if (mediaTypeEssence(type).startsWith('text/') || /;\s*charset=/i.test(type)) {
      event.data = decodeText(req.body);
    } else {
      event.data_base64 = req.body.toString('base64');
    }
  }
  return event;
}
