/**
 * The operator's pure parts — names, status conditions, failure classification, the work
 * queue — without servers, and its controller against a real resource store in Redis with a
 * recording reconciler at its edge: list then watch, no reconcile for status-only writes, one
 * reconcile per product at a time, retries with backoff, and a re-list when the watch expires.
 */
import assert from 'node:assert/strict';
import { setTimeout as delay } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { pino } from 'pino';
import { SQL_IDENTIFIER } from '../crds/dataproduct.schema.ts';
import { createLogger } from '../lib/logger.ts';
import { RedisResourceStore } from '../lib/resource-store/redis-resource-store.ts';
import { DataProductController } from '../operator/controller.ts';
import { classifyFailure, postgresFailure, redisFailure } from '../operator/failures.ts';
import {
  StatusBuilder,
  phaseOf,
  pipelineStatus,
  setCondition,
  storeFailedStatus,
  storeReadyStatus,
  type Condition,
} from '../operator/product-status.ts';
import { ProvisioningError } from '../operator/provisioning-error.ts';
import { redisEndpoint } from '../operator/redis-access.ts';
import { pipelineSpec } from '../operator/reconciler.ts';
import { scramSha256Verifier } from '../operator/scram.ts';
import { postgresIdentifier, productStoreNames, topicStreamName } from '../operator/store-names.ts';
import { WorkQueue } from '../operator/work-queue.ts';
import type { PipelineState } from '../worker/pipeline-runner.ts';
import { dropPrefix, testRedis, uniquePrefix } from './helpers/redis.ts';
import { orderSpec, waitFor } from './operator-helpers.ts';

describe('store names', () => {
  it('names Postgres objects dp_<ns>_<name>_<hash>, at most 63 characters, never colliding', () => {
    const a = postgresIdentifier({ namespace: 'a-b', name: 'c' });
    const b = postgresIdentifier({ namespace: 'a', name: 'b-c' });
    assert.match(a, /^dp_a_b_c_[0-9a-f]{8}$/);
    assert.notEqual(a, b);
    const long = postgresIdentifier({ namespace: 'n'.repeat(63), name: 'm'.repeat(63) });
    const long2 = postgresIdentifier({ namespace: 'n'.repeat(63), name: `${'m'.repeat(62)}x` });
    assert.ok(long.length <= 63 && long2.length <= 63);
    assert.notEqual(long, long2);
    for (const id of [a, b, long]) assert.match(id, new RegExp(SQL_IDENTIFIER));
    assert.equal(postgresIdentifier({ namespace: 'a-b', name: 'c' }), a);
  });

  it('keeps two Offtakes with different prefixes apart on a shared Postgres and Redis', () => {
    const ref = { namespace: 'checkout', name: 'eu-orders' };
    const ours = productStoreNames('offtake', ref);
    const theirs = productStoreNames('offtake-staging', ref);
    assert.notEqual(theirs.postgres.schema, ours.postgres.schema);
    assert.notEqual(theirs.postgres.role, ours.postgres.role);
    assert.notEqual(theirs.redis.user, ours.redis.user);
    assert.equal(theirs.redis.user, 'offtake-staging:dp:checkout:eu-orders');
    // The default prefix keeps the names it always had: existing products are found again.
    assert.equal(ours.postgres.schema, postgresIdentifier(ref));
    assert.match(theirs.postgres.schema, new RegExp(SQL_IDENTIFIER));
  });

  it('keeps tombstones and checkpoints outside the record prefix, and prefixes apart', () => {
    const names = productStoreNames('offtake', { namespace: 'checkout', name: 'eu-orders' });
    assert.equal(names.redis.user, 'dp:checkout:eu-orders');
    assert.equal(names.redis.productPrefix, 'offtake:dp:checkout:eu-orders:');
    assert.equal(names.redis.keyPrefix, 'offtake:dp:checkout:eu-orders:b1:');
    assert.equal(names.redis.currentKey, 'offtake:dp:checkout:eu-orders:current');
    // Readers may read the product prefix: the sink's own keys stay outside it.
    assert.ok(!names.redis.tombstonePrefix.startsWith(names.redis.productPrefix));
    assert.ok(!names.redis.checkpointKey.startsWith(names.redis.productPrefix));
    const other = productStoreNames('offtake', { namespace: 'checkout', name: 'eu-orders-2' });
    assert.ok(!other.redis.productPrefix.startsWith(names.redis.productPrefix));
    // Builds of one product are apart, and none reaches the pointer key.
    const build2 = productStoreNames('offtake', { namespace: 'checkout', name: 'eu-orders', build: 2 });
    assert.equal(build2.redis.keyPrefix, 'offtake:dp:checkout:eu-orders:b2:');
    for (const n of [names, build2]) {
      assert.ok(n.redis.keyPrefix.startsWith(names.redis.productPrefix));
      assert.ok(!names.redis.currentKey.startsWith(n.redis.keyPrefix));
    }
    assert.notEqual(build2.redis.checkpointKey, names.redis.checkpointKey);
    assert.notEqual(build2.postgres.storageTable('t'), names.postgres.storageTable('t'));
    assert.equal(build2.postgres.schema, names.postgres.schema);
    assert.throws(() => productStoreNames('offtake', { namespace: 'Bad*', name: 'x' }), /DNS-1123/);
  });

  it('names a derived stream <namespace>.<name> unless the spec names it', () => {
    const ref = { namespace: 'checkout', name: 'feed' };
    assert.equal(topicStreamName(ref, orderSpec('topic')), 'checkout.feed');
    const spec = orderSpec('topic');
    spec.target.topic = { stream: 'big-orders' };
    assert.equal(topicStreamName(ref, spec), 'big-orders');
  });

  it('leaves deletionPolicy out of the pipeline spec', () => {
    const spec = { ...orderSpec('redis'), deletionPolicy: 'Retain' as const };
    assert.equal(pipelineSpec(spec).deletionPolicy, undefined);
    assert.equal(spec.deletionPolicy, 'Retain');
  });
});

