/**
 * The operator end to end, through the HTTP API of an embedded Offtake (API, operator and
 * workers in this process) against the real Redis and Postgres: products of each target type go
 * StoreReady → Seeded → Ready with the right data, read with the delivered URIs by standard
 * clients (psql, redis-cli) and drivers; new events show up; each product's credentials reach its
 * own store and nothing else; a failure only a spec change can fix is shown and fixed by one; a
 * changed spec re-seeds; deletion removes everything (checked on the servers), Retain keeps the
 * data and drops only access.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import pg from 'pg';
import { createLogger } from '../lib/logger.ts';
import { startEmbedded, type RunningEmbedded } from '../operator/embedded.ts';
import { productStoreNames } from '../operator/store-names.ts';
import { dropPrefix, testRedis, uniquePrefix } from './helpers/redis.ts';
import {
  ApiClient,
  POSTGRES_URL,
  embeddedTestConfig,
  condition,
  dropPostgresLeftovers,
  expectedOrders,
  isReady,
  leftovers,
  orderEvents,
  orderSpec,
  scanKeys,
  waitFor,
  type OrderRow,
} from './operator-helpers.ts';

const run = promisify(execFile);
const logger = createLogger('silent');

let redis: Redis;
let pool: pg.Pool;
let prefix: string;
let namespace: string;
let embedded: RunningEmbedded;
let api: ApiClient;
let platformSchema: string;

before(async () => {
  redis = testRedis();
  pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 4 });
  prefix = uniquePrefix('operator');
  namespace = `op-${randomBytes(3).toString('hex')}`;
  platformSchema = `test_platform_${randomBytes(3).toString('hex')}`;
  await pool.query(`CREATE SCHEMA ${platformSchema}`);
  await pool.query(`CREATE TABLE ${platformSchema}.secrets (v text)`);
  await pool.query(`INSERT INTO ${platformSchema}.secrets VALUES ('platform-only')`);
  const config = embeddedTestConfig(prefix);
  embedded = await startEmbedded(config, logger, {
    controller: { backoff: { baseDelayMs: 100, maxDelayMs: 2000 } },
    reconciler: { statusIntervalMs: 500, progressIntervalMs: 500 },
    runner: { chunkEvents: 100, stopTimeoutMs: 10_000 },
    worker: { lockDurationMs: 5000, stalledIntervalMs: 2000, progressIntervalMs: 100 },
  });
  api = new ApiClient(embedded.url);
});

after(async () => {
  await embedded?.close();
  await dropPostgresLeftovers(pool, redis, namespace);
  await pool.query(`DROP SCHEMA IF EXISTS ${platformSchema} CASCADE`);
  await dropPrefix(redis, prefix);
  await pool.end();
  redis.disconnect();
});

/** A connection made with a product's delivered Redis URI (no INFO ready check: the user may not run INFO). */
function productRedis(uri: string): Redis {
  const client = new Redis(uri, {
    enableReadyCheck: false,
    maxRetriesPerRequest: 1,
    lazyConnect: true,
    retryStrategy: () => null,
  });
  // A refused login rejects the command that needed it; as an event it would only be printed.
  client.on('error', () => undefined);
  return client;
}

async function postgresRows(uri: string, table: string): Promise<Map<string, OrderRow>> {
  const client = new pg.Client({ connectionString: uri });
  await client.connect();
  try {
    const { rows } = await client.query<{ _key: string; customer: string; amount: string; status: string }>(
      `SELECT _key, customer, amount::text AS amount, status FROM ${table}`,
    );
    return new Map(
      rows.map((r) => [r._key, { customer: r.customer, amount: Number(r.amount), status: r.status }]),
    );
  } finally {
    await client.end();
  }
}

async function redisRows(
  uri: string,
  keyPrefix: string,
  keys: Iterable<string>,
): Promise<Map<string, OrderRow>> {
  const client = productRedis(uri);
  await client.connect();
  try {
    const out = new Map<string, OrderRow>();
    for (const key of keys) {
      const hash = await client.hgetall(keyPrefix + key);
      if (Object.keys(hash).length > 0) {
        out.set(key, { customer: hash.customer, amount: Number(hash.amount), status: hash.status });
      }
    }
    return out;
  } finally {
    client.disconnect();
  }
}

