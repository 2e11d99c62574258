/**
 * Spec changes re-seed blue/green: the new build is seeded beside the one readers use, the
 * status shows both while it happens, readers switch to it in one step once it is seeded —
 * a reader polling all along (with the product's own credentials) sees the old data or the new,
 * never an empty or half-built store — and the old build is dropped afterwards. A change
 * reverted before its build is ready cancels that build. Real Redis and Postgres, embedded mode.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { DataProductSpec } from '../crds/generated/types.ts';
import { createLogger } from '../lib/logger.ts';
import { startEmbedded, type RunningEmbedded } from '../operator/embedded.ts';
import { productStoreNames } from '../operator/store-names.ts';
import { pipelineKeys, type ProductRef } from '../worker/pipeline-keys.ts';
import { dropPrefix, testRedis, uniquePrefix } from './helpers/redis.ts';
import {
  ApiClient,
  POSTGRES_URL,
  embeddedTestConfig,
  dropPostgresLeftovers,
  isReady,
  leftovers,
  orderEvents,
  orderSpec,
  scanKeys,
  waitFor,
} from './operator-helpers.ts';

/** Orders in the log: 0..ORDERS-1; the old spec keeps the EU half, the new one all of them. */
const ORDERS = 6000;
const logger = createLogger('silent');

let redis: Redis;
let pool: pg.Pool;
let prefix: string;
let namespace: string;
let embedded: RunningEmbedded;
let api: ApiClient;

before(async () => {
  redis = testRedis();
  pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 4 });
  prefix = uniquePrefix('bluegreen');
  namespace = `bg-${randomBytes(3).toString('hex')}`;
  const config = embeddedTestConfig(prefix);
  embedded = await startEmbedded(config, logger, {
    controller: { backoff: { baseDelayMs: 100, maxDelayMs: 2000 } },
    reconciler: { statusIntervalMs: 300, progressIntervalMs: 200 },
    // Small chunks and batches: the new build's seed takes a while, so readers poll through it.
    runner: { chunkEvents: 300 },
    worker: { seedBatchSize: 25, seedConcurrency: 1, progressIntervalMs: 100 },
  });
  api = new ApiClient(embedded.url);
  await api.publish('orders', orderEvents(0, ORDERS));
});

after(async () => {
  await embedded?.close();
  await dropPostgresLeftovers(pool, redis, namespace);
  await dropPrefix(redis, prefix);
  await pool.end();
  redis.disconnect();
});

/** The changed spec: every region, and one more field (a new column for postgres). */
function widened(spec: DataProductSpec): DataProductSpec {
  const next = structuredClone(spec);
  next.filter = 'true';
  next.transform.fields = { ...next.transform.fields, region: 'event.data.region' };
  if (next.target.postgres !== undefined) next.target.postgres.columns.region = 'text';
  return next;
}

async function replaceSpec(ref: ProductRef, spec: DataProductSpec): Promise<number> {
  const current = await api.request('GET', `/v1/namespaces/${ref.namespace}/dataproducts/${ref.name}`);
  const put = await api.request('PUT', `/v1/namespaces/${ref.namespace}/dataproducts/${ref.name}`, {
    apiVersion: 'offtake.dev/v1alpha1',
    kind: 'DataProduct',
    metadata: { ...ref, resourceVersion: current.body.metadata.resourceVersion },
    spec,
  });
  assert.equal(put.status, 200, JSON.stringify(put.body));
  return put.body.metadata.generation as number;
}

/**
 * Polls a reader until `stop()`; every observation must be one of the allowed ones. Returns
 * how many times each was seen.
 */
async function pollReader(
  read: () => Promise<string>,
  allowed: readonly string[],
  stop: () => boolean,
): Promise<Map<string, number>> {
  const seen = new Map<string, number>();
  while (!stop()) {
    const observation = await read();
    assert.ok(allowed.includes(observation), `a reader saw ${observation}`);
    seen.set(observation, (seen.get(observation) ?? 0) + 1);
  }
  return seen;
}

