/**
 * `offtake worker` in dedicated mode (OFFTAKE_WORKER_PRODUCT): a pipeline runner launches a
 * dedicated product's jobs into its build's own queues; a spawned dedicated worker seeds and
 * tails them into the product's own store (Redis db 5 standing in for the product's server, and a
 * database of its own on the test Postgres), while a shared in-process worker takes none of them.
 * The health endpoint answers /healthz and /readyz (503 with a reason, never a password, when the
 * store does not answer); bad settings stop the worker with a one-line message. Plus the health
 * server, the configuration and the dedicated sink factory on their own.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { DataProductSpec } from '../crds/generated/types.ts';
import { loadConfig } from '../lib/config.ts';
import { metricValue } from './helpers/metrics.ts';
import { workerSettings } from '../operator/operator-parts.ts';
import type { EventInput } from '../lib/eventlog/event-log.ts';
import { RedisEventLog } from '../lib/eventlog/redis-event-log.ts';
import { createLogger } from '../lib/logger.ts';
import { workerReadiness, type WorkerHealthParts } from '../operator/embedded.ts';
import { DEDICATED_REDIS_KEY_PREFIX } from '../operator/kube/dedicated.ts';
import { dedicatedSink, productSinkFactory, type DedicatedStore } from '../operator/product-sinks.ts';
import { productStoreNames } from '../operator/store-names.ts';
import { startHealthServer } from '../worker/health-server.ts';
import { CHECKPOINT_NAME, pipelineQueues, queuePrefix, type ProductRef } from '../worker/pipeline-keys.ts';
import { PipelineRunner } from '../worker/pipeline-runner.ts';
import type { PipelineProduct } from '../worker/pipeline-state-store.ts';
import { PipelineWorker } from '../worker/pipeline-worker.ts';
import { redisConnector } from '../worker/redis-connector.ts';
import { freePort } from './eventlog-helpers.ts';
import { runCli, spawnWorker, type WorkerChild } from './helpers/process.ts';
import { dropPrefix, testRedis, TEST_REDIS_URL, uniquePrefix } from './helpers/redis.ts';
import {
  expectedOrders,
  orderEvents,
  orderSpec,
  POSTGRES_URL,
  scanKeys,
  waitFor,
  type OrderRow,
} from './operator-helpers.ts';

const logger = createLogger('silent');
const connect = redisConnector(TEST_REDIS_URL);
/** The dedicated store of the Redis tests: database 5 of the test Redis. */
const STORE_URI = withPath(TEST_REDIS_URL, '/5');
const SECRET = 's3cret-Pa55word';

let redis: Redis;
let store: Redis;
let admin: pg.Pool;
let prefix: string;
let eventLog: RedisEventLog;
let runner: PipelineRunner;
let shared: PipelineWorker;
/** Products the shared worker was asked to make a sink for: none may be dedicated. */
const sharedSinkCalls: string[] = [];
/** Tags of the record keys the tests wrote into the dedicated Redis, removed afterwards. */
const tags: string[] = [];
const databases: string[] = [];
const children: ChildProcess[] = [];

function withPath(url: string, path: string): string {
  const u = new URL(url);
  u.pathname = path;
  return u.toString();
}

/** Order events whose order ids carry `tag`, so this test's keys never meet anyone else's. */
function taggedEvents(tag: string, from: number, to: number): EventInput[] {
  return orderEvents(from, to, tag).map((event) => {
    const data = event.data as { orderId: string };
    const orderId = `${tag}-${data.orderId}`;
    return { ...event, subject: orderId, data: { ...data, orderId } };
  });
}

function taggedRows(tag: string, n: number): Map<string, OrderRow> {
  return new Map([...expectedOrders(n)].map(([key, row]) => [`${tag}-${key}`, row]));
}

async function publish(stream: string, events: EventInput[]): Promise<void> {
  for (let i = 0; i < events.length; i += 500) await eventLog.append(stream, events.slice(i, i + 500));
}

/** The order spec with dedicated placement, on a stream of the test's own (so no other test's product sees its events). */
function dedicatedSpec(type: 'redis' | 'postgres', stream = 'orders', table?: string): DataProductSpec {
  const spec = orderSpec(type, stream, table);
  return { ...spec, target: { ...spec.target, placement: 'dedicated' } };
}

