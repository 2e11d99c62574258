/**
 * The pipeline runtime against real Redis and Postgres: for a generated log of 100,000 events
 * (repeated keys, cancellations, tombstones, poison events, two streams) the final state of a
 * redis, a postgres and a topic target equals the state computed independently from the same
 * events — for a clean run, every batch delivered twice, and the chunks processed in reverse
 * order. Events published during the seed appear exactly once after the switch to the tail;
 * poison events land in the dead-letter stream and the pipeline goes on; stop drains and a
 * new start resumes; deleting the runtime state removes what the pipeline made.
 * (SIGKILL at random points: pipeline-crash.test.ts.)
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import pg from 'pg';
import { compareOffsets, nextOffset, type LogEvent } from '../lib/eventlog/event-log.ts';
import { RedisEventLog } from '../lib/eventlog/redis-event-log.ts';
import { createLogger } from '../lib/logger.ts';
import { CompiledProduct } from '../worker/compiled-product.ts';
import { DEAD_LETTER_TYPE, DeadLetterQueue } from '../worker/dead-letter-queue.ts';
import { deadLetterStream, pipelineKeys, type ProductRef } from '../worker/pipeline-keys.ts';
import { PipelineRunner, type PipelineState } from '../worker/pipeline-runner.ts';
import { PipelineStateStore, type PipelineProduct } from '../worker/pipeline-state-store.ts';
import { PostgresSink } from '../worker/sinks/postgres-sink.ts';
import { RedisSink } from '../worker/sinks/redis-sink.ts';
import type { SinkRecord } from '../worker/sinks/sink.ts';
import { PipelineWorker } from '../worker/pipeline-worker.ts';
import { redisConnector } from '../worker/redis-connector.ts';
import { LiveTail, tombstoneBound, type TailBatchReport } from '../worker/live-tail.ts';
import { planSeed } from '../worker/seed-plan.ts';
import { dropPrefix, testRedis, TEST_REDIS_URL, uniquePrefix } from './helpers/redis.ts';
import {
  OrderEvents,
  POSTGRES_URL,
  STREAMS,
  actualState,
  appendEvents,
  diffRows,
  expectedState,
  finalPositions,
  kept,
  readAll,
  targetSink,
  testProduct,
  testSinkFactory,
  testSpec,
  topicEvents,
  waitFor,
  type Expected,
  type TestSinkOptions,
} from './pipeline-helpers.ts';

const EVENTS = Number(process.env.PIPELINE_TEST_EVENTS ?? 100_000);
const SEED = Number(process.env.PIPELINE_TEST_SEED ?? 7);
const TARGETS = ['redis', 'postgres', 'topic'] as const;
const logger = createLogger('silent');
const connect = redisConnector(TEST_REDIS_URL);

let redis: Redis;
let pool: pg.Pool;
let prefix: string;
let schema: string;
let eventLog: RedisEventLog;
let sinkOptions: TestSinkOptions;
/** The state the base log must produce. */
let expected: Expected;
/** Events of the products' types in the base log: what a seed reads. */
let baseEvents: number;

before(async () => {
  redis = testRedis();
  prefix = uniquePrefix('pipeline');
  schema = `test_pipeline_${randomBytes(4).toString('hex')}`;
  pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 6 });
  eventLog = await RedisEventLog.create({ redis, prefix: `${prefix}:log`, durability: { mode: 'none' } });
  sinkOptions = { layout: { prefix, schema }, redis, pool, eventLog };
  await appendEvents(eventLog, new OrderEvents({ seed: SEED, orders: 20_000 }), EVENTS);
  const all = await readAll(eventLog, STREAMS);
  baseEvents = kept(all).length;
  expected = expectedState(all);
});

after(async () => {
  await eventLog.close();
  await dropPrefix(redis, prefix);
  await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await pool.end();
  redis.disconnect();
});

