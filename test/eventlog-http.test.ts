/**
 * The event log's HTTP face on a real Redis and a real HTTP server: every POST mode, answers
 * with offsets, idempotent retries, all-or-nothing batches, limits and bad input (each leaving
 * the stream unchanged), paged replay, Server-Sent Events with resume, backpressure and
 * disconnect, list/describe and retention.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import express from 'express';
import { Redis } from 'ioredis';
import request from 'supertest';
import { problemHandler } from '../api/problem.ts';
import { streamsOpenApiPaths } from '../api/routes/streams-openapi.ts';
import { streamsRouter } from '../api/routes/streams.ts';
import type { LogEvent, StreamInfo } from '../lib/eventlog/event-log.ts';
import { RedisEventLog } from '../lib/eventlog/redis-event-log.ts';
import { createLogger } from '../lib/logger.ts';
import {
  REDIS_URL,
  SseClient,
  deleteKeys,
  eventually,
  orderEvent,
  uniquePrefix,
} from './eventlog-helpers.ts';

const prefix = uniquePrefix('eventlog-http');
const connectionName = `eventlog-http-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
let redis: Redis;
let log: RedisEventLog;
let app: express.Express;
let server: Server;
let base: string;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  redis = new Redis(REDIS_URL);
  log = await RedisEventLog.create({
    redis,
    prefix,
    durability: { mode: 'none' },
    followBlockMs: 200,
    connectionName,
    limits: { maxEventBytes: 64 * 1024, maxBatchEvents: 100 },
  });
  const logger = createLogger('silent');
  app = express();
  app.use(
    '/v1/streams',
    streamsRouter({ eventLog: log, logger, limits: { maxBodyBytes: 512 * 1024, heartbeatMs: 100 } }),
  );
  app.use(problemHandler(logger));
  server = app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
});

after(async () => {
  await log.close();
  server.closeAllConnections();
  server.close();
  await deleteKeys(redis, prefix);
  redis.disconnect();
});

async function contents(stream: string): Promise<LogEvent[]> {
  const events: LogEvent[] = [];
  try {
    for await (const batch of log.scan(stream)) events.push(...batch);
  } catch {
    return [];
  }
  return events;
}

const ndjson = (events: unknown[]) => events.map((e) => JSON.stringify(e)).join('\n') + '\n';

/** Followers of the API's log, and how many of them wait at the head of their stream. */
const followers = () => log.followerCount;

