/**
 * The event log's HTTP face, mounted at `/v1/streams`:
 * - `GET /` lists streams; `GET /{stream}` describes one; `PUT /{stream}` sets its retention.
 * - `POST /{stream}/events` appends one event or a batch (JSON, NDJSON, CloudEvents structured,
 *   batched and binary modes), all or nothing, and answers with the offsets.
 * - `GET /{stream}/events` reads a page of a range (`from`, `to`, `since`, `until`, `type`,
 *   `limit`, `cursor`), or with `follow=true` streams events as Server-Sent Events.
 */
import express, { type Request, type Response, type Router } from 'express';
import { eventsFromHttp, isJsonMediaType } from '../../lib/eventlog/cloudevents.ts';
import {
  checkStreamName,
  parseOffset,
  type EventInput,
  type EventLog,
  type LogEvent,
  type Retention,
} from '../../lib/eventlog/event-log.ts';
import { OfftakeError, isOfftakeError } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import type { EventLogMetrics } from '../../lib/metrics.ts';
import { EVENT_TYPE } from '../../crds/dataproduct.schema.ts';

/** The HTTP limits of the streams API. */
export interface StreamsRouterLimits {
  /** Largest POST body, in bytes (413 `too-large`). */
  maxBodyBytes: number;
  /** Most events a page may hold (`limit` above it is `invalid-parameter`; default 1000). */
  maxPageSize?: number;
  /** Events per page when `limit` is not given (default 100). */
  defaultPageSize?: number;
  /** A page stops once its events pass this many bytes (default 4 MiB; at least one event is sent). */
  maxPageBytes?: number;
  /** Interval of SSE heartbeat comments, in ms (default 15000). */
  heartbeatMs?: number;
  /** Most concurrent followers (each holds a Redis connection); more get 503 (default 1000). */
  maxFollowers?: number;
}

/** What {@link streamsRouter} needs. */
export interface StreamsRouterDeps {
  eventLog: EventLog;
  logger: Logger;
  limits: StreamsRouterLimits;
  /** Counts appended events, when given. */
  metrics?: EventLogMetrics;
}

const READ_PARAMETERS = new Set(['from', 'to', 'since', 'until', 'type', 'limit', 'cursor', 'follow']);
const FOLLOW_PARAMETERS = new Set(['from', 'since', 'type', 'follow']);
const EVENT_TYPE_PATTERN = new RegExp(EVENT_TYPE);
const NDJSON = 'application/x-ndjson';