describe('status', () => {
  const t0 = new Date('2030-01-01T00:00:00Z');
  const t1 = new Date('2030-01-01T00:01:00Z');

  it('moves lastTransitionTime only when a condition flips', () => {
    let conditions: Condition[] = setCondition(
      undefined,
      { type: 'Ready', status: 'False', reason: 'Seeding', message: 'a' },
      1,
      t0,
    );
    conditions = setCondition(
      conditions,
      { type: 'Ready', status: 'False', reason: 'TailFailing', message: 'b' },
      2,
      t1,
    );
    assert.equal(conditions[0].lastTransitionTime, '2030-01-01T00:00:00Z');
    assert.equal(conditions[0].reason, 'TailFailing');
    assert.equal(conditions[0].observedGeneration, 2);
    conditions = setCondition(
      conditions,
      { type: 'Ready', status: 'True', reason: 'Current', message: 'c' },
      2,
      t1,
    );
    assert.equal(conditions[0].lastTransitionTime, '2030-01-01T00:01:00Z');
    assert.equal(conditions.length, 1);
  });

  it('sums conditions up in a phase', () => {
    const b = new StatusBuilder(undefined, 3, t0);
    assert.equal(b.build().phase, 'Pending');
    storeFailedStatus(b, { reason: 'PostgresUnavailable', message: 'down' });
    const failed = b.build();
    assert.equal(failed.phase, 'Failed');
    assert.equal(failed.observedGeneration, 3);
    storeReadyStatus(b, 'ok');
    assert.equal(phaseOf(b.build().conditions!), 'Failed', 'Ready still carries the failure');
  });

  const state = (
    over: Partial<PipelineState> = {},
    seed: Partial<PipelineState['seed']> = {},
  ): PipelineState => ({
    phase: 'seeding',
    runId: 'r',
    seed: {
      highWaterMark: { orders: '5-0' },
      processed: 412,
      written: 400,
      deadLettered: 0,
      total: 1000,
      eventsPerSecond: 95,
      etaSeconds: 7,
      chunks: { total: 4, done: 1 },
      startedAt: '2030-01-01T00:00:00.000Z',
      ...seed,
    },
    tail: null,
    lag: null,
    checkpoint: null,
    deadLettered: 0,
    deadLetterStream: 'checkout.x.dlq',
    ...over,
  });
  const health = { maxDeadLetterRatio: 0.1, minEventsForRatio: 100 };

  it('shows seed progress while seeding', () => {
    const status = pipelineStatus(
      storeReadyStatus(new StatusBuilder(undefined, 1, t0), 'ok'),
      state(),
      health,
    ).build();
    assert.equal(status.phase, 'Seeding');
    const seeded = status.conditions!.find((c) => c.type === 'Seeded')!;
    assert.equal(seeded.reason, 'Replaying');
    assert.equal(seeded.message, '412 of 1000 events');
    assert.deepEqual(status.seed, {
      highWaterMark: '5-0',
      processed: 412,
      written: 400,
      deadLettered: 0,
      total: 1000,
      percent: 41,
      eventsPerSecond: 95,
      etaSeconds: 7,
      startedAt: '2030-01-01T00:00:00.000Z',
    });
  });

  it('is Ready once tailing, and not Ready with a failing tail or too many dead letters', () => {
    const tailing = state(
      {
        phase: 'tailing',
        lag: { events: 0, seconds: 0 },
        checkpoint: { orders: '9-0' },
        tail: { processed: 10, written: 10, deadLettered: 0, updatedAt: '' },
      },
      { completedAt: '2030-01-01T00:00:05.000Z', processed: 1000, total: 1000 },
    );
    const ready = pipelineStatus(
      storeReadyStatus(new StatusBuilder(undefined, 1, t0), 'ok'),
      tailing,
      health,
    ).build();
    assert.equal(ready.phase, 'Ready');
    assert.deepEqual(ready.lag, { events: 0, seconds: 0 });
    assert.equal(ready.checkpoint, '9-0');
    const failing = pipelineStatus(
      new StatusBuilder(ready, 1, t1),
      { ...tailing, error: 'connection lost' },
      health,
    ).build();
    assert.equal(failing.conditions!.find((c) => c.type === 'Ready')!.reason, 'TailFailing');
    assert.equal(failing.phase, 'Failed');
    const dead = pipelineStatus(
      new StatusBuilder(ready, 1, t1),
      { ...tailing, deadLettered: 200 },
      health,
    ).build();
    const readyCondition = dead.conditions!.find((c) => c.type === 'Ready')!;
    assert.equal(readyCondition.reason, 'DeadLetterRateHigh');
    assert.match(readyCondition.message!, /checkout\.x\.dlq/);
    const failedSeed = pipelineStatus(
      new StatusBuilder(undefined, 1, t1),
      state({ phase: 'failed', error: 'boom' }),
      health,
    ).build();
    assert.equal(failedSeed.conditions!.find((c) => c.type === 'Seeded')!.reason, 'SeedFailed');
  });
});

