/**
 * The OpenAPI 3.1 paths of the event log's HTTP face (`streams.ts`), for `createApp`'s
 * `extraRouters[].openApiPaths`. Schemas are inline; problems use the document's `Problem`.
 */
import { EVENT_TYPE, STREAM_NAME } from '../../crds/dataproduct.schema.ts';
import { MAX_STREAM_NAME_LENGTH } from '../../lib/eventlog/event-log.ts';

const problem = (description: string) => ({
  description,
  content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
});

const offset = {
  type: 'string',
  pattern: '^[0-9]+-[0-9]+$',
  description: 'A position assigned by the log, `<ms>-<seq>`; compare numerically, part by part.',
};

const cloudEvent = {
  type: 'object',
  description:
    'A CloudEvents 1.0 event (JSON format). `id` + `source` identify it (a retry within the dedup window is not stored twice); ' +
    '`subject` is its key; `time` defaults to the append time, `datacontenttype` to application/json. Other lower-case ' +
    'attributes (1-20 letters or digits) are extensions; `offset` is reserved.',
  required: ['id', 'source', 'type'],
  properties: {
    specversion: { const: '1.0' },
    id: { type: 'string', minLength: 1, maxLength: 256 },
    source: { type: 'string', minLength: 1, maxLength: 1024, description: 'URI-reference' },
    type: { type: 'string', pattern: EVENT_TYPE, maxLength: 256 },
    time: { type: 'string', format: 'date-time' },
    subject: { type: 'string', minLength: 1, maxLength: 1024 },
    datacontenttype: { type: 'string' },
    dataschema: { type: 'string' },
    data: {},
    data_base64: { type: 'string', contentEncoding: 'base64' },
  },
  additionalProperties: { type: ['string', 'integer', 'boolean'] },
};

const logEvent = {
  ...cloudEvent,
  description: 'An event as stored, with the offset the log assigned.',
  required: ['offset', 'specversion', 'id', 'source', 'type', 'time', 'datacontenttype'],
  properties: { offset, ...cloudEvent.properties },
};

const retention = {
  description: 'How long the stream keeps events; null = every event, forever (the default).',
  oneOf: [
    { type: 'null' },
    {
      type: 'object',
      minProperties: 1,
      additionalProperties: false,
      properties: {
        maxLength: {
          type: 'integer',
          minimum: 1,
          description: 'Keep at most this many of the newest events.',
        },
        maxAgeSeconds: {
          type: 'integer',
          minimum: 1,
          description: 'Drop events appended longer ago (applied on append and when set).',
        },
      },
    },
  ],
};

const streamInfo = {
  type: 'object',
  required: [
    'name',
    'length',
    'firstOffset',
    'lastOffset',
    'firstTime',
    'lastTime',
    'retention',
    'createdAt',
  ],
  properties: {
    name: { type: 'string' },
    length: { type: 'integer' },
    firstOffset: { oneOf: [offset, { type: 'null' }] },
    lastOffset: { oneOf: [offset, { type: 'null' }] },
    firstTime: { type: ['string', 'null'], format: 'date-time' },
    lastTime: { type: ['string', 'null'], format: 'date-time' },
    retention,
    createdAt: { type: 'string', format: 'date-time' },
  },
};

const streamParam = {
  name: 'stream',
  in: 'path',
  required: true,
  schema: { type: 'string', pattern: STREAM_NAME, maxLength: MAX_STREAM_NAME_LENGTH },
};

const query = (name: string, description: string, schema: unknown = { type: 'string' }) => ({
  name,
  in: 'query',
  required: false,
  description,
  schema,
});