function startWorker(env: Record<string, string>): WorkerChild {
  const worker = spawnWorker({
    OFFTAKE_REDIS_URL: TEST_REDIS_URL,
    OFFTAKE_REDIS_PREFIX: prefix,
    OFFTAKE_EVENTLOG_DURABILITY: 'none',
    OFFTAKE_WORKER_SEED_BATCH_SIZE: '50',
    OFFTAKE_LOG_LEVEL: 'info',
    ...env,
  });
  children.push(worker.child);
  return worker;
}

async function stopWorker(worker: WorkerChild): Promise<void> {
  if (worker.child.exitCode !== null) return;
  worker.child.kill('SIGTERM');
  const [code] = (await once(worker.child, 'exit')) as [number | null];
  assert.equal(code, 0, `the worker drained and exited 0: ${worker.output()}`);
}

async function get(port: number, path: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: res.status, body: await res.text() };
}

/** Waits until the product's tail runs and has caught up with the log. */
async function tailing(ref: ProductRef): Promise<void> {
  await waitFor(async () => {
    const state = await runner.state(ref);
    if (state?.phase === 'failed') throw new Error(`the pipeline failed: ${state.error}`);
    return state?.phase === 'tailing' && state.lag?.events === 0
      ? true
      : `${state?.phase}: ${state?.seed.processed}/${state?.seed.total}, lag ${JSON.stringify(state?.lag)}, ${state?.error ?? ''}`;
  }, 'the pipeline to seed and tail');
}

/** The records of `tag` in the dedicated Redis, by key. */
async function redisRows(tag: string): Promise<Map<string, OrderRow>> {
  const rows = new Map<string, OrderRow>();
  let cursor = '0';
  do {
    const [next, keys] = await store.scan(
      cursor,
      'MATCH',
      `${DEDICATED_REDIS_KEY_PREFIX}${tag}-*`,
      'COUNT',
      1000,
    );
    cursor = next;
    for (const key of keys) {
      const hash = await store.hgetall(key);
      rows.set(key.slice(DEDICATED_REDIS_KEY_PREFIX.length), {
        customer: hash.customer,
        amount: Number(hash.amount),
        status: hash.status,
      });
    }
  } while (cursor !== '0');
  return rows;
}

/** Jobs of a queue of the test prefix, by state (finished jobs are removed, failed ones kept). */
async function jobCounts(queueName: string): Promise<Record<string, number>> {
  const connection = connect('test-queue');
  const queue = new Queue(queueName, { connection, prefix: queuePrefix(prefix) });
  try {
    const counts = await queue.getJobCounts();
    return Object.fromEntries(Object.entries(counts).filter(([, n]) => n > 0));
  } finally {
    await queue.close();
    // A connection given to BullMQ stays the caller's to close.
    connection.disconnect();
  }
}

before(async () => {
  redis = testRedis();
  store = new Redis(STORE_URI, { maxRetriesPerRequest: 2 });
  admin = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
  prefix = uniquePrefix('workerdedicated');
  eventLog = await RedisEventLog.create({ redis, prefix: `${prefix}:log`, durability: { mode: 'none' } });
  runner = new PipelineRunner({ connect, eventLog, logger, prefix, chunkEvents: 200, waitingGraceMs: 300 });
  const sharedSinks = productSinkFactory({ redis, pool: undefined, eventLog, platformPrefix: prefix });
  shared = new PipelineWorker({
    connect,
    eventLog,
    logger,
    prefix,
    sinkFactory: (product) => {
      sharedSinkCalls.push(`${product.namespace}/${product.name}`);
      return sharedSinks(product);
    },
  });
  await shared.start();
});

after(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  await shared?.close();
  await runner?.close();
  await eventLog?.close();
  for (const tag of tags) {
    const keys = await scanKeys(store, `${DEDICATED_REDIS_KEY_PREFIX}${tag}-*`);
    if (keys.length > 0) await store.unlink(...keys);
  }
  await store.hdel(`${DEDICATED_REDIS_KEY_PREFIX.slice(0, -1)}#checkpoints`, CHECKPOINT_NAME);
  store.disconnect();
  for (const database of databases) await admin.query(`DROP DATABASE IF EXISTS "${database}" WITH (FORCE)`);
  await admin.end();
  await dropPrefix(redis, prefix);
  redis.disconnect();
});