describe('failures', () => {
  it('tells unreachable servers, refused logins and missing privileges apart', () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5433'), { code: 'ECONNREFUSED' });
    assert.equal(postgresFailure(refused, 'h:1', 'x').reason, 'PostgresUnavailable');
    assert.equal(
      postgresFailure(
        Object.assign(new Error('permission denied to create role'), { code: '42501' }),
        'h:1',
        'x',
      ).reason,
      'PermissionDenied',
    );
    assert.equal(
      postgresFailure(
        Object.assign(new Error('password authentication failed'), { code: '28P01' }),
        'h:1',
        'x',
      ).reason,
      'PostgresAuthFailed',
    );
    assert.equal(redisFailure(new Error('NOPERM no'), 'x').reason, 'PermissionDenied');
    assert.deepEqual(classifyFailure(new ProvisioningError('StreamInUse', 'taken', { terminal: true })), {
      reason: 'StreamInUse',
      message: 'taken',
      terminal: true,
    });
    assert.equal(classifyFailure(new Error('x')).terminal, false);
  });

  it('makes SCRAM verifiers and reads Redis endpoints without credentials', () => {
    assert.match(
      scramSha256Verifier('pw'),
      /^SCRAM-SHA-256\$4096:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$/,
    );
    assert.deepEqual(redisEndpoint('rediss://u:p@redis.internal:6380/2'), {
      scheme: 'rediss',
      host: 'redis.internal',
      port: 6380,
      db: 2,
    });
  });
});