/** Builds the router of `/v1/streams`; errors reach the problem middleware as {@link OfftakeError}s. */
export function streamsRouter(deps: StreamsRouterDeps): Router {
  const { eventLog, logger } = deps;
  const limits = {
    maxPageSize: 1000,
    defaultPageSize: 100,
    maxPageBytes: 4 * 1024 * 1024,
    heartbeatMs: 15_000,
    maxFollowers: 1000,
    ...deps.limits,
  };
  let followers = 0;
  const router = express.Router();
  const rawBody = express.raw({ type: () => true, limit: limits.maxBodyBytes });

  router.get('/', async (_req, res) => {
    res.json({ items: await eventLog.listStreams() });
  });

  router
    .route('/:stream')
    .get(async (req, res) => {
      res.json(await eventLog.describe(checkStreamName(req.params.stream)));
    })
    .put(rawBody, async (req, res) => {
      const stream = checkStreamName(req.params.stream);
      const body = jsonBody(req);
      if (typeof body !== 'object' || body === null || Array.isArray(body)) {
        throw new OfftakeError(
          'invalid-parameter',
          'The body must be a JSON object: {"retention": {...} | null}.',
        );
      }
      for (const key of Object.keys(body)) {
        if (key !== 'retention') {
          throw new OfftakeError(
            'invalid-parameter',
            `${key} is not a stream setting; the only one is retention.`,
            {
              errors: [{ pointer: `/${key}`, message: 'unknown field' }],
            },
          );
        }
      }
      if (!('retention' in body)) {
        throw new OfftakeError('invalid-parameter', 'retention is required (null keeps every event).', {
          errors: [{ pointer: '/retention', message: 'required' }],
        });
      }
      res.json(await eventLog.setRetention(stream, (body as { retention: Retention | null }).retention));
    })
    .all(methodNotAllowed('GET, PUT'));

  router
    .route('/:stream/events')
    .post(rawBody, async (req, res) => {
      const stream = checkStreamName(req.params.stream);
      const { events, batch } = eventsFromHttp({ headers: req.headers, body: bodyBuffer(req) });
      let result;
      try {
        result = await eventLog.append(stream, events as EventInput[]);
      } catch (err) {
        throw batch ? err : withSingleEventPointers(err);
      }
      const duplicates: number[] = [];
      result.duplicates.forEach((duplicate, i) => {
        if (duplicate) duplicates.push(i);
      });
      const stored = result.offsets.length - duplicates.length;
      deps.metrics?.appended(stream, stored);
      res.status(stored > 0 ? 201 : 200).json({ stream, offsets: result.offsets, duplicates });
    })
    .get(async (req, res) => {
      const stream = checkStreamName(req.params.stream);
      const query = req.query as Record<string, unknown>;
      const follow = booleanParameter(query.follow, 'follow');
      const allowed = follow ? FOLLOW_PARAMETERS : READ_PARAMETERS;
      for (const key of Object.keys(query)) {
        if (!allowed.has(key)) {
          throw new OfftakeError(
            'invalid-parameter',
            follow && READ_PARAMETERS.has(key)
              ? `${key} does not apply to follow=true (a follower has no end); use from, since or type.`
              : `Unknown query parameter ${JSON.stringify(key)}; use ${[...allowed].join(', ')}.`,
          );
        }
      }
      const types = typesParameter(query.type);
      const from = optionalOffset(query.from, 'from offset');
      const since = timeParameter(query.since, 'since');
      if (follow) {
        await followStream(req, res, stream, { from, since, types });
        return;
      }
      const to = optionalOffset(query.to, 'to offset');
      const after = optionalOffset(query.cursor, 'cursor');
      const until = timeParameter(query.until, 'until');
      const limit = limitParameter(query.limit, limits.defaultPageSize, limits.maxPageSize);
      const page = await eventLog.read(stream, {
        from,
        to,
        after,
        since,
        until,
        types,
        limit,
        maxBytes: limits.maxPageBytes,
      });
      const next = page.next === null ? null : nextUrl(req, page.next);
      if (next !== null) res.set('Link', `<${next}>; rel="next"`);
      if (req.accepts(['application/json', NDJSON]) === NDJSON) {
        res
          .type(NDJSON)
          .send(page.events.map((e) => JSON.stringify(e)).join('\n') + (page.events.length > 0 ? '\n' : ''));
        return;
      }
      res.json({ events: page.events, cursor: page.next, next });
    })
    .all(methodNotAllowed('GET, POST'));

  /** Server-Sent Events from an offset; `id:` is the offset, so Last-Event-ID resumes exactly after it. */
  async function followStream(
    req: Request,
    res: Response,
    stream: string,
    position: { from?: string; since?: Date; types?: string[] },
  ): Promise<void> {
    const lastEventId = req.get('last-event-id');
    const after =
      lastEventId === undefined || lastEventId === '' ? undefined : parseOffset(lastEventId, 'Last-Event-ID');
    // Unknown streams are answered as problems, before the event stream starts.
    await eventLog.describe(stream);
    if (followers >= limits.maxFollowers) {
      throw new OfftakeError(
        'unavailable',
        `This server already serves ${limits.maxFollowers} followers; try again later.`,
      );
    }
    followers++;
    const abort = new AbortController();
    const onClose = () => abort.abort();
    res.on('close', onClose);
    res.status(200).set({
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache, no-transform',
      Connection: 'keep-alive',
      'X-Accel-Buffering': 'no',
    });
    res.flushHeaders();
    res.write('retry: 1000\n\n');
    // Heartbeats keep idle proxies from closing the connection; skipped while the client lags.
    const heartbeat = setInterval(() => {
      if (!res.writableNeedDrain) res.write(': heartbeat\n\n');
    }, limits.heartbeatMs);
    try {
      const events = eventLog.follow(stream, {
        after,
        from: after === undefined ? position.from : undefined,
        since: after === undefined && position.from === undefined ? position.since : undefined,
        types: position.types,
        signal: abort.signal,
      });
      for await (const batch of events) {
        if (!res.write(sseChunk(batch))) await drained(res, abort.signal);
      }
    } catch (err) {
      if (!abort.signal.aborted)
        logger.warn({ err, stream }, 'follower stopped by an error; the client will reconnect');
    } finally {
      clearInterval(heartbeat);
      res.off('close', onClose);
      followers--;
      abort.abort();
      res.end();
    }
  }

  return router;
}