describe('offtake worker, dedicated mode', () => {
  it('seeds and tails a dedicated redis product into its own store; the shared worker takes none of its jobs', async () => {
    const tag = `wd${randomBytes(4).toString('hex')}`;
    tags.push(tag);
    const ref = { namespace: `wd-${randomBytes(3).toString('hex')}`, name: 'orders-cache' };
    const product: PipelineProduct = { ...ref, spec: dedicatedSpec('redis', `orders-${tag}`) };
    await publish(`orders-${tag}`, taggedEvents(tag, 0, 600));

    const healthPort = await freePort();
    const worker = startWorker({
      OFFTAKE_WORKER_PRODUCT: `${ref.namespace}/${ref.name}`,
      OFFTAKE_WORKER_STORE_URI: STORE_URI,
      OFFTAKE_WORKER_HEALTH_PORT: String(healthPort),
    });
    await worker.running;
    assert.match(worker.output(), /"mode":"dedicated","product":"wd-[0-9a-f]+\/orders-cache","build":1/);

    await runner.start(product);
    await tailing(ref);
    await waitFor(async () => {
      const rows = await redisRows(tag);
      assert.deepEqual(rows, taggedRows(tag, 600));
      return true;
    }, 'the seeded records in the dedicated store');
    assert.deepEqual(
      JSON.parse(
        (await store.hget(`${DEDICATED_REDIS_KEY_PREFIX.slice(0, -1)}#checkpoints`, CHECKPOINT_NAME))!,
      ),
      (await runner.state(ref))!.checkpoint,
      'the checkpoint lives beside the records, outside their prefix',
    );

    // The tail runs in the dedicated worker too.
    await publish(`orders-${tag}`, taggedEvents(tag, 600, 603));
    await waitFor(
      async () => (await store.hget(`${DEDICATED_REDIS_KEY_PREFIX}${tag}-o-600`, 'status')) === 'cancelled',
      'a new event through the tail',
    );

    // Its jobs went to the build's own queues only; the shared worker never saw them.
    const own = pipelineQueues(ref, true);
    assert.deepEqual(await jobCounts(own.tail), { active: 1 }, 'the tail runs from the dedicated queue');
    const sharedQueues = pipelineQueues(ref, false);
    assert.deepEqual(await jobCounts(sharedQueues.seed), {}, 'no job in the shared seed queue');
    assert.deepEqual(await jobCounts(sharedQueues.tail), {}, 'no job in the shared tail queue');
    assert.deepEqual(sharedSinkCalls, [], 'the shared worker made no sink');
    const names = productStoreNames(prefix, ref);
    assert.deepEqual(
      await scanKeys(redis, `${names.redis.keyPrefix}*`),
      [],
      'nothing under the shared names',
    );

    assert.deepEqual(await get(healthPort, '/healthz'), { status: 200, body: 'ok\n' });
    assert.deepEqual(await get(healthPort, '/readyz'), { status: 200, body: 'ok\n' });
    // Its metrics count what the runner's state says the seed and the tail did (the state's
    // tail counters are saved every half second: wait for them).
    let metrics = await get(healthPort, '/metrics');
    await waitFor(async () => {
      metrics = await get(healthPort, '/metrics');
      const state = (await runner.state(ref))!;
      const counted = (metric: string, phase: string) =>
        metricValue(metrics.body, metric, { namespace: ref.namespace, name: ref.name, phase });
      assert.equal(metrics.status, 200);
      assert.equal(counted('offtake_pipeline_events_total', 'seed'), state.seed.processed);
      assert.equal(counted('offtake_pipeline_records_written_total', 'seed'), state.seed.written);
      const tail = state.tail?.processed ?? 0;
      return (tail > 0 && counted('offtake_pipeline_events_total', 'tail') === tail) || `tail ${tail}`;
    }, 'the metrics to count what the seed and the tail did');
    assert.ok(
      (metricValue(metrics.body, 'offtake_pipeline_batch_duration_seconds_count', { phase: 'seed' }) ?? 0) >
        0,
    );
    assert.ok(
      (metricValue(metrics.body, 'process_resident_memory_bytes') ?? 0) > 0,
      'the process metrics too',
    );
    assert.ok(!metrics.body.includes(STORE_URI), 'no secret in the metrics');

    await runner.deleteRuntimeState(ref, { timeoutMs: 20_000 });
    await stopWorker(worker);
    assert.ok(!worker.output().includes(STORE_URI), 'the store URI is never logged');
  });

  it('fills a dedicated postgres product table (view in public) in a database of its own', async () => {
    const database = `offtake_dedicated_${randomBytes(4).toString('hex')}`;
    await admin.query(`CREATE DATABASE "${database}"`);
    databases.push(database);
    const storeUri = withPath(POSTGRES_URL, `/${database}`);
    const tag = `wp${randomBytes(4).toString('hex')}`;
    tags.push(tag);
    const ref = { namespace: `wp-${randomBytes(3).toString('hex')}`, name: 'orders-table' };
    const product: PipelineProduct = {
      ...ref,
      spec: dedicatedSpec('postgres', `orders-${tag}`, 'eu_orders'),
    };
    await publish(`orders-${tag}`, taggedEvents(tag, 0, 400));

    const healthPort = await freePort();
    const worker = startWorker({
      OFFTAKE_WORKER_PRODUCT: `${ref.namespace}/${ref.name}`,
      OFFTAKE_WORKER_STORE_URI: storeUri,
      OFFTAKE_WORKER_HEALTH_PORT: String(healthPort),
    });
    await worker.running;
    await runner.start(product);
    await tailing(ref);

    const reader = new pg.Pool({ connectionString: storeUri, max: 1 });
    try {
      const rows = async () => {
        const result = await reader.query<{ _key: string; customer: string; amount: string; status: string }>(
          'SELECT _key, customer, amount::text AS amount, status FROM public.eu_orders WHERE _key LIKE $1',
          [`${tag}-%`],
        );
        return new Map(
          result.rows.map((r) => [
            r._key,
            { customer: r.customer, amount: Number(r.amount), status: r.status },
          ]),
        );
      };
      assert.deepEqual(await rows(), taggedRows(tag, 400));
      await publish(`orders-${tag}`, taggedEvents(tag, 400, 401));
      await waitFor(
        async () => (await rows()).get(`${tag}-o-400`)?.status === 'cancelled',
        'a new event through the tail',
      );
      assert.deepEqual(await get(healthPort, '/readyz'), { status: 200, body: 'ok\n' });
    } finally {
      await reader.end();
    }
    await runner.deleteRuntimeState(ref, { timeoutMs: 20_000 });
    await stopWorker(worker);
    assert.deepEqual(sharedSinkCalls, [], 'the shared worker made no sink');
  });

  it('is live but not ready while its store does not answer, and never shows the password', async () => {
    const deadPort = await freePort();
    const healthPort = await freePort();
    const worker = startWorker({
      OFFTAKE_WORKER_PRODUCT: 'wd-nowhere/orders-cache',
      OFFTAKE_WORKER_STORE_URI: `redis://:${SECRET}@127.0.0.1:${deadPort}/0`,
      OFFTAKE_WORKER_HEALTH_PORT: String(healthPort),
    });
    await worker.running;
    assert.deepEqual(await get(healthPort, '/healthz'), { status: 200, body: 'ok\n' });
    const ready = await get(healthPort, '/readyz');
    assert.equal(ready.status, 503);
    assert.match(ready.body, /^the dedicated redis store is not connected \(\w+\)\n$/);
    assert.ok(!ready.body.includes(SECRET));
    await stopWorker(worker);
    assert.ok(!worker.output().includes(SECRET), `no password in the logs: ${worker.output()}`);
  });

  it('refuses bad settings with one line on stderr, without the password', async () => {
    const uri = `redis://:${SECRET}@127.0.0.1:6379/5`;
    const cases: { env: Record<string, string>; message: RegExp }[] = [
      {
        env: { OFFTAKE_WORKER_PRODUCT: 'Bad/Name', OFFTAKE_WORKER_STORE_URI: uri },
        message: /OFFTAKE_WORKER_PRODUCT must be <namespace>\/<name>, both DNS-1123 labels/,
      },
      {
        env: { OFFTAKE_WORKER_PRODUCT: 'checkout', OFFTAKE_WORKER_STORE_URI: uri },
        message: /OFFTAKE_WORKER_PRODUCT/,
      },
      { env: { OFFTAKE_WORKER_PRODUCT: 'checkout/orders' }, message: /OFFTAKE_WORKER_STORE_URI must be set/ },
      {
        env: { OFFTAKE_WORKER_STORE_URI: uri },
        message: /OFFTAKE_WORKER_STORE_URI is set without OFFTAKE_WORKER_PRODUCT/,
      },
      {
        env: {
          OFFTAKE_WORKER_PRODUCT: 'checkout/orders',
          OFFTAKE_WORKER_STORE_URI: `mysql://u:${SECRET}@h/db`,
        },
        message:
          /OFFTAKE_WORKER_STORE_URI must be a redis:\/\/, rediss:\/\/, postgres:\/\/ or postgresql:\/\/ URI/,
      },
      {
        env: {
          OFFTAKE_WORKER_PRODUCT: 'checkout/orders',
          OFFTAKE_WORKER_STORE_URI: uri,
          OFFTAKE_WORKER_BUILD: '0',
        },
        message: /OFFTAKE_WORKER_BUILD must be at least 1/,
      },
      {
        env: { OFFTAKE_WORKER_HEALTH_PORT: '70000' },
        message: /OFFTAKE_WORKER_HEALTH_PORT must be a port number/,
      },
    ];
    const results = await Promise.all(
      cases.map(({ env }) =>
        runCli(['worker'], { OFFTAKE_REDIS_URL: TEST_REDIS_URL, OFFTAKE_REDIS_PREFIX: prefix, ...env }),
      ),
    );
    cases.forEach(({ env, message }, i) => {
      const { code, stderr } = results[i];
      assert.notEqual(code, 0, JSON.stringify(env));
      assert.match(stderr, message);
      assert.equal(stderr.trim().split('\n').length, 1, `one line: ${stderr}`);
      assert.ok(!stderr.includes(SECRET), `no password: ${stderr}`);
    });
  });
});