describe('POST /v1/streams/{stream}/events', () => {
  it('appends one JSON event and answers with its offset', async () => {
    const res = await request(app).post('/v1/streams/http-one/events').send(orderEvent(1)).expect(201);
    assert.equal(res.body.stream, 'http-one');
    assert.equal(res.body.offsets.length, 1);
    assert.deepEqual(res.body.duplicates, []);
    const [stored] = await contents('http-one');
    assert.equal(stored.offset, res.body.offsets[0]);
    assert.equal(stored.id, 'order-1');
  });

  it('appends a JSON array, NDJSON, structured, batched and binary CloudEvents', async () => {
    const stream = '/v1/streams/http-modes/events';
    const array = await request(app)
      .post(stream)
      .send([orderEvent(1), orderEvent(2)])
      .expect(201);
    const lines = await request(app)
      .post(stream)
      .set('content-type', 'application/x-ndjson')
      .send(ndjson([orderEvent(3), orderEvent(4), orderEvent(5)]))
      .expect(201);
    const structured = await request(app)
      .post(stream)
      .set('content-type', 'application/cloudevents+json')
      .send(JSON.stringify({ specversion: '1.0', ...orderEvent(6) }))
      .expect(201);
    const batch = await request(app)
      .post(stream)
      .set('content-type', 'application/cloudevents-batch+json')
      .send(JSON.stringify([{ specversion: '1.0', ...orderEvent(7) }]))
      .expect(201);
    const binary = await request(app)
      .post(stream)
      .set({
        'content-type': 'application/json',
        'ce-specversion': '1.0',
        'ce-id': 'order-8',
        'ce-source': 'urn:test:checkout',
        'ce-type': 'OrderPlaced',
        'ce-subject': 'customer-1',
        'ce-time': '2024-06-01T00:00:00Z',
        'ce-traceparent': '00-trace-01',
      })
      .send(JSON.stringify({ amount: 8 }))
      .expect(201);
    const binaryText = await request(app)
      .post(stream)
      .set({
        'content-type': 'text/plain',
        'ce-specversion': '1.0',
        'ce-id': 'note',
        'ce-source': 's',
        'ce-type': 'Note',
      })
      .send('hello')
      .expect(201);
    const offsets = [array, lines, structured, batch, binary, binaryText].flatMap(
      (r) => r.body.offsets as string[],
    );
    assert.equal(offsets.length, 9);
    const stored = await contents('http-modes');
    assert.deepEqual(
      stored.map((e) => e.offset),
      offsets,
    );
    assert.deepEqual(
      stored.map((e) => e.id),
      ['order-1', 'order-2', 'order-3', 'order-4', 'order-5', 'order-6', 'order-7', 'order-8', 'note'],
    );
    const fromHeaders = stored[7];
    assert.equal(fromHeaders.subject, 'customer-1');
    assert.equal(fromHeaders.time, '2024-06-01T00:00:00Z');
    assert.equal(fromHeaders.traceparent, '00-trace-01');
    assert.deepEqual(fromHeaders.data, { amount: 8 });
    assert.equal(stored[8].data, 'hello');
    assert.equal(stored[8].datacontenttype, 'text/plain');
  });

  it('answers a retry with the original offsets and stores nothing twice', async () => {
    const first = await request(app)
      .post('/v1/streams/http-idem/events')
      .send([orderEvent(1), orderEvent(2)])
      .expect(201);
    const retry = await request(app)
      .post('/v1/streams/http-idem/events')
      .send([orderEvent(1), orderEvent(2)])
      .expect(200);
    assert.deepEqual(retry.body.offsets, first.body.offsets);
    assert.deepEqual(retry.body.duplicates, [0, 1]);
    const partly = await request(app)
      .post('/v1/streams/http-idem/events')
      .send([orderEvent(2), orderEvent(3)])
      .expect(201);
    assert.equal(partly.body.offsets[0], first.body.offsets[1]);
    assert.deepEqual(partly.body.duplicates, [0]);
    assert.equal((await contents('http-idem')).length, 3);
  });

  it('rejects a batch with one invalid event, naming its index, and stores none of it', async () => {
    await request(app)
      .post('/v1/streams/http-atomic/events')
      .send([orderEvent(0)])
      .expect(201);
    const res = await request(app)
      .post('/v1/streams/http-atomic/events')
      .send([orderEvent(1), orderEvent(2), { ...orderEvent(3), type: undefined }, orderEvent(4)])
      .expect(400)
      .expect('content-type', /application\/problem\+json/);
    assert.equal(res.body.code, 'invalid-event');
    assert.equal(res.body.index, 2);
    assert.equal(res.body.errors[0].pointer, '/2/type');
    const lines = await request(app)
      .post('/v1/streams/http-atomic/events')
      .set('content-type', 'application/x-ndjson')
      .send(`${JSON.stringify(orderEvent(5))}\n{"id": "broken"\n`)
      .expect(400);
    assert.equal(lines.body.code, 'invalid-json');
    assert.equal(lines.body.index, 1);
    assert.equal(lines.body.errors[0].line, 2);
    assert.deepEqual(
      (await contents('http-atomic')).map((e) => e.id),
      ['order-0'],
    );
  });

  it('points into the event itself when the body is a single event', async () => {
    const res = await request(app)
      .post('/v1/streams/http-single-bad/events')
      .send({ id: 'x', source: 's' })
      .expect(400);
    assert.equal(res.body.errors[0].pointer, '/type');
  });

  describe('leaves the stream unchanged on bad input', () => {
    const stream = 'http-bad';
    let before: StreamInfo;

    it('(setup)', async () => {
      await request(app)
        .post(`/v1/streams/${stream}/events`)
        .send([orderEvent(0), orderEvent(1)])
        .expect(201);
      before = await log.describe(stream);
    });

    const cases: [string, (r: request.Test) => request.Test, number, string][] = [
      [
        'an event too large',
        (r) => r.send(orderEvent(2, { data: { blob: 'x'.repeat(70_000) } })),
        413,
        'too-large',
      ],
      [
        'a body too large',
        (r) => r.send(Array.from({ length: 40 }, (_, i) => orderEvent(i, { data: 'y'.repeat(20_000) }))),
        413,
        'too-large',
      ],
      [
        'a batch too large',
        (r) => r.send(Array.from({ length: 101 }, (_, i) => orderEvent(i + 10))),
        413,
        'batch-too-large',
      ],
      ['a missing type', (r) => r.send([orderEvent(2), { id: 'x', source: 's' }]), 400, 'invalid-event'],
      [
        'binary data that is not JSON although the content type says so',
        (r) =>
          r
            .set({
              'content-type': 'application/json',
              'ce-specversion': '1.0',
              'ce-id': 'b',
              'ce-source': 's',
              'ce-type': 'T',
            })
            .send('{not json'),
        400,
        'invalid-event',
      ],
      [
        'base64 data that is not JSON although datacontenttype says so',
        (r) =>
          r.send({ ...orderEvent(3), data: undefined, data_base64: Buffer.from('nope').toString('base64') }),
        400,
        'invalid-event',
      ],
      [
        'a body that is not JSON',
        (r) => r.set('content-type', 'application/json').send('{"id": '),
        400,
        'invalid-json',
      ],
      [
        'an unsupported media type',
        (r) => r.set('content-type', 'text/csv').send('a,b'),
        415,
        'unsupported-media-type',
      ],
      [
        'no content type',
        (r) => r.send(Buffer.from('{}')).unset('content-type'),
        415,
        'unsupported-media-type',
      ],
      ['a bad time', (r) => r.send(orderEvent(4, { time: 'noon' })), 400, 'invalid-event'],
      ['a reserved attribute', (r) => r.send(orderEvent(5, { offset: '1-1' })), 400, 'invalid-event'],
      [
        'a wrong specversion',
        (r) => r.send(orderEvent(6, { specversion: '0.3' as '1.0' })),
        400,
        'invalid-event',
      ],
    ];
    for (const [name, build, status, code] of cases) {
      it(name, async () => {
        const res = await build(request(app).post(`/v1/streams/${stream}/events`)).expect(status);
        assert.equal(res.body.code, code, JSON.stringify(res.body));
        assert.match(res.headers['content-type'], /application\/problem\+json/);
        assert.ok(
          typeof res.body.detail === 'string' && !res.body.detail.includes('    at '),
          'no stack trace',
        );
        assert.deepEqual(await log.describe(stream), before);
      });
    }

    it('a bad stream name', async () => {
      const res = await request(app).post('/v1/streams/Bad%20Name/events').send(orderEvent(1)).expect(400);
      assert.equal(res.body.code, 'invalid-name');
      const keys = await redis.keys(`${prefix}:*Bad*`);
      assert.deepEqual(keys, []);
    });
  });
});