/** A runner and an in-process worker on the test prefix. */
async function runtime(options: {
  twice?: boolean;
  order?: 'fifo' | 'lifo';
  seedConcurrency?: number;
  writeDelayMs?: number;
  chunkEvents?: number;
  onWrite?: TestSinkOptions['onWrite'];
  tombstoneRetentionMs?: number;
  tombstonePurgeIntervalMs?: number;
}): Promise<{ runner: PipelineRunner; worker: PipelineWorker; close(): Promise<void> }> {
  const runner = new PipelineRunner({
    connect,
    eventLog,
    logger,
    prefix,
    chunkEvents: options.chunkEvents ?? 10_000,
    seedOrder: options.order ?? 'fifo',
  });
  const worker = new PipelineWorker({
    connect,
    eventLog,
    logger,
    prefix,
    sinkFactory: testSinkFactory({
      ...sinkOptions,
      twice: options.twice,
      writeDelayMs: options.writeDelayMs,
      onWrite: options.onWrite,
    }),
    seedConcurrency: options.seedConcurrency ?? 3,
    tailBatchSize: 500,
    tombstoneRetentionMs: options.tombstoneRetentionMs,
    tombstonePurgeIntervalMs: options.tombstonePurgeIntervalMs,
  });
  await worker.start();
  return {
    runner,
    worker,
    close: async () => {
      await worker.close();
      await runner.close();
    },
  };
}

/** Waits until the tail of every product has applied the whole log; returns their states. */
async function caughtUp(
  runner: PipelineRunner,
  products: readonly ProductRef[],
  timeoutMs = 120_000,
): Promise<PipelineState[]> {
  const states: PipelineState[] = [];
  await waitFor(
    async () => {
      states.length = 0;
      for (const product of products) {
        const state = await runner.state(product);
        if (state === null) return `${product.name}: no state`;
        if (state.phase === 'failed') throw new Error(`${product.name} failed: ${state.error}`);
        if (state.phase !== 'tailing' || state.lag === null || state.lag.events !== 0) {
          return `${product.name}: ${state.phase}, ${state.seed.processed}/${state.seed.total}, lag ${JSON.stringify(state.lag)}`;
        }
        const want = finalPositions(await readAll(eventLog, STREAMS));
        for (const stream of STREAMS) {
          if (state.checkpoint?.[stream] !== want[stream]) {
            return `${product.name}: checkpoint ${JSON.stringify(state.checkpoint)} behind ${stream}@${want[stream]}`;
          }
        }
        states.push(state);
      }
      return true;
    },
    'the tails to catch up',
    timeoutMs,
  );
  return states;
}

async function assertTargets(products: readonly PipelineProduct[], want: Expected): Promise<void> {
  for (const product of products) {
    const diff = diffRows(want.rows, await actualState(sinkOptions, product));
    assert.equal(diff, undefined, `${product.spec.target.type} target of ${product.name}: ${diff}`);
  }
}

async function cleanUp(runner: PipelineRunner, products: readonly PipelineProduct[]): Promise<void> {
  for (const product of products) {
    await runner.deleteRuntimeState(product);
    await targetSink(sinkOptions, product).drop();
  }
}