describe('work queue', () => {
  it('queues a key once, hands it to one worker at a time, and requeues it after done when added meanwhile', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('a');
    q.add('b');
    assert.equal(q.length, 2);
    assert.equal(await q.get(), 'a');
    q.add('a');
    assert.equal(await q.get(), 'b');
    assert.equal(q.length, 0, 'a is being processed: not handed out again');
    q.done('a');
    assert.equal(await q.get(), 'a');
    q.done('a');
    q.done('b');
    assert.equal(q.length, 0);
    q.shutDown();
    assert.equal(await q.get(), undefined);
  });

  it('backs off exponentially per key up to the cap, and forgets on success', () => {
    const q = new WorkQueue({ baseDelayMs: 100, maxDelayMs: 1000 });
    assert.deepEqual(
      [1, 2, 3, 4, 5].map(() => q.addRateLimited('k')),
      [100, 200, 400, 800, 1000],
    );
    q.forget('k');
    assert.equal(q.addRateLimited('k'), 100);
    q.shutDown();
  });

  it('keeps the earliest of several delayed adds', async () => {
    const q = new WorkQueue();
    q.addAfter('k', 10_000);
    q.addAfter('k', 20);
    const got = await Promise.race([q.get(), delay(2000).then(() => 'late')]);
    assert.equal(got, 'k');
    q.shutDown();
  });
});

describe('controller', () => {
  let redis: Redis;
  let prefix: string;

  before(() => {
    redis = testRedis();
    prefix = uniquePrefix('controller');
  });

  after(async () => {
    await dropPrefix(redis, prefix);
    redis.disconnect();
  });

  const input = (name: string) => ({ metadata: { name, namespace: 'ns' }, spec: orderSpec('redis') });

  it('reconciles listed and watched products, one at a time each, not on status writes, retrying failures', async () => {
    const store = new RedisResourceStore(redis, { prefix: `${prefix}:a` });
    await store.create(input('listed'));
    const calls: string[] = [];
    const running = new Set<string>();
    let overlap = false;
    let failuresLeft = 2;
    const controller = new DataProductController({
      store,
      logger: createLogger('silent'),
      concurrency: 4,
      backoff: { baseDelayMs: 20, maxDelayMs: 100 },
      reconciler: {
        reconcile: async (namespace, name) => {
          const key = `${namespace}/${name}`;
          if (running.has(key)) overlap = true;
          running.add(key);
          calls.push(name);
          await delay(30);
          running.delete(key);
          if (name === 'flaky' && failuresLeft-- > 0) throw new Error('try again');
          return {};
        },
      },
    });
    await controller.start();
    try {
      await waitFor(() => calls.includes('listed'), 'listed product reconciled', 5000);
      await store.create(input('watched'));
      await waitFor(() => calls.includes('watched'), 'watched product reconciled', 5000);
      await store.create(input('flaky'));
      await waitFor(
        () => calls.filter((c) => c === 'flaky').length === 3,
        'flaky product retried twice',
        5000,
      );
      const before = calls.length;
      await store.updateStatus('ns', 'watched', { phase: 'Ready' });
      await delay(300);
      assert.equal(calls.length, before, 'a status write queues nothing');
      for (let i = 0; i < 5; i++)
        await store.replace({
          ...input('watched'),
          spec: { ...orderSpec('redis'), filter: `event.data.n == ${i}` },
        });
      await waitFor(
        () => running.size === 0 && calls.filter((c) => c === 'watched').length >= 2,
        'spec changes reconciled',
        5000,
      );
      assert.equal(overlap, false, 'never two reconciles of one product at once');
    } finally {
      await controller.stop();
      await store.close();
    }
  });

  it('lists again when its watch has expired and misses no product', async () => {
    const store = new RedisResourceStore(redis, { prefix: `${prefix}:b`, watchHistory: 1 });
    const seen = new Set<string>();
    let relists = 0;
    const logger = pino(
      { level: 'info' },
      {
        write: (line: string) => {
          if (line.includes('watch expired')) relists++;
        },
      },
    );
    const controller = new DataProductController({
      store,
      logger,
      watchRetryMs: 20,
      reconciler: {
        reconcile: async (_namespace, name) => {
          seen.add(name);
          await delay(5);
          return {};
        },
      },
    });
    await controller.start();
    try {
      await Promise.all(Array.from({ length: 40 }, (_, i) => store.create(input(`p${i}`))));
      await waitFor(() => seen.size === 40 || `${seen.size} of 40`, 'every product reconciled', 10_000);
      // Forty writes against a history of one: the watch falls behind and has to list again.
      assert.ok(relists > 0, 'the watch expired and the controller listed again');
    } finally {
      await controller.stop();
      await store.close();
    }
  });
});