describe('GET /v1/streams/{stream}/events', () => {
  const stream = 'http-read';
  let offsets: string[];

  before(async () => {
    const res = await request(app)
      .post(`/v1/streams/${stream}/events`)
      .set('content-type', 'application/x-ndjson')
      .send(ndjson(Array.from({ length: 95 }, (_, i) => orderEvent(i))))
      .expect(201);
    offsets = res.body.offsets;
  });

  it('pages through the stream with a cursor and a next link', async () => {
    const seen: string[] = [];
    let url: string | null = `/v1/streams/${stream}/events?limit=40`;
    let pages = 0;
    while (url !== null) {
      const res: request.Response = await request(app).get(url).expect(200);
      seen.push(...(res.body.events as LogEvent[]).map((e) => e.offset));
      if (res.body.next !== null) assert.match(res.headers.link, /rel="next"/);
      url = res.body.next;
      pages++;
    }
    assert.deepEqual(seen, offsets);
    assert.equal(pages, 3);
  });

  it('reads a range by offsets, by time and by type', async () => {
    const range = await request(app)
      .get(`/v1/streams/${stream}/events?from=${offsets[3]}&to=${offsets[6]}`)
      .expect(200);
    assert.deepEqual(
      range.body.events.map((e: LogEvent) => e.offset),
      offsets.slice(3, 7),
    );
    assert.equal(range.body.next, null);
    const future = new Date(Date.now() + 3_600_000).toISOString();
    const none = await request(app).get(`/v1/streams/${stream}/events?since=${future}`).expect(200);
    assert.deepEqual(none.body.events, []);
    const untilNow = await request(app)
      .get(`/v1/streams/${stream}/events?until=${Date.now() + 1000}&limit=1000`)
      .expect(200);
    assert.equal(untilNow.body.events.length, 95);
    const typed = await request(app)
      .get(`/v1/streams/${stream}/events?type=OrderCancelled&limit=1000`)
      .expect(200);
    assert.equal(typed.body.events.length, 32);
    assert.ok(typed.body.events.every((e: LogEvent) => e.type === 'OrderCancelled'));
    const both = await request(app)
      .get(`/v1/streams/${stream}/events?type=OrderCancelled,OrderPlaced&limit=1000`)
      .expect(200);
    assert.equal(both.body.events.length, 95);
  });

  it('serves NDJSON when asked', async () => {
    const res = await request(app)
      .get(`/v1/streams/${stream}/events?limit=5`)
      .set('accept', 'application/x-ndjson')
      .expect(200)
      .expect('content-type', /application\/x-ndjson/);
    const lines = res.text.trim().split('\n');
    assert.equal(lines.length, 5);
    assert.equal(JSON.parse(lines[0]).offset, offsets[0]);
    assert.match(res.headers.link, /cursor=/);
  });

  it('rejects bad parameters with clear problems', async () => {
    const cases: [string, number, string][] = [
      [`from=${offsets[5]}&to=${offsets[2]}`, 400, 'invalid-range'],
      ['since=2024-01-02T00:00:00Z&until=2024-01-01T00:00:00Z', 400, 'invalid-range'],
      ['from=yesterday', 400, 'invalid-offset'],
      ['cursor=abc', 400, 'invalid-offset'],
      ['to=1-2-3', 400, 'invalid-offset'],
      ['since=last%20week', 400, 'invalid-parameter'],
      ['limit=0', 400, 'invalid-parameter'],
      ['limit=100000', 400, 'invalid-parameter'],
      ['limit=ten', 400, 'invalid-parameter'],
      ['type=not%20a%20type', 400, 'invalid-parameter'],
      ['colour=red', 400, 'invalid-parameter'],
      ['from=1-0&from=2-0', 400, 'invalid-parameter'],
      ['follow=maybe', 400, 'invalid-parameter'],
      ['follow=true&to=5-0', 400, 'invalid-parameter'],
    ];
    for (const [query, status, code] of cases) {
      const res = await request(app).get(`/v1/streams/${stream}/events?${query}`).expect(status);
      assert.equal(res.body.code, code, query);
    }
    const missing = await request(app).get('/v1/streams/no-such-stream/events').expect(404);
    assert.equal(missing.body.code, 'stream-not-found');
    const badName = await request(app).get('/v1/streams/UPPER/events').expect(400);
    assert.equal(badName.body.code, 'invalid-name');
  });
});