async function topicRows(uri: string, key: string): Promise<Map<string, OrderRow>> {
  const client = productRedis(uri);
  await client.connect();
  try {
    const out = new Map<string, OrderRow>();
    for (const [, fields] of await client.xrange(key, '-', '+')) {
      const event = JSON.parse(fields[1]) as { subject: string; data: OrderRow };
      out.set(event.subject, {
        customer: event.data.customer,
        amount: event.data.amount,
        status: event.data.status,
      });
    }
    return out;
  } finally {
    client.disconnect();
  }
}

function same(expected: Map<string, OrderRow>, actual: Map<string, OrderRow>): true | string {
  try {
    assert.deepEqual(new Map([...actual].sort()), new Map([...expected].sort()));
    return true;
  } catch {
    return `${actual.size} of ${expected.size} rows`;
  }
}

/** Expects a Redis command to be refused by the ACL. */
async function refused(promise: Promise<unknown>, what: string): Promise<void> {
  await assert.rejects(promise, /NOPERM/, `${what} must be refused`);
}

/** Expects a Postgres statement to be refused for lack of privilege. */
async function denied(client: pg.Client, sql: string): Promise<void> {
  await assert.rejects(
    client.query(sql),
    (err: { code?: string }) => err.code === '42501',
    `${sql} must be denied`,
  );
}