describe('CompiledProduct', () => {
  const product = CompiledProduct.compile(testSpec('redis'));
  const event = (type: string, data: Record<string, unknown>): LogEvent => ({
    specversion: '1.0',
    id: 'x',
    source: 's',
    type,
    time: '2024-01-01T00:00:00Z',
    datacontenttype: 'application/json',
    offset: '5-1',
    data,
  });

  it('skips other types and filtered events, makes records, tombstones and dead letters', () => {
    assert.deepEqual(product.process(event('Heartbeat', { region: 'EU' }), 'orders'), { kind: 'skip' });
    assert.deepEqual(product.process(event('OrderPlaced', { region: 'US' }), 'orders'), { kind: 'skip' });
    assert.deepEqual(
      product.process(
        event('OrderCancelled', { region: 'EU', orderId: 'o-1', customerId: 'c', amount: 5 }),
        'orders',
      ),
      {
        kind: 'record',
        record: {
          key: 'o-1',
          stream: 'orders',
          offset: '5-1',
          op: 'upsert',
          fields: { customer: 'c', amount: 5, status: 'cancelled' },
        },
      },
    );
    assert.deepEqual(product.process(event('OrderDeleted', { region: 'EU', orderId: 'o-1' }), 'orders'), {
      kind: 'record',
      record: { key: 'o-1', stream: 'orders', offset: '5-1', op: 'delete' },
    });
    const dead = product.process(
      event('OrderUpdated', { region: 'EU', orderId: 'o-1', customerId: 'c' }),
      'orders',
    );
    assert.equal(dead.kind, 'dead');
    assert.equal(dead.kind === 'dead' && dead.pointer, '/spec/transform/fields/amount');
    assert.equal(dead.kind === 'dead' && dead.expression, 'event.data.amount');
    const noRegion = product.process(event('OrderPlaced', {}), 'orders');
    assert.equal(noRegion.kind === 'dead' && noRegion.pointer, '/spec/filter');
  });

  it('gives expressions the event time, parsed once per event', () => {
    const timed = CompiledProduct.compile({
      ...testSpec('redis'),
      filter: "event.time >= timestamp('2024-01-01T00:00:00Z')",
      transform: { key: 'event.data.orderId', fields: { at: 'event.time', whole: 'event.data' } },
    });
    const result = timed.process(event('OrderPlaced', { orderId: 'o-1' }), 'orders');
    assert.deepEqual(result.kind === 'record' && result.record.fields, {
      at: '2024-01-01T00:00:00.000Z',
      whole: { orderId: 'o-1' },
    });
    const early = { ...event('OrderPlaced', { orderId: 'o-1' }), time: '2023-12-31T23:59:59Z' };
    assert.deepEqual(timed.process(early, 'orders'), { kind: 'skip' });
  });

  it('refuses a spec whose expression does not compile', () => {
    assert.throws(() => CompiledProduct.compile({ ...testSpec('redis'), filter: 'event.data.x +' }), {
      code: 'invalid-spec',
    });
  });
});

describe('planSeed', () => {
  const info = (length: number, first: string, last: string) => ({
    name: 's',
    length,
    firstOffset: first,
    lastOffset: last,
    firstTime: null,
    lastTime: null,
    retention: null,
    createdAt: '',
  });

  it('covers [start, high-water mark] with adjacent chunks and no overlap', () => {
    const spec = { source: { streams: ['a', 'b', 'c'] } };
    const streams = new Map([
      ['a', info(100_000, '1000-0', '5000-7')],
      ['b', info(3, '2000-0', '2000-2')],
      ['c', null],
    ]);
    const plan = planSeed(spec, streams, { chunkEvents: 10_000 });
    assert.deepEqual(plan.highWaterMark, { a: '5000-7', b: '2000-2', c: '0-0' });
    const a = plan.chunks.filter((c) => c.stream === 'a');
    assert.equal(a.length, 10);
    assert.equal(a[0].from, '1000-0');
    assert.equal(a.at(-1)!.to, '5000-7');
    for (let i = 1; i < a.length; i++) {
      assert.ok(compareOffsets(a[i - 1].to, a[i].from) < 0);
      assert.equal(a[i].from, nextOffset(a[i - 1].to), 'chunks are adjacent');
    }
    assert.deepEqual(
      plan.chunks.filter((c) => c.stream === 'b').map((c) => [c.from, c.to]),
      [['2000-0', '2000-2']],
    );
    assert.equal(plan.total, 100_003);
  });

  it('replays nothing from latest, and from an offset or a time onwards otherwise', () => {
    const streams = new Map([['a', info(1000, '1000-0', '2000-0')]]);
    assert.equal(planSeed({ source: { streams: ['a'], startFrom: 'latest' } }, streams).chunks.length, 0);
    const fromOffset = planSeed({ source: { streams: ['a'], startFrom: { offset: '1500-3' } } }, streams);
    assert.equal(fromOffset.chunks[0].from, '1500-3');
    const fromTime = planSeed(
      { source: { streams: ['a'], startFrom: { time: new Date(1800).toISOString() } } },
      streams,
    );
    assert.equal(fromTime.chunks[0].from, '1800-0');
    assert.ok(fromTime.total > 0 && fromTime.total < 1000);
  });
});