describe('worker configuration', () => {
  it('reads the dedicated-mode and health settings', () => {
    const uri = 'postgresql://offtake:pw@orders-postgres.checkout.svc:5432/offtake';
    assert.deepEqual(
      loadConfig({
        OFFTAKE_WORKER_PRODUCT: 'checkout/orders',
        OFFTAKE_WORKER_STORE_URI: uri,
        OFFTAKE_WORKER_BUILD: '3',
        OFFTAKE_WORKER_HEALTH_PORT: '9090',
      }).worker,
      {
        seedConcurrency: 2,
        tailConcurrency: 1000,
        seedBatchSize: 1000,
        tombstoneRetentionSeconds: 3600,
        product: { namespace: 'checkout', name: 'orders' },
        build: 3,
        storeUri: uri,
        healthPort: 9090,
      },
    );
    const plain = loadConfig({}).worker;
    assert.equal(plain.product, undefined);
    assert.equal(plain.build, undefined);
    assert.equal(plain.storeUri, undefined);
    assert.equal(plain.healthPort, undefined);
    assert.equal(
      loadConfig({ OFFTAKE_WORKER_PRODUCT: 'checkout/orders', OFFTAKE_WORKER_STORE_URI: 'redis://h/0' })
        .worker.build,
      1,
    );
    assert.throws(() => loadConfig({ OFFTAKE_WORKER_BUILD: '2' }), /OFFTAKE_WORKER_BUILD is set without/);
    // Retention 0 purges tombstones as soon as every stream's checkpoint has passed them.
    const purgeNow = loadConfig({ OFFTAKE_WORKER_TOMBSTONE_RETENTION_SECONDS: '0' });
    assert.equal(workerSettings(purgeNow).tombstoneRetentionMs, 0);
    assert.equal(workerSettings(loadConfig({})).tombstoneRetentionMs, 3_600_000);
    assert.throws(
      () => loadConfig({ OFFTAKE_WORKER_TOMBSTONE_RETENTION_SECONDS: '-5' }),
      /OFFTAKE_WORKER_TOMBSTONE_RETENTION_SECONDS/,
    );
    assert.throws(() => loadConfig({ OFFTAKE_WORKER_HEALTH_PORT: '0' }), /1-65535/);
    assert.throws(
      () =>
        loadConfig({ OFFTAKE_WORKER_PRODUCT: 'checkout/orders/x', OFFTAKE_WORKER_STORE_URI: 'redis://h' }),
      /OFFTAKE_WORKER_PRODUCT must be/,
    );
  });
});

