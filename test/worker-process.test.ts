/**
 * `offtake worker` as a process of its own: an embedded Offtake without in-process workers (what
 * `offtake up --no-workers` runs) leaves every seed and tail job to the worker processes. Two of
 * them seed a product to Ready with the right data, keep it current, and drain and exit 0 on
 * SIGTERM; each runs with V8's young generation capped (the re-exec that bounds its memory).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { createLogger } from '../lib/logger.ts';
import { startEmbedded, type RunningEmbedded } from '../operator/embedded.ts';
import { productStoreNames } from '../operator/store-names.ts';
import { spawnWorker, type WorkerChild } from './helpers/process.ts';
import { dropPrefix, testRedis, TEST_REDIS_URL, uniquePrefix } from './helpers/redis.ts';
import {
  ApiClient,
  condition,
  expectedOrders,
  isReady,
  leftovers,
  orderEvents,
  orderSpec,
  POSTGRES_URL,
  embeddedTestConfig,
  waitFor,
} from './operator-helpers.ts';
import pg from 'pg';

let redis: Redis;
let pool: pg.Pool;
let prefix: string;
let embedded: RunningEmbedded;
let api: ApiClient;
const workers: WorkerChild[] = [];

function startWorker(env: Record<string, string> = {}): WorkerChild {
  const worker = spawnWorker({
    OFFTAKE_REDIS_URL: TEST_REDIS_URL,
    OFFTAKE_POSTGRES_URL: POSTGRES_URL,
    OFFTAKE_REDIS_PREFIX: prefix,
    OFFTAKE_EVENTLOG_DURABILITY: 'none',
    OFFTAKE_WORKER_SEED_BATCH_SIZE: '50',
    OFFTAKE_LOG_LEVEL: 'info',
    ...env,
  });
  workers.push(worker);
  return worker;
}

before(async () => {
  redis = testRedis();
  pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
  prefix = uniquePrefix('workerproc');
  const config = embeddedTestConfig(prefix);
  embedded = await startEmbedded(config, createLogger('silent'), {
    inProcessWorkers: false,
    controller: { backoff: { baseDelayMs: 100, maxDelayMs: 2000 } },
    reconciler: { statusIntervalMs: 300, progressIntervalMs: 300 },
    runner: { chunkEvents: 200, waitingGraceMs: 300 },
  });
  api = new ApiClient(embedded.url);
});

after(async () => {
  for (const { child } of workers) if (child.exitCode === null) child.kill('SIGKILL');
  await embedded?.close();
  await dropPrefix(redis, prefix);
  redis.disconnect();
  await pool.end();
});

describe('offtake worker', () => {
  it('seeds and tails products for an Offtake that runs no workers, and drains on SIGTERM', async () => {
    const ref = { namespace: `wp-${randomBytes(3).toString('hex')}`, name: 'orders-cache' };
    await api.publish('orders', orderEvents(0, 1000));
    await api.create(ref, orderSpec('redis'));
    // Without a worker nothing seeds: the product waits, visibly, for one.
    await waitFor(
      async () => condition((await api.status(ref))?.status, 'Ready')?.reason === 'NoWorkers',
      'the product to say it has no worker',
    );
    const waiting = (await api.status(ref))!.status;
    assert.equal(waiting.phase, 'Seeding');
    assert.equal(condition(waiting, 'Seeded')?.reason, 'NoWorkers');
    assert.match(
      condition(waiting, 'Ready')?.message ?? '',
      /No pipeline worker is running: start `offtake worker`/,
    );

    const [first, second] = [startWorker(), startWorker()];
    await waitFor(async () => isReady(await api.status(ref)), 'Ready through the worker processes', 60_000);

    const names = productStoreNames(prefix, ref);
    const expected = expectedOrders(1000);
    const sample = ['o-0', 'o-2', 'o-998'];
    for (const key of sample) {
      const row = await redis.hgetall(`${names.redis.keyPrefix}${key}`);
      assert.deepEqual(
        { customer: row.customer, amount: Number(row.amount), status: row.status },
        expected.get(key),
        key,
      );
    }
    assert.equal(await redis.exists(`${names.redis.keyPrefix}o-1`), 0, 'US orders are filtered out');

    // The tail runs in a worker process too.
    await api.publish('orders', orderEvents(1000, 1002));
    await waitFor(
      async () => (await redis.hget(`${names.redis.keyPrefix}o-1000`, 'status')) === 'cancelled',
      'a new event through the tail',
    );

    for (const { child } of [first, second]) {
      const cmdline = readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0');
      assert.ok(
        cmdline.includes('--max-semi-space-size=16'),
        `young generation capped: ${cmdline.join(' ')}`,
      );
    }

    for (const worker of [first, second]) {
      await worker.running;
      worker.child.kill('SIGTERM');
      const [code] = (await once(worker.child, 'exit')) as [number | null];
      assert.equal(code, 0, `worker drained and exited 0: ${worker.output()}`);
    }
    // Nobody tails the log any more: Ready says so instead of claiming the store is current.
    await waitFor(
      async () => condition((await api.status(ref))?.status, 'Ready')?.reason === 'NoWorkers',
      'Ready to say no worker tails the product',
    );

    assert.equal(await api.delete(ref), 202, 'deletion waits for the teardown');
    // Teardown needs no worker: it stops the pipeline through the queues and drops the store.
    await waitFor(async () => (await api.status(ref)) === null, 'the product to be gone');
    assert.deepEqual(await leftovers(redis, pool, prefix, ref), []);
  });
  it("says so when every worker's tail slots are taken, and moves on once a worker has room", async () => {
    const namespace = `ws-${randomBytes(3).toString('hex')}`;
    const refs = [
      { namespace, name: 'orders-a' },
      { namespace, name: 'orders-b' },
    ];
    await api.publish('orders', orderEvents(2000, 2100, 'slots'));
    const small = startWorker({ OFFTAKE_WORKER_TAIL_CONCURRENCY: '1' });
    await small.running;
    for (const ref of refs) await api.create(ref, orderSpec('redis'));
    // One tail slot: one product goes Ready, the other is seeded but waits for a slot, and says so.
    let ready: (typeof refs)[number] | undefined;
    let stuck: (typeof refs)[number] | undefined;
    await waitFor(async () => {
      const states = await Promise.all(refs.map(async (ref) => (await api.status(ref))?.status));
      const readyAt = states.findIndex((s) => condition(s, 'Ready')?.reason === 'Current');
      const stuckAt = states.findIndex((s) => condition(s, 'Ready')?.reason === 'WaitingForWorker');
      if (readyAt < 0 || stuckAt < 0) return false;
      [ready, stuck] = [refs[readyAt], refs[stuckAt]];
      return true;
    }, 'one product Ready and one waiting for a tail slot');
    assert.ok(ready !== undefined && stuck !== undefined);
    const stuckStatus = (await api.status(stuck))!.status;
    assert.equal(condition(stuckStatus, 'Seeded')?.reason, 'WaitingForWorker');
    assert.match(condition(stuckStatus, 'Ready')?.message ?? '', /OFFTAKE_WORKER_TAIL_CONCURRENCY/);

    const another = startWorker({ OFFTAKE_WORKER_TAIL_CONCURRENCY: '1' });
    await another.running;
    await waitFor(
      async () => isReady(await api.status(stuck!)),
      'the waiting product Ready on the new worker',
      30_000,
    );
    for (const ref of refs) assert.equal(await api.delete(ref), 202);
    for (const ref of refs)
      await waitFor(async () => (await api.status(ref)) === null, 'the product to be gone');
    for (const worker of [small, another]) {
      worker.child.kill('SIGTERM');
      const [code] = (await once(worker.child, 'exit')) as [number | null];
      assert.equal(code, 0, `worker drained and exited 0: ${worker.output()}`);
    }
  });
});
