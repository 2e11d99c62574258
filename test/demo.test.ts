/**
 * The newcomer's demo (`npm run demo`, scripts/demo.sh) runs end to end against the real Redis
 * and Postgres: both products become Ready, are read with the delivered credentials, are deleted,
 * and the servers hold nothing of them afterwards, nor anything under the demo's Redis prefix.
 * Interrupted half-way, the demo still tears its products down and removes its prefix.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import pg from 'pg';
import { productStoreNames } from '../operator/store-names.ts';
import { POSTGRES_URL, scanKeys, waitFor } from './operator-helpers.ts';
import { testRedis, TEST_REDIS_URL } from './helpers/redis.ts';

const DEMO = fileURLToPath(new URL('../scripts/demo.sh', import.meta.url));

let redis: Redis;
let pool: pg.Pool;

before(() => {
  redis = testRedis();
  pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 1 });
});

after(async () => {
  await pool.end();
  redis.disconnect();
});

/** Starts the demo with a small generated history; `output` grows as it prints. */
function startDemo() {
  const child = spawn('bash', [DEMO], {
    env: {
      ...process.env,
      OFFTAKE_REDIS_URL: TEST_REDIS_URL,
      OFFTAKE_POSTGRES_URL: POSTGRES_URL,
      DEMO_EVENTS: '5000',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const demo = { child, output: '' };
  child.stdout.on('data', (d: Buffer) => (demo.output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (demo.output += d.toString()));
  return demo;
}

/** What the demo's products and prefix left on the servers (empty when nothing). */
async function demoLeftovers(output: string): Promise<string[]> {
  const prefix = /Redis prefix (offtake-demo-\d+)/.exec(output)?.[1];
  assert.ok(prefix, 'the demo names its Redis prefix');
  const left = (await scanKeys(redis, `${prefix}:*`)).map((k) => `key ${k}`);
  const users = (await redis.call('ACL', 'USERS')) as string[];
  const user = productStoreNames(prefix, { namespace: 'checkout', name: 'orders-cache' }).redis.user;
  if (users.includes(user)) left.push(`ACL user ${user}`);
  const { rows } = await pool.query<{ name: string }>(
    "SELECT nspname AS name FROM pg_namespace WHERE nspname LIKE 'dp\\_checkout\\_eu\\_big\\_orders\\_%' " +
      "UNION ALL SELECT rolname FROM pg_roles WHERE rolname LIKE 'dp\\_checkout\\_eu\\_big\\_orders\\_%'",
  );
  return [...left, ...rows.map((r) => `postgres ${r.name}`)];
}

describe('scripts/demo.sh', () => {
  it('runs end to end and leaves nothing behind', async () => {
    const demo = startDemo();
    const [code] = (await once(demo.child, 'exit')) as [number | null];
    const { output } = demo;
    assert.equal(code, 0, output);
    assert.match(output, /^orders-cache Ready 5200\/5200 100% lag 0$/m);
    assert.match(output, /^eu-big-orders Ready 5200\/5200 100% lag 0$/m);
    // The sample's order o3 (customer c005, 411.53), read with the product's own Redis user.
    assert.match(output, /HGETALL[^\n]*\n(?:.*\n)*?customer\nc005\namount\n411\.53\n/);
    assert.match(output, /NOPERM/);
    assert.match(output, /permission denied for view eu_big_orders/);
    assert.equal(output.match(/^ {2}gone: /gm)?.length, 6, output);
    assert.doesNotMatch(output, /LEFT/);
    assert.match(output, /WRONGPASS/);
    assert.match(output, /password authentication failed/);
    assert.deepEqual(await demoLeftovers(output), []);
  });

  it('interrupted half-way, still tears its products down and removes its prefix', async () => {
    const demo = startDemo();
    await waitFor(() => demo.output.includes('==> Reading the Redis product'), 'the products Ready', 120_000);
    demo.child.kill('SIGTERM');
    const [code] = (await once(demo.child, 'exit')) as [number | null];
    assert.notEqual(code, 0);
    assert.match(demo.output, /demo failed; the last lines of the Offtake log/);
    assert.deepEqual(await demoLeftovers(demo.output), []);
  });
});
