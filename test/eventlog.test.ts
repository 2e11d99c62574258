/**
 * The event log library on a real Redis: appends and offsets, idempotent retries, all-or-nothing
 * batches, range reads (offset, time, type, pages), scans, followers, describe/list, retention,
 * deletion, and the envelope checks of cloudevents.ts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { eventsFromHttp, prepareEvent, prepareEvents } from '../lib/eventlog/cloudevents.ts';
import {
  checkStreamName,
  compareOffsets,
  nextOffset,
  offsetTime,
  parseOffset,
  previousOffset,
  type LogEvent,
} from '../lib/eventlog/event-log.ts';
import { RedisEventLog } from '../lib/eventlog/redis-event-log.ts';
import { OfftakeError, isOfftakeError } from '../lib/errors.ts';
import { REDIS_URL, deleteKeys, eventually, orderEvent, uniquePrefix } from './eventlog-helpers.ts';

const prefix = uniquePrefix('eventlog');
const connectionName = `eventlog-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
let redis: Redis;
let log: RedisEventLog;

async function all(stream: string): Promise<LogEvent[]> {
  const events: LogEvent[] = [];
  for await (const batch of log.scan(stream)) events.push(...batch);
  return events;
}

async function rejectsWith(promise: Promise<unknown>, code: string): Promise<OfftakeError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(isOfftakeError(err), `expected an OfftakeError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  redis = new Redis(REDIS_URL);
  log = await RedisEventLog.create({
    redis,
    prefix,
    durability: { mode: 'none' },
    followBlockMs: 200,
    connectionName,
  });
});

after(async () => {
  await log.close();
  await deleteKeys(redis, prefix);
  redis.disconnect();
});

describe('offsets', () => {
  it('compare numerically, not as strings', () => {
    assert.ok(compareOffsets('9-0', '10-0') < 0);
    assert.ok(compareOffsets('10-2', '10-10') < 0);
    assert.equal(compareOffsets('5-5', '5-5'), 0);
    assert.ok(compareOffsets('18446744073709551615-1', '18446744073709551615-0') > 0);
  });

  it('step to the next and previous offset', () => {
    assert.equal(nextOffset('5-18446744073709551615'), '6-0');
    assert.equal(previousOffset('6-0'), '5-18446744073709551615');
    assert.equal(previousOffset('0-0'), '0-0');
    assert.equal(offsetTime('1718000000000-3'), 1718000000000);
  });

  it('reject what does not parse', () => {
    for (const bad of ['', 'abc', '12', '1-2-3', '-1-0', '1-99999999999999999999', '1.5-0']) {
      assert.throws(
        () => parseOffset(bad),
        (e) => isOfftakeError(e, 'invalid-offset'),
        bad,
      );
    }
    assert.equal(parseOffset('007-01'), '7-1');
  });
});

describe('stream names', () => {
  it('accept the DataProduct pattern and reject the rest', () => {
    for (const good of ['orders', 'a', 'eu.orders_v2-x', '0']) assert.equal(checkStreamName(good), good);
    for (const bad of ['', 'Orders', '-orders', 'orders-', 'a b', 'a:b', 'a{b}', 'x'.repeat(101), '../x']) {
      assert.throws(
        () => checkStreamName(bad),
        (e) => isOfftakeError(e, 'invalid-name'),
        bad,
      );
    }
  });

  it('are checked before anything reaches Redis', async () => {
    await rejectsWith(log.append('Bad:Name', [orderEvent(1)]), 'invalid-name');
    await rejectsWith(log.describe('a*'), 'invalid-name');
    assert.deepEqual(await redis.keys(`${prefix}:*Bad*`), []);
  });
});

describe('append', () => {
  it('assigns rising offsets and keeps the CloudEvents envelope', async () => {
    const result = await log.append('append-basic', [orderEvent(1), orderEvent(2), orderEvent(3)]);
    assert.equal(result.offsets.length, 3);
    assert.deepEqual(result.duplicates, [false, false, false]);
    for (let i = 1; i < 3; i++) assert.ok(compareOffsets(result.offsets[i - 1], result.offsets[i]) < 0);
    const more = await log.append('append-basic', [orderEvent(4)]);
    assert.ok(compareOffsets(result.offsets[2], more.offsets[0]) < 0);

    const [first] = await all('append-basic');
    assert.equal(first.offset, result.offsets[0]);
    assert.equal(first.specversion, '1.0');
    assert.equal(first.id, 'order-1');
    assert.equal(first.source, 'urn:test:checkout');
    assert.equal(first.type, 'OrderPlaced');
    assert.equal(first.subject, 'customer-1');
    assert.equal(first.datacontenttype, 'application/json');
    assert.ok(!Number.isNaN(Date.parse(first.time)), 'time is filled in');
    assert.deepEqual(first.data, { orderId: 'o-1', customerId: 'c-1', region: 'US', amount: 11 });
  });

  it('keeps a producer time, extensions and binary data', async () => {
    await log.append('append-attrs', [
      orderEvent(1, {
        time: '2024-06-01T12:00:00.123+02:00',
        traceparent: '00-abc-01',
        priority: 5,
        urgent: true,
      }),
      {
        id: 'b',
        source: 's',
        type: 'Blob',
        datacontenttype: 'application/octet-stream',
        data_base64: 'AAEC',
      },
      { id: 'j', source: 's', type: 'Json', data_base64: Buffer.from('{"a":1}').toString('base64') },
    ]);
    const [withExt, blob, json] = await all('append-attrs');
    assert.equal(withExt.time, '2024-06-01T12:00:00.123+02:00');
    assert.equal(withExt.traceparent, '00-abc-01');
    assert.equal(withExt.priority, 5);
    assert.equal(withExt.urgent, true);
    assert.equal(blob.data_base64, 'AAEC');
    assert.equal(blob.data, undefined);
    assert.deepEqual(json.data, { a: 1 }, 'a JSON payload sent as base64 is kept as JSON');
  });

  it('does not store a retried event again and answers with the original offset', async () => {
    const first = await log.append('idem', [orderEvent(1), orderEvent(2)]);
    const retry = await log.append('idem', [orderEvent(2), orderEvent(3), orderEvent(1)]);
    assert.deepEqual(retry.duplicates, [true, false, true]);
    assert.equal(retry.offsets[0], first.offsets[1]);
    assert.equal(retry.offsets[2], first.offsets[0]);
    assert.equal((await log.describe('idem')).length, 3);
  });

  it('treats the same id from another source as another event, and dedupes inside one batch', async () => {
    const result = await log.append('idem-source', [
      orderEvent(1),
      orderEvent(1, { source: 'urn:test:other' }),
      orderEvent(1),
    ]);
    assert.deepEqual(result.duplicates, [false, false, true]);
    assert.equal(result.offsets[2], result.offsets[0]);
    assert.notEqual(result.offsets[1], result.offsets[0]);
    // A source that ends where another begins must not collide: ("a", "bc") vs ("ab", "c").
    const tricky = await log.append('idem-source', [
      { id: 'bc', source: 'a', type: 'T' },
      { id: 'c', source: 'ab', type: 'T' },
    ]);
    assert.deepEqual(tricky.duplicates, [false, false]);
  });

  it('remembers ids for the dedup window, and at most twice as long', async () => {
    const shortWindow = await RedisEventLog.create({
      redis,
      prefix,
      durability: { mode: 'none' },
      dedupWindowSeconds: 1,
    });
    const first = await shortWindow.append('window', [orderEvent(1)]);
    assert.deepEqual((await shortWindow.append('window', [orderEvent(1)])).offsets, first.offsets);
    await sleep(2100);
    const later = await shortWindow.append('window', [orderEvent(1)]);
    assert.deepEqual(later.duplicates, [false], 'two windows later the id is forgotten');
    await shortWindow.close();
  });

  it('stores a retry again when dedup is off', async () => {
    const noDedup = await RedisEventLog.create({
      redis,
      prefix,
      durability: { mode: 'none' },
      dedupWindowSeconds: 0,
    });
    await noDedup.append('no-dedup', [orderEvent(1)]);
    const again = await noDedup.append('no-dedup', [orderEvent(1)]);
    assert.deepEqual(again.duplicates, [false]);
    assert.equal((await noDedup.describe('no-dedup')).length, 2);
    await noDedup.close();
  });

  it('rejects a batch with one invalid event and stores none of it', async () => {
    await log.append('atomic', [orderEvent(0)]);
    const err = await rejectsWith(
      log.append('atomic', [orderEvent(1), orderEvent(2), { id: 'x', source: 's' } as never, orderEvent(4)]),
      'invalid-event',
    );
    assert.equal(err.extensions.index, 2);
    assert.deepEqual(
      err.errors.map((e) => e.pointer),
      ['/2/type'],
    );
    const events = await all('atomic');
    assert.deepEqual(
      events.map((e) => e.id),
      ['order-0'],
    );
    // ... and a later retry of the valid ones is not mistaken for a duplicate.
    const retry = await log.append('atomic', [orderEvent(1)]);
    assert.deepEqual(retry.duplicates, [false]);
  });

  it('enforces the event size and batch size limits, storing nothing', async () => {
    const small = await RedisEventLog.create({
      redis,
      prefix,
      durability: { mode: 'none' },
      limits: { maxEventBytes: 1000, maxBatchEvents: 3 },
    });
    await small.append('limits', [orderEvent(0)]);
    const tooBig = await rejectsWith(
      small.append('limits', [orderEvent(1), orderEvent(2, { data: { blob: 'x'.repeat(2000) } })]),
      'too-large',
    );
    assert.equal(tooBig.status, 413);
    assert.equal(tooBig.extensions.index, 1);
    // Multi-byte characters count as bytes, not characters.
    await rejectsWith(small.append('limits', [orderEvent(3, { data: { s: 'é'.repeat(450) } })]), 'too-large');
    const tooMany = await rejectsWith(
      small.append(
        'limits',
        [1, 2, 3, 4].map((i) => orderEvent(i)),
      ),
      'batch-too-large',
    );
    assert.equal(tooMany.status, 413);
    assert.equal((await small.describe('limits')).length, 1);
    await small.close();
  });

  it('does not create a stream for an empty batch', async () => {
    assert.deepEqual(await log.append('empty-batch', []), { offsets: [], duplicates: [] });
    await rejectsWith(log.describe('empty-batch'), 'stream-not-found');
  });
});

describe('envelope checks', () => {
  const limits = { maxEventBytes: 10_000, maxBatchEvents: 10 };
  const now = '2024-01-01T00:00:00.000Z';
  const problems = (raw: unknown): string[] => {
    try {
      prepareEvent(raw, 0, limits, now);
    } catch (err) {
      assert.ok(isOfftakeError(err, 'invalid-event'), String(err));
      return err.errors.map((e) => e.pointer);
    }
    return [];
  };

  it('requires id, source and type and reports every problem of the event', () => {
    assert.deepEqual(problems({}), ['/0/id', '/0/source', '/0/type']);
    assert.deepEqual(problems({ id: '', source: 's', type: 'T' }), ['/0/id']);
    assert.deepEqual(problems({ id: 1, source: 's', type: 'T' }), ['/0/id']);
    assert.deepEqual(problems('not an object'), ['/0']);
    assert.deepEqual(problems([]), ['/0']);
  });

  it('checks attribute formats', () => {
    const ok = { id: '1', source: 's', type: 'T' };
    assert.deepEqual(problems(ok), []);
    assert.deepEqual(problems({ ...ok, specversion: '0.3' }), ['/0/specversion']);
    assert.deepEqual(problems({ ...ok, type: 'has space' }), ['/0/type']);
    assert.deepEqual(problems({ ...ok, source: 'a b' }), ['/0/source']);
    assert.deepEqual(problems({ ...ok, time: 'yesterday' }), ['/0/time']);
    assert.deepEqual(problems({ ...ok, time: '2024-13-01T00:00:00Z' }), ['/0/time']);
    assert.deepEqual(problems({ ...ok, time: '2023-02-29T00:00:00Z' }), ['/0/time']);
    assert.deepEqual(problems({ ...ok, time: '2024-02-29T23:59:60.5-01:30' }), []);
    assert.deepEqual(problems({ ...ok, time: '2024-01-01T00:00:00+25:00' }), ['/0/time']);
    assert.deepEqual(problems({ ...ok, datacontenttype: 'json' }), ['/0/datacontenttype']);
    assert.deepEqual(problems({ ...ok, offset: '1-0' }), ['/0/offset']);
    assert.deepEqual(problems({ ...ok, Bad_Ext: 'x' }), ['/0/Bad_Ext']);
    assert.deepEqual(problems({ ...ok, ext: { nested: true } }), ['/0/ext']);
    assert.deepEqual(problems({ ...ok, ext: 1.5 }), ['/0/ext']);
    assert.deepEqual(problems({ ...ok, data: 1, data_base64: 'AA==' }), ['/0/data_base64']);
    assert.deepEqual(problems({ ...ok, data_base64: 'not base64!' }), ['/0/data_base64']);
    assert.deepEqual(problems({ ...ok, data_base64: Buffer.from('not json').toString('base64') }), [
      '/0/data_base64',
    ]);
    assert.deepEqual(problems({ ...ok, datacontenttype: 'text/plain', data: { a: 1 } }), ['/0/data']);
  });

  it('normalises: specversion, time and datacontenttype filled in, null attributes dropped', () => {
    const prepared = prepareEvent(
      { id: '1', source: 's', type: 'T', subject: null, data: { a: 1 } },
      0,
      limits,
      now,
    );
    assert.deepEqual(JSON.parse(prepared.json), {
      specversion: '1.0',
      id: '1',
      source: 's',
      type: 'T',
      time: now,
      datacontenttype: 'application/json',
      data: { a: 1 },
    });
  });

  it('rejects a batch over the limit before looking at its events', () => {
    assert.throws(
      () => prepareEvents(new Array(11).fill({}), limits),
      (e) => isOfftakeError(e, 'batch-too-large'),
    );
  });

  it('reads every HTTP mode of the CloudEvents binding', () => {
    const body = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v));
    const one = { specversion: '1.0', id: '1', source: 's', type: 'T' };
    assert.equal(
      eventsFromHttp({ headers: { 'content-type': 'application/json' }, body: body(one) }).batch,
      false,
    );
    assert.equal(
      eventsFromHttp({ headers: { 'content-type': 'application/json' }, body: body([one, one]) }).events
        .length,
      2,
    );
    assert.equal(
      eventsFromHttp({
        headers: { 'content-type': 'application/cloudevents+json; charset=utf-8' },
        body: body(one),
      }).mode,
      'structured',
    );
    assert.equal(
      eventsFromHttp({ headers: { 'content-type': 'application/cloudevents-batch+json' }, body: body([one]) })
        .mode,
      'batch',
    );
    const ndjson = eventsFromHttp({
      headers: { 'content-type': 'application/x-ndjson' },
      body: body(`${JSON.stringify(one)}\r\n\n${JSON.stringify(one)}\n`),
    });
    assert.equal(ndjson.events.length, 2);
    const binary = eventsFromHttp({
      headers: {
        'content-type': 'text/plain',
        'ce-specversion': '1.0',
        'ce-id': '1',
        'ce-source': '%2Fa%20b',
        'ce-type': 'T',
        'ce-traceparent': 'x',
      },
      body: body('hello'),
    });
    assert.deepEqual(binary.events[0], {
      specversion: '1.0',
      id: '1',
      source: '/a b',
      type: 'T',
      traceparent: 'x',
      datacontenttype: 'text/plain',
      data: 'hello',
    });
  });

  it('rejects bodies it cannot read, with the right code', () => {
    const code = (headers: Record<string, string>, text: string): string => {
      try {
        eventsFromHttp({ headers, body: Buffer.from(text) });
      } catch (err) {
        assert.ok(err instanceof OfftakeError);
        return err.code;
      }
      return 'none';
    };
    assert.equal(code({}, '{}'), 'unsupported-media-type');
    assert.equal(code({ 'content-type': 'text/plain' }, '{}'), 'unsupported-media-type');
    assert.equal(
      code({ 'content-type': 'application/json; charset=latin1' }, '{}'),
      'unsupported-media-type',
    );
    assert.equal(code({ 'content-type': 'application/json' }, '{"a":'), 'invalid-json');
    assert.equal(code({ 'content-type': 'application/x-ndjson' }, '{}\n{oops}\n'), 'invalid-json');
    assert.equal(code({ 'content-type': 'application/cloudevents+json' }, '[]'), 'invalid-event');
    assert.equal(
      code({ 'content-type': 'application/cloudevents+json' }, '{"id":"1","source":"s","type":"T"}'),
      'invalid-event',
    );
    assert.equal(code({ 'content-type': 'application/cloudevents-batch+json' }, '{}'), 'invalid-event');
    assert.equal(
      code(
        {
          'content-type': 'application/json',
          'ce-specversion': '1.0',
          'ce-id': '1',
          'ce-source': 's',
          'ce-type': 'T',
        },
        '{nope',
      ),
      'invalid-event',
    );
  });
});

describe('range reads', () => {
  const stream = 'ranges';
  let offsets: string[] = [];

  before(async () => {
    const events = Array.from({ length: 250 }, (_, i) => orderEvent(i));
    offsets = (await log.append(stream, events)).offsets;
  });

  it('reads from and to offsets, inclusive', async () => {
    const page = await log.read(stream, { from: offsets[10], to: offsets[14] });
    assert.deepEqual(
      page.events.map((e) => e.offset),
      offsets.slice(10, 15),
    );
    assert.equal(page.next, null);
  });

  it('pages with a cursor, seeing every event exactly once', async () => {
    const seen: string[] = [];
    let after: string | undefined;
    let pages = 0;
    for (;;) {
      const page = await log.read(stream, { after, limit: 60 });
      pages++;
      seen.push(...page.events.map((e) => e.offset));
      if (page.next === null) break;
      after = page.next;
    }
    assert.deepEqual(seen, offsets);
    assert.ok(pages >= 5);
  });

  it('filters by type, across pages', async () => {
    const wanted = offsets.filter((_, i) => i % 3 === 0);
    const seen: string[] = [];
    let after: string | undefined;
    for (;;) {
      const page = await log.read(stream, { after, types: ['OrderCancelled'], limit: 20 });
      assert.ok(page.events.every((e) => e.type === 'OrderCancelled'));
      seen.push(...page.events.map((e) => e.offset));
      if (page.next === null) break;
      after = page.next;
    }
    assert.deepEqual(seen, wanted);
  });

  it('reads by append time: since inclusive, until exclusive', async () => {
    const timed = 'ranges-time';
    const early = await log.append(timed, [orderEvent(1), orderEvent(2)]);
    const boundary = offsetTime(early.offsets[1]) + 1;
    await eventually(() => Date.now() > boundary + 1, 'the clock to move on');
    const late = await log.append(timed, [orderEvent(3)]);
    assert.ok(offsetTime(late.offsets[0]) >= boundary);
    const since = await log.read(timed, { since: new Date(boundary) });
    assert.deepEqual(
      since.events.map((e) => e.id),
      ['order-3'],
    );
    const until = await log.read(timed, { until: new Date(boundary) });
    assert.deepEqual(
      until.events.map((e) => e.id),
      ['order-1', 'order-2'],
    );
  });

  it('stops a page at the byte budget but always returns one event', async () => {
    const page = await log.read(stream, { limit: 100, maxBytes: 1 });
    assert.equal(page.events.length, 1);
    assert.equal(page.next, offsets[0]);
  });

  it('rejects reversed ranges and bad offsets', async () => {
    await rejectsWith(log.read(stream, { from: offsets[5], to: offsets[4] }), 'invalid-range');
    await rejectsWith(log.read(stream, { since: new Date(2000), until: new Date(1000) }), 'invalid-range');
    await rejectsWith(log.read(stream, { from: 'nope' }), 'invalid-offset');
    await rejectsWith(log.read('no-such-stream'), 'stream-not-found');
  });

  it('answers an empty page, not an error, for a cursor past the end', async () => {
    const page = await log.read(stream, { after: offsets[249], to: offsets[249] });
    assert.deepEqual(page, { events: [], next: null });
  });

  it('scans the whole stream in batches, optionally filtered', async () => {
    const batches: number[] = [];
    const seen: string[] = [];
    for await (const batch of log.scan(stream, { batchSize: 64 })) {
      batches.push(batch.length);
      seen.push(...batch.map((e) => e.offset));
    }
    assert.deepEqual(seen, offsets);
    assert.ok(Math.max(...batches) <= 64);
    let placed = 0;
    for await (const batch of log.scan(stream, { types: ['OrderPlaced'], from: offsets[100] }))
      placed += batch.length;
    assert.equal(placed, offsets.slice(100).filter((_, i) => (i + 100) % 3 !== 0).length);
  });

  it('lets a scan stop early', async () => {
    for await (const batch of log.scan(stream, { batchSize: 10 })) {
      assert.equal(batch.length, 10);
      break;
    }
  });
});

describe('follow', () => {
  it('yields new events from now on, and stops when aborted', async () => {
    const stream = 'follow-now';
    await log.append(stream, [orderEvent(0)]);
    const abort = new AbortController();
    const seen: string[] = [];
    const following = (async () => {
      for await (const batch of log.follow(stream, { signal: abort.signal })) {
        seen.push(...batch.map((e) => e.id));
        if (seen.length >= 3) abort.abort();
      }
    })();
    // The follower pins "now" when it starts; wait until it waits at the head.
    await eventually(() => log.followerCount.waiting > 0, 'the follower to wait');
    await log.append(stream, [orderEvent(1), orderEvent(2)]);
    await log.append(stream, [orderEvent(3)]);
    await following;
    assert.deepEqual(seen, ['order-1', 'order-2', 'order-3']);
    await eventually(
      () => log.followerCount.running === 0 && log.followerCount.waiting === 0,
      'the follower to stop',
    );
  });

  it('resumes after an offset with nothing missed or repeated, filtered by type', async () => {
    const stream = 'follow-resume';
    const { offsets } = await log.append(
      stream,
      Array.from({ length: 30 }, (_, i) => orderEvent(i)),
    );
    const abort = new AbortController();
    const seen: LogEvent[] = [];
    for await (const batch of log.follow(stream, { after: offsets[9], batchSize: 7, signal: abort.signal })) {
      seen.push(...batch);
      if (seen.length >= 20) abort.abort();
    }
    assert.deepEqual(
      seen.map((e) => e.offset),
      offsets.slice(10),
    );
    const cancelled: string[] = [];
    const abort2 = new AbortController();
    for await (const batch of log.follow(stream, {
      from: offsets[0],
      types: ['OrderCancelled'],
      signal: abort2.signal,
    })) {
      cancelled.push(...batch.map((e) => e.offset));
      if (cancelled.length >= 10) abort2.abort();
    }
    assert.deepEqual(
      cancelled,
      offsets.filter((_, i) => i % 3 === 0),
    );
  });

  it('reads nothing ahead of its consumer (backpressure)', async () => {
    const stream = 'follow-pull';
    const { offsets } = await log.append(
      stream,
      Array.from({ length: 10 }, (_, i) => orderEvent(i)),
    );
    const abort = new AbortController();
    const iterator = log
      .follow(stream, { from: offsets[0], batchSize: 4, signal: abort.signal })
      [Symbol.asyncIterator]();
    const first = await iterator.next();
    assert.equal(first.value?.length, 4);
    // Events appended now are beyond what was fetched; the follower must not have read them yet.
    await log.append(stream, [orderEvent(100)]);
    // Give a follower that wrongly reads ahead the time to reach the head and wait there.
    await sleep(300);
    assert.equal(log.followerCount.running, 1);
    assert.equal(log.followerCount.waiting, 0, 'not waiting at the head while the consumer holds a batch');
    const rest: string[] = [];
    for (;;) {
      const next = await iterator.next();
      rest.push(...(next.value as LogEvent[]).map((e) => e.id));
      if (rest.includes('order-100')) break;
    }
    assert.deepEqual(rest, ['order-4', 'order-5', 'order-6', 'order-7', 'order-8', 'order-9', 'order-100']);
    abort.abort();
    assert.equal((await iterator.next()).done, true);
  });

  it('shares one blocking connection among all followers, and wakes newcomers at once', async () => {
    // The watcher's block is far longer than this test may take: a follower whose stream joined
    // the watch only at the next block would time the test out.
    const name = `${connectionName}-shared`;
    const shared = await RedisEventLog.create({
      redis,
      prefix,
      durability: { mode: 'none' },
      followBlockMs: 120_000,
      connectionName: name,
    });
    const abort = new AbortController();
    const streams = Array.from({ length: 10 }, (_, i) => `follow-shared-${i}`);
    for (const stream of streams) await log.append(stream, [orderEvent(0)]);
    const seen = new Map<string, string[]>();
    const followOne = async (stream: string, who: number) => {
      for await (const batch of shared.follow(stream, { signal: abort.signal })) {
        const key = `${stream}#${who}`;
        seen.set(key, [...(seen.get(key) ?? []), ...batch.map((e) => e.id)]);
      }
    };
    // Five followers per stream, fifty in all, joining one after another while the watcher blocks.
    const running: Promise<void>[] = [];
    for (let who = 0; who < 5; who++) {
      for (const stream of streams) {
        running.push(followOne(stream, who));
        await eventually(() => shared.followerCount.waiting === running.length, 'the follower to wait');
      }
    }
    const clients = ((await redis.call('CLIENT', ['LIST', 'TYPE', 'normal'])) as string)
      .split('\n')
      .filter((line) => line.includes(`name=${name}:`));
    assert.equal(clients.length, 1, 'one connection for fifty followers');
    assert.match(clients[0], /name=\S+:watch /);
    for (const [i, stream] of streams.entries()) await log.append(stream, [orderEvent(100 + i)]);
    await eventually(
      () => seen.size === 50 && [...seen.values()].every((ids) => ids.length === 1),
      'every follower',
    );
    for (const [key, ids] of seen) {
      const stream = key.split('#')[0];
      assert.deepEqual(ids, [`order-${100 + streams.indexOf(stream)}`]);
    }
    // A stream nobody watched yet, while the watcher blocks on the other ten.
    await eventually(() => shared.followerCount.waiting === 50, 'the followers to wait again');
    await log.append('follow-shared-late', [orderEvent(0)]);
    running.push(followOne('follow-shared-late', 0));
    await eventually(() => shared.followerCount.waiting === 51, 'the newcomer to wait');
    await log.append('follow-shared-late', [orderEvent(200)]);
    await eventually(() => seen.get('follow-shared-late#0')?.[0] === 'order-200', 'the newcomer');
    abort.abort();
    await Promise.all(running);
    assert.deepEqual(shared.followerCount, { running: 0, waiting: 0 });
    await shared.close();
  });

  it('refuses unknown streams', async () => {
    await rejectsWith(log.follow('no-such-stream')[Symbol.asyncIterator]().next(), 'stream-not-found');
  });
});

describe('describe, list and retention', () => {
  it('describes a stream and lists every stream', async () => {
    const { offsets } = await log.append('described', [orderEvent(1), orderEvent(2)]);
    const info = await log.describe('described');
    assert.equal(info.name, 'described');
    assert.equal(info.length, 2);
    assert.equal(info.firstOffset, offsets[0]);
    assert.equal(info.lastOffset, offsets[1]);
    assert.equal(info.firstTime, new Date(offsetTime(offsets[0])).toISOString());
    assert.equal(info.retention, null, 'no retention unless one is set');
    const names = (await log.listStreams()).map((s) => s.name);
    assert.ok(names.includes('described') && names.includes('ranges'));
    assert.deepEqual(names, [...names].sort());
  });

  it('never trims a stream without a retention', async () => {
    await log.append(
      'kept',
      Array.from({ length: 50 }, (_, i) => orderEvent(i)),
    );
    assert.equal(await log.applyRetention('kept'), 0);
    assert.equal((await log.describe('kept')).length, 50);
  });

  it('keeps at most maxLength events once set, also on later appends', async () => {
    const { offsets } = await log.append(
      'by-length',
      Array.from({ length: 20 }, (_, i) => orderEvent(i)),
    );
    const info = await log.setRetention('by-length', { maxLength: 5 });
    assert.deepEqual(info.retention, { maxLength: 5 });
    assert.equal(info.length, 5);
    assert.equal(info.firstOffset, offsets[15]);
    await log.append('by-length', [orderEvent(100), orderEvent(101)]);
    const after = await log.describe('by-length');
    assert.equal(after.length, 5);
    assert.equal(after.firstOffset, offsets[17]);
    const removed = await log.setRetention('by-length', null);
    assert.equal(removed.retention, null);
    await log.append('by-length', [orderEvent(102)]);
    assert.equal((await log.describe('by-length')).length, 6);
  });

  it('drops events older than maxAgeSeconds', async () => {
    await log.append('by-age', [orderEvent(1), orderEvent(2)]);
    await log.setRetention('by-age', { maxAgeSeconds: 1 });
    assert.equal((await log.describe('by-age')).length, 2, 'young events stay');
    await sleep(1100);
    const { offsets } = await log.append('by-age', [orderEvent(3)]);
    const info = await log.describe('by-age');
    assert.equal(info.length, 1);
    assert.equal(info.firstOffset, offsets[0]);
  });

  it('rejects retention settings that are not limits', async () => {
    await rejectsWith(log.setRetention('bad-retention', {}), 'invalid-parameter');
    await rejectsWith(log.setRetention('bad-retention', { maxLength: 0 }), 'invalid-parameter');
    await rejectsWith(log.setRetention('bad-retention', { maxLength: 1.5 }), 'invalid-parameter');
    await rejectsWith(log.setRetention('bad-retention', { maxAge: 3 } as never), 'invalid-parameter');
    await rejectsWith(log.describe('bad-retention'), 'stream-not-found');
  });

  it('deletes a stream; a new stream of that name forgets the old ids', async () => {
    assert.deepEqual((await log.append('deleted', [orderEvent(1)])).duplicates, [false]);
    assert.equal(await log.deleteStream('deleted'), true);
    assert.equal(await log.deleteStream('deleted'), false);
    await rejectsWith(log.describe('deleted'), 'stream-not-found');
    // The same source and id again: the deleted stream's dedup window is gone with it, so the
    // event is new (an offset equal to the old one is fine: both may fall in one millisecond).
    const again = await log.append('deleted', [orderEvent(1)]);
    assert.deepEqual(again.duplicates, [false]);
    const info = await log.describe('deleted');
    assert.equal(info.length, 1);
    assert.equal(info.firstOffset, again.offsets[0]);
  });
});