describe('dedicatedSink', () => {
  const served = { namespace: 'checkout', name: 'orders', build: 2 };
  const product = (over: Partial<PipelineProduct>, spec = dedicatedSpec('redis')): PipelineProduct => ({
    ...served,
    spec,
    ...over,
  });
  let connection: Redis;
  let deps: { product: ProductRef; store: DedicatedStore };
  before(() => {
    connection = new Redis(STORE_URI, { lazyConnect: true });
    deps = { product: served, store: { type: 'redis', redis: connection } };
  });
  after(() => connection.disconnect());

  it("writes records under records: and refuses jobs that are not its product build's", () => {
    const sink = dedicatedSink(deps, product({}));
    assert.equal((sink as { keyPrefix?: string }).keyPrefix, DEDICATED_REDIS_KEY_PREFIX);
    assert.throws(
      () => dedicatedSink(deps, product({ name: 'other' })),
      /serves checkout\/orders build 2 \(OFFTAKE_WORKER_PRODUCT, OFFTAKE_WORKER_BUILD\), not checkout\/other build 2/,
    );
    assert.throws(() => dedicatedSink(deps, product({ build: undefined })), /not checkout\/orders build 1/);
    assert.throws(
      () => dedicatedSink(deps, product({}, dedicatedSpec('postgres', 'orders', 'eu_orders'))),
      /target is postgres, but this dedicated worker's store \(OFFTAKE_WORKER_STORE_URI\) is a redis server/,
    );
    assert.throws(
      () => dedicatedSink(deps, product({}, orderSpec('topic'))),
      /A topic target has no dedicated store/,
    );
  });
});

