/**
 * Fifty products submitted at once, through the HTTP API of an embedded Offtake against the real
 * Redis and Postgres, a third each of redis, topic and postgres targets over one small event log:
 * all reach Ready; a sample of each target type holds exactly the right data, read with its
 * delivered credentials; deleting them all at once removes everything each one made.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import pg from 'pg';
import type { StoredDataProduct } from '../lib/resource-store/resource-store.ts';
import { createLogger } from '../lib/logger.ts';
import { startEmbedded, type RunningEmbedded } from '../operator/embedded.ts';
import { isReady as readyForGeneration } from '../cli/progress-view.ts';
import { dropPrefix, testRedis, uniquePrefix } from './helpers/redis.ts';
import {
  ApiClient,
  POSTGRES_URL,
  embeddedTestConfig,
  dropPostgresLeftovers,
  expectedOrders,
  leftovers,
  orderEvents,
  orderSpec,
  waitFor,
  type OrderRow,
} from './operator-helpers.ts';

const PRODUCTS = 50;
const ORDERS = 100;
const TYPES = ['redis', 'topic', 'postgres'] as const;

let redis: Redis;
let pool: pg.Pool;
let prefix: string;
let namespace: string;
let embedded: RunningEmbedded;
let api: ApiClient;

before(async () => {
  redis = testRedis();
  pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
  prefix = uniquePrefix('scale');
  namespace = `sc-${randomBytes(3).toString('hex')}`;
  // The default worker settings: fifty live tails share one worker and its one blocking connection.
  const config = embeddedTestConfig(prefix);
  embedded = await startEmbedded(config, createLogger('silent'), {
    controller: { backoff: { baseDelayMs: 100, maxDelayMs: 2000 } },
    reconciler: { statusIntervalMs: 1000, progressIntervalMs: 300 },
    worker: { progressIntervalMs: 200 },
  });
  api = new ApiClient(embedded.url);
});

after(async () => {
  await embedded?.close();
  await dropPostgresLeftovers(pool, redis, namespace);
  await dropPrefix(redis, prefix);
  await pool.end();
  redis.disconnect();
});

/** The products of the test namespace, in one list call. */
async function listed(): Promise<StoredDataProduct[]> {
  const res = await api.request('GET', `/v1/namespaces/${namespace}/dataproducts`);
  assert.equal(res.status, 200);
  return (res.body as { items: StoredDataProduct[] }).items;
}

function productRedis(uri: string): Redis {
  return new Redis(uri, { enableReadyCheck: false, maxRetriesPerRequest: 1, lazyConnect: true });
}

/** The rows a product's store holds, read with its delivered credentials. */
async function rowsOf(
  type: (typeof TYPES)[number],
  connection: { uri: string; [part: string]: unknown },
): Promise<Map<string, OrderRow>> {
  const rows = new Map<string, OrderRow>();
  if (type === 'postgres') {
    const client = new pg.Client({ connectionString: connection.uri });
    await client.connect();
    try {
      const result = await client.query<{ _key: string; customer: string; amount: string; status: string }>(
        `SELECT _key, customer, amount::text AS amount, status FROM ${connection.table as string}`,
      );
      for (const r of result.rows) {
        rows.set(r._key, { customer: r.customer, amount: Number(r.amount), status: r.status });
      }
    } finally {
      await client.end();
    }
    return rows;
  }
  const client = productRedis(connection.uri);
  await client.connect();
  try {
    if (type === 'topic') {
      for (const [, fields] of await client.xrange(connection.key as string, '-', '+')) {
        const event = JSON.parse(fields[1]) as { subject: string; data: OrderRow };
        rows.set(event.subject, event.data);
      }
    } else {
      for (const key of expectedOrders(ORDERS).keys()) {
        const hash = await client.hgetall(`${connection.keyPrefix as string}${key}`);
        if (Object.keys(hash).length > 0) {
          rows.set(key, { customer: hash.customer, amount: Number(hash.amount), status: hash.status });
        }
      }
    }
  } finally {
    client.disconnect();
  }
  return rows;
}

describe('fifty products at once', () => {
  const refs = Array.from({ length: PRODUCTS }, (_, i) => ({
    ref: { namespace: '', name: `p-${String(i).padStart(2, '0')}` },
    type: TYPES[i % TYPES.length],
  }));

  it('all reach Ready, and a sample of each target type holds the right data', async () => {
    for (const p of refs) p.ref.namespace = namespace;
    await api.publish('orders', orderEvents(0, ORDERS));
    await Promise.all(
      refs.map((p) =>
        api.create(p.ref, orderSpec(p.type, 'orders', `orders_${p.ref.name.replace('-', '_')}`)),
      ),
    );
    await waitFor(
      async () => {
        const items = await listed();
        const ready = items.filter(readyForGeneration).length;
        const failed = items.filter((p) => p.status?.phase === 'Failed').map((p) => p.metadata.name);
        if (failed.length > 0) throw new Error(`failed: ${failed.join(', ')}`);
        const waiting = items.find((p) => !readyForGeneration(p));
        return (
          (items.length === PRODUCTS && ready === PRODUCTS) ||
          `${ready} of ${PRODUCTS} Ready; e.g. ${waiting?.metadata.name}: ${JSON.stringify(waiting?.status)}`
        );
      },
      'all products Ready',
      110_000,
    );

    const expected = new Map([...expectedOrders(ORDERS)].sort());
    for (const type of TYPES) {
      const sample = refs.filter((p) => p.type === type).at(-1)!;
      const connection = await api.connection(sample.ref);
      const rows = await rowsOf(type, connection);
      assert.deepEqual(new Map([...rows].sort()), expected, `${sample.ref.name} (${type})`);
    }
  });

  it('deleting them all at once leaves nothing of any of them', async () => {
    const statuses = await Promise.all(refs.map((p) => api.delete(p.ref)));
    assert.ok(statuses.every((s) => s === 202));
    await waitFor(
      async () => {
        const left = (await listed()).length;
        return left === 0 || `${left} still there`;
      },
      'all products gone',
      110_000,
    );
    for (const p of refs) {
      const topic = p.type === 'topic' ? `${namespace}.${p.ref.name}` : undefined;
      assert.deepEqual(await leftovers(redis, pool, prefix, p.ref, topic), [], p.ref.name);
    }
  });
});