describe('GET /v1/streams/{stream}/events?follow=true (Server-Sent Events)', () => {
  const post = (stream: string, events: unknown[]) =>
    request(app).post(`/v1/streams/${stream}/events`).send(events).expect(201);

  it('streams new events with their offsets as ids, and heartbeats', async () => {
    const stream = 'sse-live';
    await post(stream, [orderEvent(0)]);
    const sse = await SseClient.open(`${base}/v1/streams/${stream}/events?follow=true`);
    assert.equal(sse.status, 200);
    assert.match(String(sse.headers['content-type']), /text\/event-stream/);
    await eventually(() => followers().waiting > 0, 'the follower to wait at the head');
    const { body } = await post(stream, [orderEvent(1), orderEvent(2)]);
    const events = await sse.waitFor(2);
    assert.deepEqual(
      events.map((e) => e.id),
      body.offsets,
    );
    assert.deepEqual(
      events.map((e) => (JSON.parse(e.data) as LogEvent).id),
      ['order-1', 'order-2'],
    );
    await eventually(() => sse.comments.some((c) => c.includes('heartbeat')), 'a heartbeat');
    sse.close();
  });

  it('resumes with Last-Event-ID after a disconnect, with nothing missed or repeated', async () => {
    const stream = 'sse-resume';
    const first = await post(
      stream,
      Array.from({ length: 20 }, (_, i) => orderEvent(i)),
    );
    const all: string[] = first.body.offsets;
    const sse = await SseClient.open(`${base}/v1/streams/${stream}/events?follow=true&from=${all[0]}`);
    await sse.waitFor(20);
    // Events keep arriving while the client is gone.
    sse.close();
    const whileAway = await post(
      stream,
      Array.from({ length: 15 }, (_, i) => orderEvent(100 + i)),
    );
    all.push(...whileAway.body.offsets);
    const lastSeen = sse.events.at(-1)!.id!;
    // An EventSource reconnects to the same URL (from= still set) with Last-Event-ID, which wins.
    const resumed = await SseClient.open(`${base}/v1/streams/${stream}/events?follow=true&from=${all[0]}`, {
      'last-event-id': lastSeen,
    });
    await resumed.waitFor(15);
    const afterResume = await post(stream, [orderEvent(200)]);
    all.push(...afterResume.body.offsets);
    await resumed.waitFor(16);
    const received = [...sse.events, ...resumed.events].map((e) => e.id);
    assert.deepEqual(received, all);
    resumed.close();
  });

  it('filters a follower by type and starts at a time', async () => {
    const stream = 'sse-filter';
    const { body } = await post(
      stream,
      Array.from({ length: 9 }, (_, i) => orderEvent(i)),
    );
    const sse = await SseClient.open(
      `${base}/v1/streams/${stream}/events?follow=true&since=0&type=OrderCancelled`,
    );
    const events = await sse.waitFor(3);
    assert.deepEqual(
      events.map((e) => e.id),
      [body.offsets[0], body.offsets[3], body.offsets[6]],
    );
    sse.close();
  });

  it('stops reading from Redis while the client does not read, and catches up after', async () => {
    const stream = 'sse-backpressure';
    const big = (i: number) => orderEvent(i, { data: { blob: 'z'.repeat(8000), i } });
    for (let b = 0; b < 80; b++) {
      await post(
        stream,
        Array.from({ length: 50 }, (_, i) => big(b * 50 + i)),
      );
    }
    const total = 4000; // ~32 MB: far more than the socket buffers hold
    const sse = await SseClient.open(`${base}/v1/streams/${stream}/events?follow=true&since=0`, {}, true);
    await eventually(() => followers().running > 0, 'the follower');
    // A follower that ignored backpressure would read to the head and then wait there.
    await sleep(500);
    assert.equal(followers().running, 1, 'the follower is still there');
    assert.equal(followers().waiting, 0, 'the follower does not wait at the head while the client stalls');
    assert.ok(sse.events.length < total);
    sse.resume();
    const events = await sse.waitFor(total, 30_000);
    assert.equal(new Set(events.map((e) => e.id)).size, total);
    await eventually(() => followers().waiting === 1, 'the follower to wait at the head');
    sse.close();
  });

  it('stops following when the client goes away', async () => {
    const stream = 'sse-disconnect';
    await post(stream, [orderEvent(0)]);
    const before = followers().running;
    const sse = await SseClient.open(`${base}/v1/streams/${stream}/events?follow=true`);
    await eventually(() => followers().running === before + 1, 'the follower');
    sse.close();
    await eventually(
      () => followers().running === before && followers().waiting === 0,
      'the follower to stop',
    );
  });

  it('answers problems before the stream starts', async () => {
    const missing = await request(app).get('/v1/streams/no-such-stream/events?follow=true').expect(404);
    assert.equal(missing.body.code, 'stream-not-found');
    await post('sse-bad-id', [orderEvent(0)]);
    const badId = await request(app)
      .get('/v1/streams/sse-bad-id/events?follow=true')
      .set('last-event-id', 'garbage')
      .expect(400);
    assert.equal(badId.body.code, 'invalid-offset');
  });
});