/** Watches the status until `stop()`; true when it showed an active and a next build at once. */
async function sawBothBuilds(ref: ProductRef, stop: () => boolean): Promise<boolean> {
  let both = false;
  while (!stop()) {
    const s = await api.status(ref);
    const builds = s?.status.builds;
    if (builds?.active !== undefined && builds.next !== undefined) {
      both = true;
      assert.ok((builds.next.build ?? 0) > (builds.active.build ?? 0));
      assert.equal(s!.status.conditions?.find((c) => c.type === 'Ready')?.reason, 'Reseeding');
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return both;
}

describe('blue/green re-seed on a spec change', () => {
  it('postgres: readers see the old table or the new one, never an empty or partial one', async () => {
    const ref = { namespace, name: 'orders-pg' };
    const spec = orderSpec('postgres', 'orders', 'orders');
    await api.create(ref, spec);
    await waitFor(async () => isReady(await api.status(ref)), 'first build Ready', 120_000);
    const connection = await api.connection(ref);
    const reader = new pg.Client({ connectionString: connection.uri });
    await reader.connect();
    try {
      const read = async () => {
        // One statement, one snapshot: the row count and whether the new column exists.
        const { rows } = await reader.query<{ n: number; cols: number }>(
          `SELECT (SELECT count(*)::int FROM orders) AS n,
                  (SELECT count(*)::int FROM information_schema.columns
                    WHERE table_name = 'orders' AND column_name = 'region') AS cols`,
        );
        return `${rows[0].n} rows, ${rows[0].cols === 1 ? 'new' : 'old'} columns`;
      };
      const before = await read();
      assert.equal(before, `${ORDERS / 2} rows, old columns`);
      const generation = await replaceSpec(ref, widened(spec));
      let done = false;
      const reading = pollReader(read, [before, `${ORDERS} rows, new columns`], () => done);
      const watching = sawBothBuilds(ref, () => done);
      await waitFor(
        async () => {
          const s = await api.status(ref);
          return s?.generation === generation && isReady(s);
        },
        'the new build Ready',
        180_000,
      );
      done = true;
      const seen = await reading;
      assert.equal(await watching, true, 'the status showed both builds while the new one seeded');
      assert.ok((seen.get(before) ?? 0) > 0, 'the reader kept reading the old build during the seed');
      assert.equal(await read(), `${ORDERS} rows, new columns`);
    } finally {
      await reader.end();
    }
    // The old build is gone: its storage table, its pipeline's runtime state.
    const { schema } = productStoreNames(prefix, ref).postgres;
    const tables = await pool.query<{ tablename: string }>(
      "SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename LIKE '\\_offtake\\_b%'",
      [schema],
    );
    assert.deepEqual(
      tables.rows.map((r) => r.tablename),
      [productStoreNames(prefix, { ...ref, build: 2 }).postgres.storageTable('orders')],
    );
    assert.equal(await redis.exists(pipelineKeys(prefix, ref).state), 0, 'build 1 runtime state dropped');
    assert.equal(await redis.exists(pipelineKeys(prefix, { ...ref, build: 2 }).state), 1);
  });

  it('redis: readers following the current-build key see one whole build at a time', async () => {
    const ref = { namespace, name: 'orders-cache' };
    const spec = orderSpec('redis');
    await api.create(ref, spec);
    await waitFor(async () => isReady(await api.status(ref)), 'first build Ready', 120_000);
    const connection = await api.connection(ref);
    const reader = new Redis(connection.uri, { enableReadyCheck: false, lazyConnect: true });
    await reader.connect();
    const sample = ['o-0', 'o-1', 'o-2', 'o-3', `o-${ORDERS - 2}`, `o-${ORDERS - 1}`];
    try {
      const read = async () => {
        const keyPrefix = await reader.get(connection.currentKey as string);
        const found = await Promise.all(sample.map(async (k) => (await reader.exists(keyPrefix + k)) === 1));
        return sample.filter((_, i) => found[i]).join(',');
      };
      const oldView = sample.filter((k) => Number(k.slice(2)) % 2 === 0).join(',');
      assert.equal(await read(), oldView);
      const generation = await replaceSpec(ref, widened(spec));
      let done = false;
      const reading = pollReader(read, [oldView, sample.join(',')], () => done);
      const watching = sawBothBuilds(ref, () => done);
      await waitFor(
        async () => {
          const s = await api.status(ref);
          return s?.generation === generation && isReady(s);
        },
        'the new build Ready',
        180_000,
      );
      done = true;
      const seen = await reading;
      assert.equal(await watching, true, 'the status showed both builds while the new one seeded');
      assert.ok((seen.get(oldView) ?? 0) > 0, 'the reader kept reading the old build during the seed');
      assert.equal(await read(), sample.join(','));
      const after = await api.connection(ref);
      assert.equal(after.keyPrefix, productStoreNames(prefix, { ...ref, build: 2 }).redis.keyPrefix);
      assert.equal(await reader.hget(`${after.keyPrefix}o-1`, 'region'), 'US');
    } finally {
      reader.disconnect();
    }
    const oldBuild = productStoreNames(prefix, ref).redis;
    assert.deepEqual(await scanKeys(redis, `${oldBuild.keyPrefix}*`), [], 'build 1 records dropped');
    assert.equal(await redis.exists(oldBuild.checkpointKey), 0);
  });

  it('a change reverted before its build is ready cancels that build', async () => {
    const ref = { namespace, name: 'orders-revert' };
    const spec = orderSpec('redis');
    await api.create(ref, spec);
    await waitFor(async () => isReady(await api.status(ref)), 'first build Ready', 120_000);
    await replaceSpec(ref, widened(spec));
    await waitFor(
      async () => (await api.status(ref))?.status.builds?.next?.build === 2,
      'the next build to start seeding',
    );
    const generation = await replaceSpec(ref, spec);
    await waitFor(
      async () => {
        const s = await api.status(ref);
        return s?.generation === generation && isReady(s) && s.status.builds?.next === undefined;
      },
      'the product back on its first build',
      60_000,
    );
    assert.equal((await api.status(ref))!.status.builds?.active?.build, 1);
    const build2 = { ...ref, build: 2 };
    await waitFor(
      async () =>
        (await scanKeys(redis, `${productStoreNames(prefix, build2).redis.keyPrefix}*`)).length === 0 &&
        (await redis.exists(pipelineKeys(prefix, build2).state)) === 0,
      'the cancelled build dropped',
    );
  });

  it('deletes every build of every product', async () => {
    const refs = ['orders-pg', 'orders-cache', 'orders-revert'].map((name) => ({ namespace, name }));
    for (const ref of refs) assert.equal(await api.delete(ref), 202);
    for (const ref of refs) await waitFor(async () => (await api.status(ref)) === null, `${ref.name} gone`);
    for (const ref of refs) {
      for (const build of [1, 2]) {
        assert.deepEqual(
          await leftovers(redis, pool, prefix, { ...ref, build }),
          [],
          `${ref.name} build ${build}`,
        );
      }
    }
  });
});