describe('pipeline: seed then tail equals the independently computed state', () => {
  for (const scenario of [
    { name: 'clean', options: {} },
    { name: 'twice', options: { twice: true } },
    { name: 'reverse', options: { order: 'lifo' as const, seedConcurrency: 1 } },
  ]) {
    it(`${scenario.name}: redis, postgres and topic targets`, async () => {
      // The first non-empty batch each product writes, to see which chunk went first.
      const firstWrite = new Map<string, SinkRecord[]>();
      const rt = await runtime({
        ...scenario.options,
        onWrite: (product, records) => {
          if (records.length > 0 && !firstWrite.has(product.name)) firstWrite.set(product.name, [...records]);
        },
      });
      const products = TARGETS.map((t) => testProduct('tests', `${scenario.name}-${t}`, t));
      try {
        for (const product of products) await rt.runner.start(product);
        const states = await caughtUp(rt.runner, products);
        await assertTargets(products, expected);
        for (const state of states) {
          assert.equal(state.seed.processed, baseEvents, 'every event of the log was read once by the seed');
          assert.equal(state.seed.total, baseEvents);
          assert.equal(state.seed.chunks.done, state.seed.chunks.total);
          assert.equal(state.deadLettered, expected.dead.size);
        }
        if (scenario.name === 'reverse') {
          for (const product of products) {
            const run = (await new PipelineStateStore(redis).loadRun(pipelineKeys(prefix, product)))!;
            const last = run.plan.chunks.at(-1)!;
            for (const record of firstWrite.get(product.name)!) {
              assert.equal(record.stream, last.stream, 'the last chunk is replayed first');
              assert.ok(
                compareOffsets(record.offset, last.from) >= 0 && compareOffsets(record.offset, last.to) <= 0,
              );
            }
          }
        }
        if (scenario.name === 'clean') {
          // Every source event reaches the topic exactly once.
          const offsets = (await topicEvents(eventLog, products[2])).map(
            (e) => `${String(e.sourcestream)}/${String(e.sourceoffset)}`,
          );
          assert.equal(new Set(offsets).size, offsets.length, 'no event is twice in the topic');
        }
      } finally {
        await cleanUp(rt.runner, products);
        await rt.close();
      }
    });
  }
});

describe('pipeline: the switch from seed to tail', () => {
  it('applies events published during the seed exactly once after the switch', async () => {
    // A slow sink keeps the seed running while the events are published.
    const rt = await runtime({ writeDelayMs: 20, chunkEvents: 25_000 });
    const products = TARGETS.map((t) => testProduct('tests', `switch-${t}`, t));
    const live = new OrderEvents({ seed: SEED + 1, orders: 20_000, poisonRate: 0, idPrefix: 'live' });
    try {
      const before = kept(await readAll(eventLog, STREAMS)).length;
      for (const product of products) await rt.runner.start(product);
      const hwm = (await rt.runner.state(products[0]))!.seed.highWaterMark;
      let published = 0;
      while (published < 3000) {
        await appendEvents(eventLog, live, 300, STREAMS, 300);
        published += 300;
        const state = await rt.runner.state(products[0]);
        assert.equal(state?.phase, 'seeding', 'the events must be published while seeding');
      }
      const states = await caughtUp(rt.runner, products);
      const all = await readAll(eventLog, STREAMS);
      await assertTargets(products, expectedState(all));
      const afterHwm = all.filter(({ stream, event }) => compareOffsets(event.offset, hwm[stream]) > 0);
      assert.equal(afterHwm.length, published);
      const keptAfterHwm = kept(afterHwm).length;
      for (const state of states) {
        assert.equal(state.seed.processed, before, 'the seed stopped at the high-water mark');
        assert.equal(state.tail?.processed, keptAfterHwm, 'the tail read exactly the events after it');
      }
      // In the topic: each published event that the spec keeps appears exactly once.
      const topic = await topicEvents(eventLog, products[2]);
      const seen = new Map<string, number>();
      for (const e of topic) {
        const id = `${String(e.sourcestream)}/${String(e.sourceoffset)}`;
        seen.set(id, (seen.get(id) ?? 0) + 1);
      }
      const inTopic = afterHwm.filter(({ event }) => {
        const data = event.data as { region?: string; amount?: number };
        return (
          event.type !== 'Heartbeat' &&
          data.region === 'EU' &&
          (event.type === 'OrderDeleted' || data.amount !== undefined)
        );
      });
      assert.ok(inTopic.length > 1000);
      for (const { stream, event } of inTopic) {
        assert.equal(
          seen.get(`${stream}/${event.offset}`),
          1,
          `event ${stream}/${event.offset} once in the topic`,
        );
      }
    } finally {
      await cleanUp(rt.runner, products);
      await rt.close();
    }
  });
});

