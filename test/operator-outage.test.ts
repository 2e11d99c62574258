/**
 * The operator when Postgres goes away: a second Postgres, started for this test on its own port
 * (pg_ctl, as user postgres) and reached over its unix socket, is stopped before a product is
 * submitted — the product shows StoreReady False with reason PostgresUnavailable and a message
 * naming the server — then started again, and the product becomes Ready by itself; deleting it
 * while Postgres is down shows why the teardown cannot finish, and it finishes once Postgres is
 * back. Also:
 * `offtake up` refuses to start, with a clear message and no password, when Redis or Postgres
 * cannot be reached.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { Redis } from 'ioredis';
import { DEFAULT_CONFIG, loadConfig } from '../lib/config.ts';
import { createLogger } from '../lib/logger.ts';
import { startEmbedded, type RunningEmbedded } from '../operator/embedded.ts';
import { dropPrefix, testRedis, TEST_REDIS_URL, uniquePrefix } from './helpers/redis.ts';
import { runCli } from './helpers/process.ts';
import {
  ApiClient,
  condition,
  expectedOrders,
  isReady,
  leftovers,
  orderEvents,
  orderSpec,
  waitFor,
} from './operator-helpers.ts';

const run = promisify(execFile);
const PG_BIN = '/usr/lib/postgresql/15/bin';
const logger = createLogger('silent');

let dir: string;
let port: number;
let url: string;
let redis: Redis;
let prefix: string;

async function asPostgres(command: string, args: string[]): Promise<void> {
  await run('runuser', ['-u', 'postgres', '--', join(PG_BIN, command), ...args]);
}

async function startPostgres(): Promise<void> {
  await asPostgres('pg_ctl', [
    '-D',
    join(dir, 'data'),
    '-l',
    join(dir, 'server.log'),
    '-w',
    '-o',
    `-p ${port} -c listen_addresses='' -c unix_socket_directories=${dir} -c fsync=off`,
    'start',
  ]);
}

async function stopPostgres(): Promise<void> {
  await asPostgres('pg_ctl', ['-D', join(dir, 'data'), '-m', 'fast', '-w', 'stop']);
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'offtake-pg-'));
  const { uid, gid } = await run('id', ['-u', 'postgres']).then(async (u) => ({
    uid: Number(u.stdout.trim()),
    gid: Number((await run('id', ['-g', 'postgres'])).stdout.trim()),
  }));
  chownSync(dir, uid, gid);
  await asPostgres('initdb', ['-D', join(dir, 'data'), '-U', 'postgres', '--auth=trust', '--no-sync']);
  port = 20000 + Math.floor(Math.random() * 20000);
  await startPostgres();
  // The unix-socket form of a libpq URL.
  url = `postgresql:///postgres?host=${encodeURIComponent(dir)}&port=${port}&user=postgres`;
  redis = testRedis();
  prefix = uniquePrefix('operator-outage');
});

after(async () => {
  await stopPostgres().catch(() => undefined);
  rmSync(dir, { recursive: true, force: true });
  await dropPrefix(redis, prefix);
  redis.disconnect();
});

describe('operator with an unreachable Postgres', () => {
  let embedded: RunningEmbedded;

  after(async () => {
    await embedded?.close();
  });

  it('shows PostgresUnavailable on the status and recovers when Postgres is back', async () => {
    const config = loadConfig(
      {},
      {
        redisUrl: TEST_REDIS_URL,
        postgresUrl: url,
        redisPrefix: prefix,
        port: 0,
        host: '127.0.0.1',
        eventLog: { ...DEFAULT_CONFIG.eventLog, durability: 'none' },
      },
    );
    embedded = await startEmbedded(config, logger, {
      controller: { backoff: { baseDelayMs: 100, maxDelayMs: 1000 } },
      reconciler: { statusIntervalMs: 500 },
      worker: { lockDurationMs: 5000, stalledIntervalMs: 2000 },
      postgresConnectTimeoutMs: 2000,
    });
    const api = new ApiClient(embedded.url);
    const ref = { namespace: `out-${randomBytes(3).toString('hex')}`, name: 'orders' };
    await api.publish('orders', orderEvents(0, 50));
    await stopPostgres();

    await api.create(ref, orderSpec('postgres'));
    await waitFor(
      async () => condition((await api.status(ref))?.status, 'StoreReady')?.reason === 'PostgresUnavailable',
      'PostgresUnavailable on status',
    );
    const { status } = (await api.status(ref))!;
    const storeReady = condition(status, 'StoreReady')!;
    assert.equal(storeReady.status, 'False');
    assert.match(storeReady.message!, new RegExp(`Cannot reach Postgres at ${dir}:${port}`));
    assert.equal(condition(status, 'Ready')?.reason, 'PostgresUnavailable');
    assert.equal(status.phase, 'Failed');
    assert.equal(
      (await api.request('GET', `/v1/namespaces/${ref.namespace}/dataproducts/orders/connection`)).status,
      404,
    );

    await startPostgres();
    await waitFor(async () => isReady(await api.status(ref)), 'Ready once Postgres is back', 30_000);
    const connection = await api.connection(ref);
    assert.match(connection.uri, /^postgresql:\/\/[^@]+@\/postgres\?host=/);
    const client = new pg.Client({ connectionString: connection.uri });
    await client.connect();
    const { rows } = await client.query<{ n: number }>('SELECT count(*)::int AS n FROM eu_orders');
    await client.end();
    assert.equal(rows[0].n, expectedOrders(50).size);
    const psql = await run('psql', [connection.uri, '-tAc', 'SELECT count(*) FROM eu_orders']);
    assert.equal(psql.stdout.trim(), String(expectedOrders(50).size));

    // A teardown that cannot finish says why on the product, and finishes once it can.
    await stopPostgres();
    assert.equal(await api.delete(ref), 202);
    await waitFor(
      async () => condition((await api.status(ref))?.status, 'Deleting')?.reason === 'PostgresUnavailable',
      'Deleting shows PostgresUnavailable',
    );
    const deleting = (await api.status(ref))!.status;
    assert.equal(deleting.phase, 'Deleting');
    assert.match(
      condition(deleting, 'Deleting')!.message!,
      /Teardown cannot finish yet: Cannot reach Postgres/,
    );
    await startPostgres();
    await waitFor(async () => (await api.status(ref)) === null, 'deleted once Postgres is back', 30_000);
    const pool = new pg.Pool({ connectionString: url });
    try {
      assert.deepEqual(await leftovers(redis, pool, prefix, ref), []);
    } finally {
      await pool.end();
    }
  });
});

describe('offtake up', () => {
  it('refuses to start when Postgres is unreachable, naming it without the password', async () => {
    const result = await runCli(['up', '--port', '0', '--host', '127.0.0.1'], {
      OFFTAKE_REDIS_URL: TEST_REDIS_URL,
      OFFTAKE_REDIS_PREFIX: prefix,
      OFFTAKE_POSTGRES_URL: 'postgres://platform:s3cret-pw@127.0.0.1:1/postgres',
      OFFTAKE_EVENTLOG_DURABILITY: 'none',
      OFFTAKE_LOG_LEVEL: 'silent',
    });
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /cannot reach Postgres at postgres:\/\/platform:\*\*\*@127\.0\.0\.1:1\/postgres/,
    );
    assert.doesNotMatch(result.stderr + result.stdout, /s3cret-pw/);
  });

  it('refuses to start when Redis is unreachable', async () => {
    const result = await runCli(['up', '--port', '0'], {
      OFFTAKE_REDIS_URL: 'redis://:hidden-pw@127.0.0.1:1',
      OFFTAKE_LOG_LEVEL: 'silent',
    });
    assert.equal(result.code, 1);
    assert.match(result.stderr, /cannot reach Redis at redis:\/\/:\*\*\*@127\.0\.0\.1:1/);
    assert.doesNotMatch(result.stderr + result.stdout, /hidden-pw/);
  });
});