describe('operator, end to end through the API', () => {
  const orders = { namespace: '', name: 'eu-orders' };
  const ordersB = { namespace: '', name: 'eu-orders-b' };
  const cache = { namespace: '', name: 'eu-cache' };
  const feed = { namespace: '', name: 'eu-feed' };
  const products = [orders, ordersB, cache, feed];
  let connections: Record<string, { uri: string; [part: string]: unknown }> = {};

  it('provisions and seeds postgres, redis and topic products to Ready with the right data', async () => {
    for (const p of products) p.namespace = namespace;
    await api.publish('orders', orderEvents(0, 200));
    await api.create(orders, orderSpec('postgres'));
    await api.create(ordersB, orderSpec('postgres', 'orders', 'other_orders'));
    await api.create(cache, orderSpec('redis'));
    await api.create(feed, orderSpec('topic'));

    for (const p of products) {
      await waitFor(
        async () => isReady(await api.status(p)) || JSON.stringify((await api.status(p))?.status),
        `${p.name} Ready`,
        60_000,
      );
      const { status } = (await api.status(p))!;
      assert.equal(status.phase, 'Ready');
      for (const type of ['StoreReady', 'Seeded', 'Ready']) {
        const c = condition(status, type)!;
        assert.equal(c.status, 'True', `${p.name} ${type}`);
        assert.match(c.reason!, /^[A-Z][A-Za-z]+$/);
        assert.ok(c.message && c.lastTransitionTime && c.observedGeneration === 1);
      }
      assert.equal(status.seed!.processed, status.seed!.total);
      assert.ok(status.seed!.highWaterMark);
      assert.ok(status.connection?.secretRef?.name);
    }
    connections = Object.fromEntries(
      await Promise.all(products.map(async (p) => [p.name, await api.connection(p)])),
    );

    const expected = expectedOrders(200);
    assert.equal(same(expected, await postgresRows(connections['eu-orders'].uri, 'eu_orders')), true);
    assert.equal(same(expected, await postgresRows(connections['eu-orders-b'].uri, 'other_orders')), true);
    const keyPrefix = connections['eu-cache'].keyPrefix as string;
    assert.equal(keyPrefix, productStoreNames(prefix, cache).redis.keyPrefix);
    assert.equal(
      same(expected, await redisRows(connections['eu-cache'].uri, keyPrefix, expected.keys())),
      true,
    );
    assert.equal(
      same(expected, await topicRows(connections['eu-feed'].uri, connections['eu-feed'].key as string)),
      true,
    );
  });

  it('delivers URIs that psql and redis-cli accept as they are', async () => {
    const psql = await run('psql', [connections['eu-orders'].uri, '-tAc', 'SELECT count(*) FROM eu_orders']);
    assert.equal(psql.stdout.trim(), String(expectedOrders(200).size));
    const cacheUri = connections['eu-cache'].uri;
    const cli = await run('redis-cli', [
      '-u',
      cacheUri,
      '--no-auth-warning',
      'HGET',
      `${connections['eu-cache'].keyPrefix as string}o-4`,
      'customer',
    ]);
    assert.equal(cli.stdout.trim(), 'c-4');
    const feedConnection = connections['eu-feed'];
    const xlen = await run('redis-cli', [
      '-u',
      feedConnection.uri,
      '--no-auth-warning',
      'XLEN',
      feedConnection.key as string,
    ]);
    assert.ok(Number(xlen.stdout.trim()) > 0);
    for (const part of ['host', 'port', 'user', 'password', 'database']) {
      assert.ok(connections['eu-orders'][part] !== undefined, part);
    }
    assert.equal(connections['eu-orders'].schema, productStoreNames(prefix, orders).postgres.schema);
    assert.equal(connections['eu-orders'].table, 'eu_orders');
    assert.equal(connections['eu-feed'].stream, `${namespace}.eu-feed`);
  });

  it('keeps every product current with new events, lag shown on status', async () => {
    await api.publish('orders', orderEvents(200, 300));
    const expected = expectedOrders(300);
    await waitFor(
      async () => same(expected, await postgresRows(connections['eu-orders'].uri, 'eu_orders')),
      'postgres current',
    );
    const keyPrefix = connections['eu-cache'].keyPrefix as string;
    await waitFor(
      async () => same(expected, await redisRows(connections['eu-cache'].uri, keyPrefix, expected.keys())),
      'redis current',
    );
    await waitFor(
      async () =>
        same(expected, await topicRows(connections['eu-feed'].uri, connections['eu-feed'].key as string)),
      'topic current',
    );
    await waitFor(async () => {
      const s = await api.status(orders);
      return s?.status.lag?.events === 0 && isReady(s);
    }, 'lag 0 on status');
  });

  it("gives each product's credentials their own store and nothing else", async () => {
    const a = new pg.Client({ connectionString: connections['eu-orders'].uri });
    await a.connect();
    try {
      const schemaA = productStoreNames(prefix, orders).postgres.schema;
      const schemaB = productStoreNames(prefix, ordersB).postgres.schema;
      assert.ok((await a.query(`SELECT count(*) FROM ${schemaA}.eu_orders`)).rows[0].count > 0);
      await denied(a, `SELECT * FROM ${schemaB}.other_orders`);
      await denied(a, `SELECT * FROM ${schemaB}._offtake_b1_other_orders`);
      await denied(a, `INSERT INTO ${schemaB}.other_orders (_key) VALUES ('x')`);
      await denied(a, `SELECT * FROM ${platformSchema}.secrets`);
      await denied(a, `SELECT * FROM ${schemaA}._offtake_b1_eu_orders`);
      await denied(a, `SELECT * FROM ${schemaA}._offtake_checkpoints`);
      await denied(a, `INSERT INTO ${schemaA}.eu_orders (_key) VALUES ('x')`);
      await denied(a, `DELETE FROM ${schemaA}.eu_orders`);
      await denied(a, `CREATE TABLE ${schemaA}.mine (v int)`);
      await denied(a, 'CREATE TABLE public.mine (v int)');
      await assert.rejects(
        a.query(`DROP VIEW ${schemaA}.eu_orders`),
        (err: { code?: string }) => err.code === '42501',
      );
      await assert.rejects(
        a.query(`ALTER ROLE ${productStoreNames(prefix, ordersB).postgres.role} PASSWORD 'x'`),
      );
      await assert.rejects(a.query('CREATE ROLE intruder'));
    } finally {
      await a.end();
    }
    // Password checked: the right user with another product's password is refused.
    const wrong = new URL(connections['eu-orders'].uri);
    wrong.password = connections['eu-orders-b'].password as string;
    const intruder = new pg.Client({ connectionString: wrong.toString() });
    await assert.rejects(intruder.connect());

    const c = productRedis(connections['eu-cache'].uri);
    await c.connect();
    try {
      const names = productStoreNames(prefix, cache).redis;
      assert.equal(await c.hget(`${names.keyPrefix}o-0`, 'customer'), 'c-0');
      await refused(c.hset(`${names.keyPrefix}o-0`, 'customer', 'x'), 'HSET on its own key');
      await refused(c.del(`${names.keyPrefix}o-0`), 'DEL on its own key');
      await refused(c.get(names.checkpointKey), 'reading its checkpoints');
      await refused(c.hgetall(names.checkpointKey), 'reading its checkpoints');
      await refused(c.get(`${names.tombstonePrefix}o-0`), 'reading its tombstones');
      await refused(c.call('KEYS', '*'), 'KEYS');
      await refused(c.call('SCAN', '0'), 'SCAN');
      await refused(c.call('FLUSHALL'), 'FLUSHALL');
      await refused(c.call('CONFIG', 'GET', '*'), 'CONFIG');
      await refused(c.call('INFO'), 'INFO');
      await refused(c.call('CLIENT', 'LIST'), 'CLIENT LIST');
      await refused(c.call('ACL', 'LIST'), 'ACL');
      await refused(c.hgetall(`${prefix}:resources:objects`), "the platform's resource store");
      await refused(c.xrange(`${prefix}:log:stream:{orders}`, '-', '+'), 'the source stream');
      await refused(c.xrange(connections['eu-feed'].key as string, '-', '+'), "another product's stream");
      await refused(c.call('PUBLISH', 'x', 'y'), 'PUBLISH');
    } finally {
      c.disconnect();
    }
    const f = productRedis(connections['eu-feed'].uri);
    await f.connect();
    try {
      assert.ok((await f.xlen(connections['eu-feed'].key as string)) > 0);
      await refused(f.xadd(connections['eu-feed'].key as string, '*', 'a', 'b'), 'XADD to its own stream');
      await refused(f.xrange(`${prefix}:log:stream:{orders}`, '-', '+'), 'the source stream');
      await refused(
        f.hgetall(`${productStoreNames(prefix, cache).redis.keyPrefix}o-0`),
        "another product's record",
      );
      await refused(f.call('KEYS', '*'), 'KEYS');
    } finally {
      f.disconnect();
    }
  });

  it('shows a failure only a spec change can fix, and recovers when the spec is fixed', async () => {
    const loop = { namespace, name: 'loop' };
    const spec = orderSpec('topic');
    spec.target.topic = { stream: 'orders' };
    await api.create(loop, spec);
    await waitFor(
      async () => condition((await api.status(loop))?.status, 'StoreReady')?.reason === 'TopicStreamIsSource',
      'terminal failure shown',
    );
    const { status } = (await api.status(loop))!;
    assert.equal(status.phase, 'Failed');
    assert.match(condition(status, 'Ready')!.message!, /source streams/);
    const current = await api.request('GET', `/v1/namespaces/${namespace}/dataproducts/loop`);
    spec.target.topic = { stream: `${namespace}.loop-out` };
    const put = await api.request('PUT', `/v1/namespaces/${namespace}/dataproducts/loop`, {
      apiVersion: 'offtake.dev/v1alpha1',
      kind: 'DataProduct',
      metadata: { name: 'loop', namespace, resourceVersion: current.body.metadata.resourceVersion },
      spec,
    });
    assert.equal(put.status, 200);
    await waitFor(async () => isReady(await api.status(loop)), 'fixed product Ready');
    assert.equal(await api.delete(loop), 202);
    await waitFor(async () => (await api.status(loop)) === null, 'loop deleted');
    assert.deepEqual(await leftovers(redis, pool, prefix, loop, `${namespace}.loop-out`), []);
  });

  it('re-seeds when the spec changes what the pipeline does', async () => {
    const current = await api.request('GET', `/v1/namespaces/${namespace}/dataproducts/eu-cache`);
    const spec = orderSpec('redis');
    spec.filter = "event.data.region == 'US'";
    const put = await api.request('PUT', `/v1/namespaces/${namespace}/dataproducts/eu-cache`, {
      apiVersion: 'offtake.dev/v1alpha1',
      kind: 'DataProduct',
      metadata: { name: 'eu-cache', namespace, resourceVersion: current.body.metadata.resourceVersion },
      spec,
    });
    assert.equal(put.status, 200);
    await waitFor(async () => {
      const s = await api.status(cache);
      return s?.generation === 2 && isReady(s);
    }, 're-seeded product Ready');
    const connection = await api.connection(cache);
    const keyPrefix = connection.keyPrefix as string;
    const all = [...Array(300).keys()].map((i) => `o-${i}`);
    const rows = await redisRows(connection.uri, keyPrefix, all);
    assert.ok(rows.size > 0);
    assert.ok(
      [...rows.keys()].every((k) => Number(k.slice(2)) % 2 === 1),
      'only US orders after the re-seed',
    );
  });

  it('deletes everything each product made, and nothing else', async () => {
    for (const p of products) assert.equal(await api.delete(p), 202);
    for (const p of products) await waitFor(async () => (await api.status(p)) === null, `${p.name} gone`);
    for (const p of products) {
      assert.deepEqual(
        await leftovers(redis, pool, prefix, p, p === feed ? `${namespace}.eu-feed` : undefined),
        [],
      );
    }
    // Nothing else: the source stream and the platform's table are still there.
    assert.ok((await redis.xlen(`${prefix}:log:stream:{orders}`)) > 0);
    assert.equal((await pool.query(`SELECT v FROM ${platformSchema}.secrets`)).rows[0].v, 'platform-only');
    // And nobody's credentials work any more.
    await assert.rejects(new pg.Client({ connectionString: connections['eu-orders'].uri }).connect());
    const gone = productRedis(connections['eu-cache'].uri);
    await assert.rejects(gone.connect().then(() => gone.ping()));
    gone.disconnect();
  });

  it('with deletionPolicy Retain keeps the data and drops only access and pipelines', async () => {
    const kept = { namespace, name: 'kept' };
    const keptCache = { namespace, name: 'kept-cache' };
    await api.create(kept, { ...orderSpec('postgres', 'orders', 'kept_orders'), deletionPolicy: 'Retain' });
    await api.create(keptCache, { ...orderSpec('redis'), deletionPolicy: 'Retain' });
    for (const p of [kept, keptCache])
      await waitFor(async () => isReady(await api.status(p)), `${p.name} Ready`);
    for (const p of [kept, keptCache]) assert.equal(await api.delete(p), 202);
    for (const p of [kept, keptCache])
      await waitFor(async () => (await api.status(p)) === null, `${p.name} gone`);
    const names = productStoreNames(prefix, kept).postgres;
    const { rows } = await pool.query(`SELECT count(*)::int AS n FROM ${names.schema}.kept_orders`);
    assert.equal(rows[0].n, expectedOrders(300).size);
    assert.equal((await pool.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [names.role])).rowCount, 0);
    const cacheNames = productStoreNames(prefix, keptCache).redis;
    assert.ok((await scanKeys(redis, `${cacheNames.keyPrefix}*`)).length > 0);
    assert.ok(!((await redis.call('ACL', 'USERS')) as string[]).includes(cacheNames.user));
    for (const p of [kept, keptCache]) {
      const left = await leftovers(redis, pool, prefix, p);
      assert.ok(
        left.every((l) => /^(schema|key)/.test(l) && !l.includes(':pipeline:')),
        left.join(', '),
      );
    }
  });
});
