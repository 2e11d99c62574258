/**
 * The operator killed with SIGKILL at random points — while it provisions and seeds products of
 * every target type, while it re-seeds two of them blue/green after a spec change, and while it
 * tears them down — and started again each time: the products
 * converge to Ready with the right data, and after deletion nothing they made is left on the
 * servers. The kill delays come from a seeded PRNG (OPERATOR_CRASH_SEED) so a failing run can be
 * repeated.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import pg from 'pg';
import { dropPrefix, testRedis, TEST_REDIS_URL, uniquePrefix } from './helpers/redis.ts';
import {
  ApiClient,
  POSTGRES_URL,
  dropPostgresLeftovers,
  expectedOrders,
  isReady,
  leftovers,
  orderEvents,
  orderSpec,
  waitFor,
  type OrderRow,
} from './operator-helpers.ts';
import { freePort } from './eventlog-helpers.ts';
import { prng } from './pipeline-helpers.ts';

const FIXTURE = fileURLToPath(new URL('./fixtures/operator-process.ts', import.meta.url));
const SEED = Number(process.env.OPERATOR_CRASH_SEED ?? Date.now() % 100_000);

let redis: Redis;
let pool: pg.Pool;
let prefix: string;
let namespace: string;
let port: number;
let child: ChildProcess | undefined;

/** Starts the embedded Offtake fixture on `port` and waits until it serves. */
async function start(): Promise<ChildProcess> {
  const proc = spawn(process.execPath, [FIXTURE], {
    env: {
      ...process.env,
      OFFTAKE_REDIS_URL: TEST_REDIS_URL,
      OFFTAKE_POSTGRES_URL: POSTGRES_URL,
      OFFTAKE_REDIS_PREFIX: prefix,
      OFFTAKE_PORT: String(port),
      OFFTAKE_HOST: '127.0.0.1',
      OFFTAKE_EVENTLOG_DURABILITY: 'none',
      OFFTAKE_LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const lines = createInterface({ input: proc.stdout });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the operator did not start: ${stderr}`)), 30_000);
    proc.once('exit', (code) => reject(new Error(`the operator exited with ${code}: ${stderr}`)));
    lines.on('line', (line) => {
      if (line.includes('offtake up: api, operator and workers running')) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  proc.removeAllListeners('exit');
  // Answering, not only saying so: a process that dies right after its start line is reported
  // here with what it printed, instead of as a refused connection later.
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw new Error(`the operator exited after starting (${proc.exitCode ?? proc.signalCode}): ${stderr}`);
    }
    const answered = await fetch(`http://127.0.0.1:${port}/healthz`).then(
      (res) => res.ok,
      () => false,
    );
    if (answered) return proc;
    if (Date.now() > deadline) throw new Error(`the operator does not answer on port ${port}: ${stderr}`);
    await delay(50);
  }
}

async function kill(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill('SIGKILL');
  await once(proc, 'exit');
}

before(async () => {
  redis = testRedis();
  pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
  prefix = uniquePrefix('operator-crash');
  namespace = `cr-${randomBytes(3).toString('hex')}`;
  port = await freePort();
});

after(async () => {
  if (child !== undefined) await kill(child);
  await dropPostgresLeftovers(pool, redis, namespace);
  await dropPrefix(redis, prefix);
  await pool.end();
  redis.disconnect();
});

describe(`operator killed with SIGKILL (seed ${SEED})`, () => {
  it('converges after crashes during provisioning and teardown, leaving nothing behind', async () => {
    const random = prng(SEED);
    /** A kill delay: often right away (inside provisioning), otherwise anywhere in the next 1.5 s. */
    const nextDelay = () => {
      const r = random();
      return r < 0.3
        ? Math.floor(random() * 60)
        : r < 0.5
          ? 60 + Math.floor(random() * 200)
          : Math.floor(random() * 1500);
    };
    child = await start();
    const api = new ApiClient(`http://127.0.0.1:${port}`);
    await api.publish('orders', orderEvents(0, 1500));
    const products = [
      { ref: { namespace, name: 'crash-pg' }, type: 'postgres' as const },
      { ref: { namespace, name: 'crash-cache' }, type: 'redis' as const },
      { ref: { namespace, name: 'crash-feed' }, type: 'topic' as const },
    ];
    for (const p of products) await api.create(p.ref, orderSpec(p.type));

    for (let i = 0; i < 4; i++) {
      await delay(nextDelay());
      await kill(child);
      child = await start();
    }
    for (const p of products) {
      await waitFor(
        async () =>
          isReady(await api.status(p.ref)) || JSON.stringify((await api.status(p.ref))?.status.conditions),
        `${p.ref.name} Ready`,
        90_000,
      );
    }
    await api.publish('orders', orderEvents(1500, 1600));
    const expected = expectedOrders(1600);
    for (const p of products) {
      await waitFor(
        async () => same(expected, await rows(api, p.ref, p.type, expected)),
        `${p.ref.name} has the data`,
        30_000,
      );
    }

    // A spec change re-seeds the redis and postgres products blue/green, with kills in between.
    const changed = products.filter((p) => p.type !== 'topic');
    for (const p of changed) {
      const spec = orderSpec(p.type);
      spec.filter = "event.data.region == 'US'";
      const current = await api.request('GET', `/v1/namespaces/${namespace}/dataproducts/${p.ref.name}`);
      const put = await api.request('PUT', `/v1/namespaces/${namespace}/dataproducts/${p.ref.name}`, {
        apiVersion: 'offtake.dev/v1alpha1',
        kind: 'DataProduct',
        metadata: { ...p.ref, resourceVersion: current.body.metadata.resourceVersion },
        spec,
      });
      assert.equal(put.status, 200);
    }
    for (let i = 0; i < 3; i++) {
      await delay(nextDelay());
      await kill(child);
      child = await start();
    }
    const us = new Map<string, OrderRow>();
    for (let i = 1; i < 1600; i += 2) {
      us.set(`o-${i}`, {
        customer: `c-${i % 7}`,
        amount: i * 10,
        status: i % 5 === 0 ? 'cancelled' : 'open',
      });
    }
    for (const p of changed) {
      await waitFor(
        async () => {
          const s = await api.status(p.ref);
          return (s?.generation === 2 && isReady(s)) || JSON.stringify(s?.status.conditions);
        },
        `${p.ref.name} re-seeded and Ready`,
        90_000,
      );
      await waitFor(
        async () => same(us, await rows(api, p.ref, p.type, us)),
        `${p.ref.name} has the new data`,
      );
      assert.deepEqual((await api.status(p.ref))!.status.builds?.next, undefined);
    }

    for (const p of products) assert.equal(await api.delete(p.ref), 202);
    for (let i = 0; i < 3; i++) {
      await delay(nextDelay());
      await kill(child);
      child = await start();
    }
    for (const p of products) {
      await waitFor(
        async () =>
          (await api.status(p.ref)) === null || JSON.stringify((await api.status(p.ref))?.status.conditions),
        `${p.ref.name} deleted`,
        90_000,
      );
    }
    for (const p of products) {
      const topic = p.type === 'topic' ? `${namespace}.${p.ref.name}` : undefined;
      assert.deepEqual(await leftovers(redis, pool, prefix, p.ref, topic), [], p.ref.name);
      assert.deepEqual(
        await leftovers(redis, pool, prefix, { ...p.ref, build: 2 }),
        [],
        `${p.ref.name} build 2`,
      );
    }
  });
});

function same(expected: Map<string, OrderRow>, actual: Map<string, OrderRow>): true | string {
  if (actual.size !== expected.size) return `${actual.size} of ${expected.size} rows`;
  for (const [key, row] of expected) {
    const got = actual.get(key);
    if (
      got === undefined ||
      got.customer !== row.customer ||
      got.amount !== row.amount ||
      got.status !== row.status
    ) {
      return `row ${key}: ${JSON.stringify(got)} instead of ${JSON.stringify(row)}`;
    }
  }
  return true;
}

/** The rows of a product, read with its delivered credentials' names but the platform's connections. */
async function rows(
  api: ApiClient,
  ref: { namespace: string; name: string },
  type: 'postgres' | 'redis' | 'topic',
  expected: Map<string, OrderRow>,
): Promise<Map<string, OrderRow>> {
  const connection = await api.connection(ref);
  const out = new Map<string, OrderRow>();
  if (type === 'postgres') {
    const result = await pool.query<{ _key: string; customer: string; amount: string; status: string }>(
      `SELECT _key, customer, amount::text AS amount, status FROM "${connection.schema as string}"."${connection.table as string}"`,
    );
    for (const r of result.rows)
      out.set(r._key, { customer: r.customer, amount: Number(r.amount), status: r.status });
  } else if (type === 'redis') {
    for (const key of expected.keys()) {
      const hash = await redis.hgetall(`${connection.keyPrefix as string}${key}`);
      if (Object.keys(hash).length > 0)
        out.set(key, { customer: hash.customer, amount: Number(hash.amount), status: hash.status });
    }
  } else {
    for (const [, fields] of await redis.xrange(connection.key as string, '-', '+')) {
      const event = JSON.parse(fields[1]) as { subject: string; data: OrderRow };
      out.set(event.subject, event.data);
    }
  }
  return out;
}