describe('pipeline: tombstone purge', () => {
  /** The tombstones a target holds of events before `beforeMs`, found by looking at every key (not through the index). */
  async function tombstones(product: PipelineProduct, beforeMs: number): Promise<{ older: number }> {
    const sink = targetSink(sinkOptions, product);
    if (sink instanceof RedisSink) {
      let older = 0;
      for await (const keys of redis.scanStream({
        match: `${sink.tombstonePrefix}*`,
        count: 1000,
      }) as AsyncIterable<string[]>) {
        const tombstoneKeys = keys.filter((k) => k !== sink.tombstonePrefix);
        const values = tombstoneKeys.length === 0 ? [] : await redis.mget(...tombstoneKeys);
        older += values.filter((v) => v !== null && Number(v.split('-')[0]) < beforeMs).length;
      }
      return { older };
    }
    assert.ok(sink instanceof PostgresSink);
    const { rows } = await pool.query<{ older: number }>(
      `SELECT count(*)::int AS older
         FROM "${schema}"."${sink.storageTable}" WHERE _deleted AND _offset_ms < $1`,
      [beforeMs],
    );
    return rows[0];
  }

  it('purges below the earliest checkpoint of all streams, less the retention; not before every stream has one', () => {
    const streams = ['a', 'b'];
    assert.equal(tombstoneBound(streams, { a: '5000-3' }, 0), undefined);
    assert.equal(tombstoneBound(streams, { a: '5000-3', b: '7000-0' }, 0), '5000');
    assert.equal(tombstoneBound(streams, { a: '9000-0', b: '7000-9' }, 1000), '6000');
    assert.equal(tombstoneBound(streams, { a: '9000-0', b: '700-0' }, 1000), undefined);
    assert.equal(tombstoneBound(['a'], { a: '18446744073709551615-0' }, 3_600_000), '18446744073705951615');
  });

  it('a purge that fails is reported, never stops the tail, and is tried again after the interval', async () => {
    const streams = [`purge-fail-${randomBytes(3).toString('hex')}`];
    const product = testProduct('tests', 'purge-fail', 'redis', streams);
    const inner = targetSink(sinkOptions, product) as RedisSink;
    let attempts = 0;
    // The real sink, whose purge fails the first time (as a lost connection would).
    const sink = Object.assign(Object.create(inner) as RedisSink, {
      purgeTombstones: async (beforeMs: string) => {
        if (++attempts === 1) throw new Error('purge failed');
        return inner.purgeTombstones(beforeMs);
      },
    });
    const failures: unknown[] = [];
    const tail = new LiveTail({
      eventLog,
      sink,
      product: CompiledProduct.compile(product.spec),
      deadLetters: new DeadLetterQueue(eventLog, deadLetterStream(product), 'tests/purge-fail'),
      checkpointName: 'main',
      tombstonePurge: { retentionMs: 0, intervalMs: 0 },
      onPurgeError: (err) => failures.push(err),
    });
    const order = (id: string, type: string, orderId: string) => ({
      id,
      source: 'urn:test',
      type,
      data: { orderId, customerId: 'c-1', region: 'EU', amount: 1 },
    });
    const stop = new AbortController();
    const batches: TailBatchReport[] = [];
    const running = tail.run({}, stop.signal, (report) => {
      batches.push(report);
    });
    try {
      await eventLog.append(streams[0], [
        order('1', 'OrderPlaced', 'o-1'),
        order('2', 'OrderDeleted', 'o-1'),
      ]);
      await waitFor(() => batches.length >= 1 || 'the first batch', 'the first batch');
      await delay(5);
      await eventLog.append(streams[0], [order('3', 'OrderPlaced', 'o-2')]);
      await waitFor(() => batches.length >= 2 || 'the second batch', 'the second batch');
    } finally {
      stop.abort();
      await running;
    }
    assert.deepEqual(
      failures.map((e) => (e as Error).message),
      ['purge failed'],
    );
    // The first purge failed; the next one, after the second batch, took o-1's tombstone.
    assert.deepEqual(
      batches.map((b) => b.tombstonesPurged),
      [0, 1],
    );
    assert.equal(attempts, 2);
    assert.equal(await redis.exists(`${inner.tombstonePrefix}o-1`), 0);
    assert.equal(await redis.hget(`${inner.keyPrefix}o-2`, 'customer'), 'c-1');
    await inner.drop();
  });

  it('the tail purges the tombstones its checkpoint has passed on every stream; the data stays the same', async () => {
    const rt = await runtime({ tombstoneRetentionMs: 0, tombstonePurgeIntervalMs: 0 });
    const products = (['redis', 'postgres'] as const).map((t) => testProduct('tests', `purge-${t}`, t));
    try {
      for (const product of products) await rt.runner.start(product);
      await caughtUp(rt.runner, products);
      const liveStart = Date.now() + 2;
      for (const product of products) {
        const { older } = await tombstones(product, liveStart);
        assert.ok(older > 100, `the seed left the log's deletes as tombstones in ${product.name} (${older})`);
      }
      await delay(5);
      // Events on both streams move every checkpoint past the seeded tombstones.
      await appendEvents(
        eventLog,
        new OrderEvents({ seed: SEED + 3, orders: 20_000, idPrefix: 'purge' }),
        2000,
        STREAMS,
        200,
      );
      await caughtUp(rt.runner, products);
      const all = await readAll(eventLog, STREAMS);
      await assertTargets(products, expectedState(all));
      for (const product of products) {
        const left = await tombstones(product, liveStart);
        assert.equal(left.older, 0, `no tombstone older than the checkpoints is left in ${product.name}`);
      }
    } finally {
      await cleanUp(rt.runner, products);
      await rt.close();
    }
  });
});

