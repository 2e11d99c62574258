/**
 * Helpers of the operator tests: product specs per target type, a small HTTP client of the API,
 * waiting on a product's status, and the checks that nothing a product made is left behind —
 * each asking the servers directly.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { DataProductSpec, DataProductStatus } from '../crds/generated/types.ts';
import { DEFAULT_CONFIG, loadConfig, type OfftakeConfig } from '../lib/config.ts';
import type { EventInput } from '../lib/eventlog/event-log.ts';
import { productStoreNames } from '../operator/store-names.ts';
import { deadLetterStream, pipelineId, type ProductRef } from '../worker/pipeline-keys.ts';
import { TEST_REDIS_URL } from './helpers/redis.ts';

/** The test Postgres (superuser). */
export const POSTGRES_URL =
  process.env.OFFTAKE_TEST_POSTGRES_URL ?? 'postgres://postgres:postgres@127.0.0.1:5432/postgres';

/** The spec of a test product: EU orders keyed by order id, cancelled ones marked. */
export function orderSpec(
  type: 'redis' | 'postgres' | 'topic',
  stream = 'orders',
  table = 'eu_orders',
): DataProductSpec {
  const target: DataProductSpec['target'] =
    type === 'postgres'
      ? { type, postgres: { table, columns: { customer: 'text', amount: 'numeric', status: 'text' } } }
      : type === 'redis'
        ? { type, redis: { format: 'hash' } }
        : { type };
  return {
    source: { streams: [stream], types: ['OrderPlaced', 'OrderCancelled'] },
    filter: "event.data.region == 'EU'",
    transform: {
      key: 'event.data.orderId',
      fields: {
        customer: 'event.data.customerId',
        amount: 'event.data.amount',
        status: "event.type == 'OrderCancelled' ? 'cancelled' : 'open'",
      },
    },
    target,
  };
}

/** A row as the tests compare them. */
export interface OrderRow {
  customer: string;
  amount: number;
  status: string;
}

/** Order events `from`..`to`-1: even orders are EU, every fifth is cancelled after being placed. */
export function orderEvents(from: number, to: number, idPrefix = 'e'): EventInput[] {
  const events: EventInput[] = [];
  for (let i = from; i < to; i++) {
    const data = {
      orderId: `o-${i}`,
      customerId: `c-${i % 7}`,
      amount: i * 10,
      region: i % 2 === 0 ? 'EU' : 'US',
    };
    events.push({
      id: `${idPrefix}-${i}-p`,
      source: 'urn:test',
      type: 'OrderPlaced',
      subject: data.orderId,
      data,
    });
    if (i % 5 === 0) {
      events.push({
        id: `${idPrefix}-${i}-c`,
        source: 'urn:test',
        type: 'OrderCancelled',
        subject: data.orderId,
        data,
      });
    }
  }
  return events;
}

/** The rows {@link orderEvents} `0..n` must produce. */
export function expectedOrders(n: number): Map<string, OrderRow> {
  const rows = new Map<string, OrderRow>();
  for (let i = 0; i < n; i++) {
    if (i % 2 !== 0) continue;
    rows.set(`o-${i}`, {
      customer: `c-${i % 7}`,
      amount: i * 10,
      status: i % 5 === 0 ? 'cancelled' : 'open',
    });
  }
  return rows;
}

/** A minimal client of the HTTP API. */
export class ApiClient {
  readonly base: string;

  constructor(base: string) {
    this.base = base;
  }

  // The tests read answers of many shapes; they check what they read.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  async request(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
    const res = await fetch(this.base + path, {
      method,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, body: text === '' ? undefined : JSON.parse(text) };
  }

  async publish(stream: string, events: EventInput[]): Promise<void> {
    for (let i = 0; i < events.length; i += 1000) {
      const res = await this.request('POST', `/v1/streams/${stream}/events`, events.slice(i, i + 1000));
      if (res.status >= 300) throw new Error(`publish failed: ${res.status} ${JSON.stringify(res.body)}`);
    }
  }