describe('health server', () => {
  it('is ready once the worker runs with its Redis connected, and not while it drains', async () => {
    const redis = testRedis();
    try {
      await redis.ping();
      const worker = { closingDown: false };
      const parts: WorkerHealthParts = { started: false, redis, worker };
      const notStarted = workerReadiness(parts);
      assert.equal(await notStarted(), 'the worker has not started yet');
      parts.started = true;
      const check = workerReadiness(parts);
      assert.equal(await check(), true);
      // Draining shows at once, even within the time a ready answer is reused.
      worker.closingDown = true;
      assert.equal(await check(), 'the worker is draining (shutting down)');
    } finally {
      redis.disconnect();
    }
  });

  it('answers /healthz always, /readyz by its check, and 404 otherwise', async () => {
    let answer: true | string = 'the worker has not started yet';
    const health = await startHealthServer({
      port: 0,
      host: '127.0.0.1',
      ready: () => Promise.resolve(answer),
    });
    try {
      assert.deepEqual(await get(health.port, '/healthz'), { status: 200, body: 'ok\n' });
      assert.deepEqual(await get(health.port, '/readyz'), {
        status: 503,
        body: 'the worker has not started yet\n',
      });
      answer = 'two\nlines';
      assert.deepEqual(await get(health.port, '/readyz'), { status: 503, body: 'two lines\n' });
      answer = true;
      assert.deepEqual(await get(health.port, '/readyz?verbose'), { status: 200, body: 'ok\n' });
      assert.equal((await get(health.port, '/')).status, 404);
      assert.equal((await fetch(`http://127.0.0.1:${health.port}/healthz`, { method: 'POST' })).status, 404);
    } finally {
      await health.close();
    }
    const failing = await startHealthServer({
      port: 0,
      host: '127.0.0.1',
      ready: () => Promise.reject(new Error('boom')),
    });
    try {
      assert.deepEqual(await get(failing.port, '/readyz'), { status: 503, body: 'boom\n' });
      await assert.rejects(
        startHealthServer({ port: failing.port, host: '127.0.0.1', ready: () => Promise.resolve(true) }),
        /The health server cannot listen on 127\.0\.0\.1:\d+: .*EADDRINUSE/,
      );
    } finally {
      await failing.close();
    }
  });
});