function sseChunk(batch: LogEvent[]): string {
  let chunk = '';
  // JSON.stringify never emits a raw newline, so each event is one data line.
  for (const event of batch) chunk += `id: ${event.offset}\ndata: ${JSON.stringify(event)}\n\n`;
  return chunk;
}

/** Resolves once the response can take more, or the client is gone. */
function drained(res: Response, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    if (signal.aborted) return resolve();
    res.on('drain', done);
    signal.addEventListener('abort', done, { once: true });
  });
}

function methodNotAllowed(allow: string) {
  return (_req: Request, res: Response) => {
    res.set('Allow', allow);
    throw new OfftakeError('method-not-allowed', `Use ${allow} on this resource.`);
  };
}

/** The request body as bytes, also when a JSON parser mounted before this router consumed it. */
function bodyBuffer(req: Request): Buffer {
  const body: unknown = req.body;
  if (Buffer.isBuffer(body)) return body;
  if (body === undefined || body === null) return Buffer.alloc(0);
  return Buffer.from(JSON.stringify(body));
}

function jsonBody(req: Request): unknown {
  const contentType = req.get('content-type');
  if (contentType === undefined || !isJsonMediaType(contentType)) {
    throw new OfftakeError('unsupported-media-type', 'Send the stream settings as application/json.');
  }
  const text = bodyBuffer(req).toString('utf8');
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new OfftakeError('invalid-json', `The body is not valid JSON: ${(cause as Error).message}`, {
      cause,
    });
  }
}

/** A single event's problems point into the event itself (`/type`), not into a batch (`/0/type`). */
function withSingleEventPointers(err: unknown): unknown {
  if (isOfftakeError(err)) {
    for (const e of err.errors) if (e.pointer.startsWith('/0')) e.pointer = e.pointer.slice(2);
  }
  return err;
}

function single(value: unknown, name: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw new OfftakeError('invalid-parameter', `${name} may be given once.`);
  return value;
}

function optionalOffset(value: unknown, name: string): string | undefined {
  const text = single(value, name);
  return text === undefined ? undefined : parseOffset(text, name);
}

function booleanParameter(value: unknown, name: string): boolean {
  const text = single(value, name);
  if (text === undefined || text === 'false') return false;
  if (text === 'true') return true;
  throw new OfftakeError('invalid-parameter', `${name} must be true or false.`);
}

function limitParameter(value: unknown, fallback: number, max: number): number {
  const text = single(value, 'limit');
  if (text === undefined) return fallback;
  const limit = Number(text);
  if (!/^\d+$/.test(text) || limit < 1 || limit > max) {
    throw new OfftakeError('invalid-parameter', `limit must be an integer from 1 to ${max}.`);
  }
  return limit;
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$/;

/** A time as RFC 3339 or as milliseconds since the epoch. */
function timeParameter(value: unknown, name: string): Date | undefined {
  const text = single(value, name);
  if (text === undefined) return undefined;
  const ms = /^\d{1,15}$/.test(text) ? Number(text) : RFC3339.test(text) ? Date.parse(text) : Number.NaN;
  if (Number.isNaN(ms)) {
    throw new OfftakeError(
      'invalid-parameter',
      `${name} must be an RFC 3339 time (2024-06-01T12:00:00Z) or milliseconds since the epoch.`,
    );
  }
  return new Date(ms);
}

function typesParameter(value: unknown): string[] | undefined {
  if (value === undefined) return undefined;
  const raw = Array.isArray(value) ? value : [value];
  const types: string[] = [];
  for (const item of raw) {
    if (typeof item !== 'string') throw new OfftakeError('invalid-parameter', 'type must be a string.');
    for (const type of item.split(',')) {
      if (!EVENT_TYPE_PATTERN.test(type) || type.length > 256) {
        throw new OfftakeError(
          'invalid-parameter',
          `${JSON.stringify(type.slice(0, 64))} is not an event type.`,
        );
      }
      types.push(type);
    }
  }
  return types;
}

function nextUrl(req: Request, cursor: string): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(req.query as Record<string, unknown>)) {
    if (key === 'cursor') continue;
    for (const item of Array.isArray(value) ? value : [value]) params.append(key, String(item));
  }
  params.set('cursor', cursor);
  return `${req.baseUrl}${req.path}?${params.toString()}`;
}