  async create(ref: ProductRef, spec: DataProductSpec): Promise<void> {
    const res = await this.request('POST', `/v1/namespaces/${ref.namespace}/dataproducts`, {
      apiVersion: 'offtake.dev/v1alpha1',
      kind: 'DataProduct',
      metadata: { name: ref.name, namespace: ref.namespace },
      spec,
    });
    if (res.status !== 201) throw new Error(`create failed: ${res.status} ${JSON.stringify(res.body)}`);
  }

  async status(ref: ProductRef): Promise<{ status: DataProductStatus; generation: number } | null> {
    const res = await this.request('GET', `/v1/namespaces/${ref.namespace}/dataproducts/${ref.name}/status`);
    if (res.status === 404) return null;
    if (res.status !== 200) throw new Error(`status failed: ${res.status}`);
    return { status: res.body.status, generation: res.body.metadata.generation };
  }

  async connection(ref: ProductRef): Promise<{ uri: string; [part: string]: unknown }> {
    const res = await this.request(
      'GET',
      `/v1/namespaces/${ref.namespace}/dataproducts/${ref.name}/connection`,
    );
    if (res.status !== 200) throw new Error(`connection failed: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body as { uri: string; [part: string]: unknown };
  }

  async delete(ref: ProductRef): Promise<number> {
    return (await this.request('DELETE', `/v1/namespaces/${ref.namespace}/dataproducts/${ref.name}`)).status;
  }
}

/** The condition of a type in a status. */
export function condition(status: DataProductStatus | undefined, type: string) {
  return status?.conditions?.find((c) => c.type === type);
}

/** True when the product is Ready for its current generation. */
export function isReady(s: { status: DataProductStatus; generation: number } | null): boolean {
  const ready = condition(s?.status, 'Ready');
  return (
    ready?.status === 'True' &&
    ready.observedGeneration === s?.generation &&
    s?.status.observedGeneration === s?.generation
  );
}

/** Polls `check` until it returns true; fails after `timeoutMs` with `what` and the last detail. */
export async function waitFor(
  check: () => Promise<boolean | string> | boolean | string,
  what: string,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: boolean | string;
  for (;;) {
    try {
      last = await check();
    } catch (err) {
      last = `error: ${(err as Error).message}`;
    }
    if (last === true) return;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${typeof last === 'string' ? `: ${last}` : ''}`);
    await delay(100);
  }
}

/** Every key matching a glob (SCAN, never KEYS). */
export async function scanKeys(redis: Redis, pattern: string): Promise<string[]> {
  const out: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    out.push(...keys);
  } while (cursor !== '0');
  return out.sort();
}

/**
 * What is left of a product in the servers: its schema and role, its keys (records, tombstones,
 * checkpoints), its ACL user, its operator records, its pipeline state and BullMQ jobs, its
 * dead-letter stream and `topicStream`. Empty when everything is gone.
 */