describe('GET/PUT /v1/streams and /v1/streams/{stream}', () => {
  it('lists and describes streams', async () => {
    const { body } = await request(app)
      .post('/v1/streams/http-described/events')
      .send([orderEvent(1), orderEvent(2)])
      .expect(201);
    const described = await request(app).get('/v1/streams/http-described').expect(200);
    assert.equal(described.body.name, 'http-described');
    assert.equal(described.body.length, 2);
    assert.equal(described.body.firstOffset, body.offsets[0]);
    assert.equal(described.body.lastOffset, body.offsets[1]);
    assert.equal(described.body.retention, null);
    const list = await request(app).get('/v1/streams').expect(200);
    assert.ok(list.body.items.some((s: StreamInfo) => s.name === 'http-described'));
    const missing = await request(app).get('/v1/streams/nope').expect(404);
    assert.equal(missing.body.code, 'stream-not-found');
    await request(app).delete('/v1/streams/http-described').expect(405);
  });

  it('sets and removes a retention', async () => {
    await request(app)
      .post('/v1/streams/http-retained/events')
      .send(Array.from({ length: 10 }, (_, i) => orderEvent(i)))
      .expect(201);
    const set = await request(app)
      .put('/v1/streams/http-retained')
      .send({ retention: { maxLength: 4 } })
      .expect(200);
    assert.deepEqual(set.body.retention, { maxLength: 4 });
    assert.equal(set.body.length, 4);
    const bad = await request(app)
      .put('/v1/streams/http-retained')
      .send({ retention: { maxLength: -1 } })
      .expect(400);
    assert.equal(bad.body.code, 'invalid-parameter');
    const unknown = await request(app)
      .put('/v1/streams/http-retained')
      .send({ retention: null, colour: 1 })
      .expect(400);
    assert.equal(unknown.body.code, 'invalid-parameter');
    const cleared = await request(app).put('/v1/streams/http-retained').send({ retention: null }).expect(200);
    assert.equal(cleared.body.retention, null);
  });
});

describe('OpenAPI', () => {
  it('describes every route and method the router serves', () => {
    const router = streamsRouter({
      eventLog: log,
      logger: createLogger('silent'),
      limits: { maxBodyBytes: 1024 },
    });
    const served = new Set<string>();
    for (const layer of router.stack as { route?: { path: string; methods: Record<string, boolean> } }[]) {
      if (layer.route === undefined) continue;
      for (const [method, on] of Object.entries(layer.route.methods)) {
        if (on && method !== '_all')
          served.add(
            `${method} /v1/streams${layer.route.path.replace(/:(\w+)/g, '{$1}').replace(/\/$/, '')}`,
          );
      }
    }
    const documented = new Set<string>();
    for (const [path, item] of Object.entries(streamsOpenApiPaths())) {
      for (const method of Object.keys(item as object))
        if (method !== 'parameters') documented.add(`${method} ${path}`);
    }
    assert.ok(served.size >= 5, [...served].join(', '));
    assert.deepEqual([...served].sort(), [...documented].sort());
  });
});