/** The OpenAPI paths object of the streams API mounted at `base`. */
export function streamsOpenApiPaths(base = '/v1/streams'): Record<string, unknown> {
  return {
    [base]: {
      get: {
        summary: 'List streams',
        responses: {
          '200': {
            description: 'Every stream',
            content: {
              'application/json': {
                schema: { type: 'object', properties: { items: { type: 'array', items: streamInfo } } },
              },
            },
          },
        },
      },
    },
    [`${base}/{stream}`]: {
      parameters: [streamParam],
      get: {
        summary: 'Describe a stream',
        responses: {
          '200': { description: 'The stream', content: { 'application/json': { schema: streamInfo } } },
          '400': problem('invalid-name'),
          '404': problem('stream-not-found'),
        },
      },
      put: {
        summary: "Set a stream's retention (creates the stream if needed) and apply it now",
        requestBody: {
          required: true,
          content: {
            'application/json': {
              schema: {
                type: 'object',
                required: ['retention'],
                additionalProperties: false,
                properties: { retention },
              },
            },
          },
        },
        responses: {
          '200': { description: 'The stream', content: { 'application/json': { schema: streamInfo } } },
          '400': problem('invalid-name, invalid-parameter, invalid-json'),
          '415': problem('unsupported-media-type'),
        },
      },
    },
    [`${base}/{stream}/events`]: {
      parameters: [streamParam],
      post: {
        summary: 'Append one event or a batch, all or nothing',
        description:
          'Accepts one event or an array (application/json), NDJSON (application/x-ndjson), CloudEvents structured ' +
          '(application/cloudevents+json), batched (application/cloudevents-batch+json) and binary mode (ce-* headers, ' +
          'the body is the data). One invalid event rejects the whole batch with its index; nothing is stored. A retried ' +
          'event (same source + id within the dedup window) is answered with its original offset.',
        requestBody: {
          required: true,
          content: {
            'application/json': { schema: { oneOf: [cloudEvent, { type: 'array', items: cloudEvent }] } },
            'application/x-ndjson': { schema: { type: 'string', description: 'One event per line' } },
            'application/cloudevents+json': { schema: cloudEvent },
            'application/cloudevents-batch+json': { schema: { type: 'array', items: cloudEvent } },
          },
        },
        responses: {
          '201': {
            description: 'Stored (at least one event was new)',
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  properties: {
                    stream: { type: 'string' },
                    offsets: {
                      type: 'array',
                      items: offset,
                      description: 'Per event, in order; a duplicate has its original offset.',
                    },
                    duplicates: {
                      type: 'array',
                      items: { type: 'integer' },
                      description: 'Indexes of events that were retries.',
                    },
                  },
                },
              },
            },
          },
          '200': { description: 'Every event was a retry; nothing new was stored' },
          '400': problem(
            'invalid-event (with index and /<index>/<attribute> pointers), invalid-json, invalid-name',
          ),
          '413': problem('too-large (body or one event), batch-too-large'),
          '415': problem('unsupported-media-type'),
          '503': problem(
            'unavailable: replicas did not confirm in time; the events are stored, a retry is safe',
          ),
        },
      },
      get: {
        summary: 'Replay a range of events (paged), or follow the stream as Server-Sent Events',
        parameters: [
          query('from', 'First offset (inclusive).', offset),
          query('to', 'Last offset (inclusive).', offset),
          query('since', 'Events appended at or after this time (RFC 3339 or ms since the epoch).'),
          query('until', 'Events appended before this time (RFC 3339 or ms since the epoch).'),
          query('type', 'Only these event types (repeat or comma-separate).'),
          query('limit', 'Most events in the page (default 100).', {
            type: 'integer',
            minimum: 1,
            maximum: 1000,
          }),
          query('cursor', 'Continue after this position (the `cursor` of the previous page).', offset),
          query(
            'follow',
            'Stream events as text/event-stream from `from`/`since` (default: from now); each event has `id:` = its ' +
              'offset, so an EventSource resumes with Last-Event-ID with nothing missed or repeated.',
            { type: 'boolean' },
          ),
          {
            name: 'Last-Event-ID',
            in: 'header',
            required: false,
            schema: offset,
            description: 'Resume a follower after this offset.',
          },
        ],
        responses: {
          '200': {
            description:
              'A page (`next` = URL of the next page, null when the range is exhausted), or an event stream',
            content: {
              'application/json': {
                schema: {
                  type: 'object',
                  properties: {
                    events: { type: 'array', items: logEvent },
                    cursor: { oneOf: [offset, { type: 'null' }] },
                    next: { type: ['string', 'null'] },
                  },
                },
              },
              'application/x-ndjson': { schema: { type: 'string' } },
              'text/event-stream': { schema: { type: 'string' } },
            },
          },
          '400': problem('invalid-offset, invalid-range, invalid-parameter, invalid-name'),
          '404': problem('stream-not-found'),
          '503': problem('unavailable: too many followers'),
        },
      },
    },
  };
}