describe('pipeline: poison events', () => {
  it('sends events whose expressions fail to the dead-letter stream and goes on', async () => {
    const rt = await runtime({});
    const streams = ['poison'];
    const product: PipelineProduct = testProduct('tests', 'poison', 'redis', streams);
    const good = (i: number) => ({
      id: `g-${i}`,
      source: 'urn:test',
      type: 'OrderPlaced',
      data: { orderId: `o-${i}`, customerId: 'c', region: 'EU', amount: i },
    });
    try {
      await eventLog.append('poison', [
        good(1),
        {
          id: 'p-1',
          source: 'urn:test',
          type: 'OrderPlaced',
          data: { orderId: 'o-x', region: 'EU', customerId: 'c' },
        },
        good(2),
      ]);
      await rt.runner.start(product);
      await waitFor(async () => (await rt.runner.state(product))?.phase === 'tailing', 'the seed');
      // One in the tail too: a key that is not a string.
      const { offsets } = await eventLog.append('poison', [
        {
          id: 'p-2',
          source: 'urn:test',
          type: 'OrderPlaced',
          data: { orderId: ['a'], region: 'EU', customerId: 'c', amount: 1 },
        },
        good(3),
      ]);
      await waitFor(async () => {
        const state = await rt.runner.state(product);
        return state?.checkpoint?.poison === offsets[1] || JSON.stringify(state?.checkpoint);
      }, 'the tail to pass the poison event');
      const state = (await rt.runner.state(product))!;
      assert.equal(state.phase, 'tailing');
      assert.equal(state.deadLettered, 2);
      assert.equal(state.seed.deadLettered, 1);
      const rows = await actualState(sinkOptions, product);
      assert.deepEqual([...rows.keys()].sort(), ['o-1', 'o-2', 'o-3']);
      const letters = (await eventLog.read(deadLetterStream(product), { limit: 10 })).events;
      assert.equal(letters.length, 2);
      assert.equal(letters[0].type, DEAD_LETTER_TYPE);
      const first = letters[0].data as Record<string, unknown>;
      assert.equal(first.stream, 'poison');
      assert.equal(first.pointer, '/spec/transform/fields/amount');
      assert.equal(first.expression, 'event.data.amount');
      assert.match(String(first.error), /amount/);
      assert.equal((first.event as { id: string }).id, 'p-1');
      const second = letters[1].data as Record<string, unknown>;
      assert.equal(second.offset, offsets[0]);
      assert.equal(second.pointer, '/spec/transform/key');
    } finally {
      await cleanUp(rt.runner, [product]);
      await rt.close();
      await eventLog.deleteStream('poison');
    }
  });
});