export async function leftovers(
  redis: Redis,
  pool: pg.Pool,
  prefix: string,
  ref: ProductRef,
  topicStream?: string,
): Promise<string[]> {
  const names = productStoreNames(prefix, ref);
  const found: string[] = [];
  const schema = await pool.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [names.postgres.schema]);
  if (schema.rowCount !== 0) found.push(`schema ${names.postgres.schema}`);
  const role = await pool.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [names.postgres.role]);
  if (role.rowCount !== 0) found.push(`role ${names.postgres.role}`);
  const base = `${prefix}:dp:${ref.namespace}:${ref.name}`;
  for (const key of await scanKeys(redis, `${base}[:#]*`)) found.push(`key ${key}`);
  const users = (await redis.call('ACL', 'USERS')) as string[];
  if (users.includes(names.redis.user)) found.push(`ACL user ${names.redis.user}`);
  const id = pipelineId(ref);
  for (const key of await scanKeys(redis, `${prefix}:pipeline:${id}:*`)) found.push(`key ${key}`);
  for (const key of await scanKeys(redis, `${prefix}:bull:*${id}.*`)) found.push(`job key ${key}`);
  for (const queue of ['seed', 'tail']) {
    for (const set of ['wait', 'paused', 'active']) {
      const ids = await redis.lrange(`${prefix}:bull:${queue}:${set}`, 0, -1).catch(() => [] as string[]);
      for (const job of ids) if (job.startsWith(`${id}.`)) found.push(`job ${job} in ${queue}:${set}`);
    }
    for (const set of ['delayed', 'prioritized', 'completed', 'failed', 'waiting-children']) {
      const ids = await redis.zrange(`${prefix}:bull:${queue}:${set}`, '0', '-1').catch(() => [] as string[]);
      for (const job of ids) if (job.startsWith(`${id}.`)) found.push(`job ${job} in ${queue}:${set}`);
    }
  }
  const streams = await redis.hkeys(`${prefix}:log:streams`);
  for (const stream of [deadLetterStream(ref), ...(topicStream === undefined ? [] : [topicStream])]) {
    if (streams.includes(stream)) found.push(`stream ${stream}`);
    if ((await redis.exists(`${prefix}:log:stream:{${stream}}`)) === 1) found.push(`stream key of ${stream}`);
    // The log's dedup memory of a deleted stream is its own business: it must expire, not stay.
    for (const key of await scanKeys(redis, `${prefix}:log:dedup:{${stream}}*`)) {
      if ((await redis.pttl(key)) < 0) found.push(`key ${key} (no expiry)`);
    }
  }
  if ((await redis.exists(`${prefix}:operator:product:${ref.namespace}/${ref.name}`)) === 1) {
    found.push('operator record');
  }
  const claims = await redis.hgetall(`${prefix}:operator:topic-streams`);
  for (const [stream, owner] of Object.entries(claims)) {
    if (owner === `${ref.namespace}/${ref.name}`) found.push(`claim on ${stream}`);
  }
  return found;
}

/** Drops what a test run may have left in Postgres and the ACL (roles and schemas of a namespace prefix). */
export async function dropPostgresLeftovers(
  pool: pg.Pool,
  redis: Redis,
  namespacePrefix: string,
): Promise<void> {
  const like = `dp_${namespacePrefix.replaceAll('-', '_')}%`;
  const schemas = await pool.query<{ nspname: string }>(
    'SELECT nspname FROM pg_namespace WHERE nspname LIKE $1',
    [like],
  );
  for (const { nspname } of schemas.rows) await pool.query(`DROP SCHEMA IF EXISTS "${nspname}" CASCADE`);
  const roles = await pool.query<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE rolname LIKE $1', [
    like,
  ]);
  for (const { rolname } of roles.rows) await pool.query(`DROP ROLE IF EXISTS "${rolname}"`);
  const users = (await redis.call('ACL', 'USERS')) as string[];
  for (const user of users) {
    // `dp:<ns>:<name>`, or `<platform prefix>:dp:<ns>:<name>` under a test's own prefix.
    if (user.startsWith(`dp:${namespacePrefix}`) || user.includes(`:dp:${namespacePrefix}`)) {
      await redis.call('ACL', 'DELUSER', user);
    }
  }
}

/**
 * The configuration of an `offtake up` under test: the test Redis and Postgres, the test's own
 * key prefix, a free port on loopback, and an event log that does not wait for fsync.
 */
export function embeddedTestConfig(
  redisPrefix: string,
  overrides: Partial<OfftakeConfig> = {},
): OfftakeConfig {
  return loadConfig(
    {},
    {
      redisUrl: TEST_REDIS_URL,
      postgresUrl: POSTGRES_URL,
      redisPrefix,
      port: 0,
      host: '127.0.0.1',
      eventLog: { ...DEFAULT_CONFIG.eventLog, durability: 'none' },
      ...overrides,
    },
  );
}