describe('pipeline: records the target refuses', () => {
  it('dead-letters a record whose value does not fit its column and writes the rest of the batch', async () => {
    const rt = await runtime({});
    const product: PipelineProduct = testProduct('tests', 'refused', 'postgres', ['refused']);
    const order = (id: string, amount: unknown) => ({
      id,
      source: 'urn:test',
      type: 'OrderPlaced',
      data: { orderId: id, customerId: 'c', region: 'EU', amount },
    });
    try {
      const { offsets } = await eventLog.append('refused', [
        order('a', 1),
        order('b', 'not a number'),
        order('c', 3),
      ]);
      await rt.runner.start(product);
      await waitFor(
        async () => (await rt.runner.state(product))?.checkpoint?.refused === offsets[2],
        'the batch to be applied',
      );
      const rows = await actualState(sinkOptions, product);
      assert.deepEqual([...rows.keys()].sort(), ['a', 'c']);
      const letters = (await eventLog.read(deadLetterStream(product), { limit: 10 })).events;
      assert.equal(letters.length, 1);
      const letter = letters[0].data as Record<string, unknown>;
      assert.equal(letter.offset, offsets[1]);
      assert.equal(letter.pointer, '/spec/target');
      assert.match(String(letter.error), /refused.*amount/);
      assert.equal((letter.event as { id: string }).id, 'b', 'the event is read back into the letter');
      assert.equal((await rt.runner.state(product))!.deadLettered, 1);
    } finally {
      await cleanUp(rt.runner, [product]);
      await rt.close();
      await eventLog.deleteStream('refused');
    }
  });
});

describe('pipeline: stop, start and delete', () => {
  it('stops mid-seed with cursors saved, resumes on start, and deleting removes its state', async () => {
    const rt = await runtime({ writeDelayMs: 10, chunkEvents: 25_000 });
    const product = testProduct('tests', 'stop-start', 'postgres');
    try {
      const log = await readAll(eventLog, STREAMS);
      await rt.runner.start(product);
      await waitFor(
        async () => ((await rt.runner.state(product))?.seed.processed ?? 0) > 5000,
        'some progress',
      );
      const stopped = (await rt.runner.stop(product))!;
      assert.equal(stopped.phase, 'stopped');
      assert.ok(stopped.seed.processed < kept(log).length);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(
        (await rt.runner.state(product))!.seed.processed,
        stopped.seed.processed,
        'nothing runs after stop',
      );
      assert.ok(stopped.seed.processed > 0);
      const restarted = await rt.runner.start(product);
      assert.deepEqual(restarted.seed.highWaterMark, stopped.seed.highWaterMark, 'the same high-water mark');
      const [state] = await caughtUp(rt.runner, [product]);
      assert.equal(state.seed.processed, kept(log).length, 'no chunk started over');
      await assertTargets([product], expectedState(log));
      await assert.rejects(rt.runner.start({ ...product, spec: { ...product.spec, filter: 'true' } }), {
        code: 'conflict',
      });
      const tailStopped = (await rt.runner.stop(product))!;
      assert.equal(tailStopped.phase, 'stopped');
      assert.deepEqual(tailStopped.checkpoint, state.checkpoint);
      await rt.runner.deleteRuntimeState(product);
      assert.equal(await rt.runner.state(product), null);
      const leftovers = await redis.keys(`${prefix}:pipeline:tests.stop-start:*`);
      assert.deepEqual(leftovers, []);
      const jobs = await redis.keys(`${prefix}:bull:*tests.stop-start*`);
      assert.deepEqual(jobs, []);
    } finally {
      await cleanUp(rt.runner, [product]);
      await rt.close();
    }
  });
});
