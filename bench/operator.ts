/**
 * `npm run bench -- operator`: submit-to-Ready through an embedded Offtake (`offtake up` in this
 * process: API, operator and workers with their default settings) on the real Redis and
 * Postgres. Each time runs from the POST of the spec to the watch event that shows it Ready for
 * its generation (the API's `?watch=true`, followed as the CLI follows it):
 * - one product of each target type on an empty log (provisioning and the handover, no data);
 * - one redis and one postgres product on a log of BENCH_EVENTS order events (default 1,000,000),
 *   with the seed's events/s and, for the ratio, the raw range replay of the same log;
 * - BENCH_PRODUCTS products at once (default 50; a third each redis, topic, postgres) on a log of
 *   BENCH_SMALL_EVENTS events (default 1,000), against one product alone on that log, then
 *   their deletion at once until all are gone.
 * The last line is one JSON object.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import pg from 'pg';
import { Redis } from 'ioredis';
import type { DataProductSpec } from '../crds/generated/types.ts';
import type { EventInput } from '../lib/eventlog/event-log.ts';
import { RedisEventLog } from '../lib/eventlog/redis-event-log.ts';
import { DEFAULT_CONFIG, loadConfig } from '../lib/config.ts';
import { createLogger } from '../lib/logger.ts';
import type { StoredDataProduct } from '../lib/resource-store/resource-store.ts';
import { startEmbedded } from '../operator/embedded.ts';
import { ApiClient } from '../cli/api-client.ts';
import { followProducts } from '../cli/product-watch.ts';
import { isReady } from '../cli/progress-view.ts';
import { benchSpec, orderEvent, type BenchTarget } from './_pipeline-shared.ts';

const EVENTS = Number(process.env.BENCH_EVENTS ?? 1_000_000);
const PRODUCTS = Number(process.env.BENCH_PRODUCTS ?? 50);
const SMALL_EVENTS = Number(process.env.BENCH_SMALL_EVENTS ?? 1000);
const TIMEOUT_SECONDS = Number(process.env.BENCH_TIMEOUT_SECONDS ?? 900);
const POSTGRES_URL =
  process.env.OFFTAKE_POSTGRES_URL ?? 'postgres://postgres:postgres@127.0.0.1:5432/postgres';

const id = randomBytes(3).toString('hex');
const prefix = `bench:operator:${id}`;
const namespace = `bench-op-${id}`;
const config = loadConfig(process.env, {
  port: 0,
  host: '127.0.0.1',
  redisPrefix: prefix,
  postgresUrl: POSTGRES_URL,
  eventLog: { ...DEFAULT_CONFIG.eventLog, durability: 'none' },
});
const embedded = await startEmbedded(config, createLogger('silent'));
const api = new ApiClient(embedded.url);
const redis = new Redis(config.redisUrl);
const eventLog = await RedisEventLog.create({ redis, prefix: `${prefix}:log`, durability: { mode: 'none' } });
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const out = (line: string) => process.stdout.write(`${line}\n`);
const created: string[] = [];

/** Appends `count` generated order events to `stream`. */
async function fill(stream: string, count: number): Promise<void> {
  for (let i = 0; i < count; i += 1000) {
    const batch: EventInput[] = [];
    for (let j = i; j < Math.min(count, i + 1000); j++) batch.push(orderEvent(j));
    await eventLog.append(stream, batch);
  }
}

function spec(type: BenchTarget, stream: string, name: string): DataProductSpec {
  const s = benchSpec(type, name.replaceAll('-', '_'));
  return { ...s, source: { ...s.source, streams: [stream] } };
}

/**
 * Submits the products at once and answers, per product, the seconds from its submission to
 * the watch event showing it Ready, with its last status.
 */
async function submitUntilReady(
  products: { name: string; spec: DataProductSpec }[],
): Promise<Map<string, { seconds: number; product: StoredDataProduct }>> {
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort(), TIMEOUT_SECONDS * 1000);
  const submitted = new Map<string, number>();
  const ready = new Map<string, { seconds: number; product: StoredDataProduct }>();
  const wanted = new Set(products.map((p) => p.name));
  let synced!: () => void;
  const watching = new Promise<void>((resolve) => (synced = resolve));
  const follow = (async () => {
    for await (const change of followProducts(api, { namespace }, { signal: stop.signal })) {
      if (change.type === 'SYNCED') synced();
      if (change.type !== 'ADDED' && change.type !== 'MODIFIED') continue;
      const { name } = change.object.metadata;
      if (!wanted.has(name) || ready.has(name) || !isReady(change.object)) continue;
      ready.set(name, { seconds: (performance.now() - submitted.get(name)!) / 1000, product: change.object });
      if (ready.size === wanted.size) break;
    }
  })();
  await watching;
  await Promise.all(
    products.map(async (p) => {
      submitted.set(p.name, performance.now());
      await api.apply(
        namespace,
        JSON.stringify({
          apiVersion: 'offtake.dev/v1alpha1',
          kind: 'DataProduct',
          metadata: { name: p.name },
          spec: p.spec,
        }),
        'application/json',
        false,
      );
      created.push(p.name);
    }),
  );
  await follow;
  clearTimeout(timer);
  stop.abort();
  if (ready.size < wanted.size) {
    throw new Error(
      `${wanted.size - ready.size} of ${wanted.size} products not Ready after ${TIMEOUT_SECONDS}s`,
    );
  }
  return ready;
}

/** Deletes the products at once and answers the seconds until the last one is gone. */
async function deleteAll(names: string[]): Promise<number> {
  const start = performance.now();
  await Promise.all(names.map((name) => api.delete(namespace, name)));
  for (;;) {
    const left = (await api.listAt({ namespace })).items.filter((p) => names.includes(p.metadata.name));
    if (left.length === 0) break;
    if (performance.now() - start > TIMEOUT_SECONDS * 1000)
      throw new Error(`${left.length} products not gone`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  for (const name of names) created.splice(created.indexOf(name), 1);
  return (performance.now() - start) / 1000;
}

function seedSeconds(product: StoredDataProduct): number {
  const seed = product.status?.seed;
  return (Date.parse(seed?.completedAt ?? '') - Date.parse(seed?.startedAt ?? '')) / 1000;
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

try {
  // 1. An empty log: provisioning, an empty seed and the handover to the tail.
  const empty: Partial<Record<BenchTarget, number>> = {};
  for (const type of ['redis', 'topic', 'postgres'] as const) {
    const name = `empty-${type}`;
    const ready = await submitUntilReady([{ name, spec: spec(type, 'empty', name) }]);
    empty[type] = ready.get(name)!.seconds;
    out(`empty log, ${type.padEnd(8)} submit → Ready: ${empty[type].toFixed(2)} s`);
  }
  await deleteAll(['redis', 'topic', 'postgres'].map((type) => `empty-${type}`));

  // 2. A log of EVENTS events.
  const appendStart = performance.now();
  await fill('orders', EVENTS);
  out(`log: ${fmt(EVENTS)} events appended in ${((performance.now() - appendStart) / 1000).toFixed(1)} s`);
  let ceiling = 0;
  for (let run = 0; run < 2; run++) {
    const start = performance.now();
    let n = 0;
    for await (const batch of eventLog.scan('orders', { batchSize: 1000 })) n += batch.length;
    ceiling = Math.max(ceiling, n / ((performance.now() - start) / 1000));
  }
  out(`raw ceiling (range replay, no processing): ${fmt(ceiling)} events/s`);
  const big: Partial<
    Record<BenchTarget, { readySeconds: number; seedSeconds: number; seedEventsPerSecond: number }>
  > = {};
  for (const type of ['redis', 'postgres'] as const) {
    const name = `big-${type}`;
    const result = (await submitUntilReady([{ name, spec: spec(type, 'orders', name) }])).get(name)!;
    const seconds = seedSeconds(result.product);
    big[type] = { readySeconds: result.seconds, seedSeconds: seconds, seedEventsPerSecond: EVENTS / seconds };
    out(
      `${fmt(EVENTS)}-event log, ${type.padEnd(8)} submit → Ready: ${result.seconds.toFixed(1)} s ` +
        `(seed ${seconds.toFixed(1)} s: ${fmt(EVENTS / seconds)} events/s, ${(EVENTS / seconds / ceiling).toFixed(2)} of ceiling; ` +
        `${fmt(result.product.status?.seed?.processed ?? 0)} events of its types replayed)`,
    );
    // The next measurement runs without this product's tail.
    await deleteAll([name]);
  }

  // 3. PRODUCTS at once on a small log, against one alone on it.
  await fill('orders-small', SMALL_EVENTS);
  const alone = (
    await submitUntilReady([{ name: 'alone', spec: spec('redis', 'orders-small', 'alone') }])
  ).get('alone')!.seconds;
  await deleteAll(['alone']);
  const types = ['redis', 'topic', 'postgres'] as const;
  const many = Array.from({ length: PRODUCTS }, (_, i) => {
    const name = `many-${String(i).padStart(2, '0')}`;
    return { name, spec: spec(types[i % 3], 'orders-small', name) };
  });
  const start = performance.now();
  const ready = await submitUntilReady(many);
  const allSeconds = (performance.now() - start) / 1000;
  const times = [...ready.values()].map((r) => r.seconds).sort((a, b) => a - b);
  out(
    `${PRODUCTS} products at once on a ${fmt(SMALL_EVENTS)}-event log: all Ready in ${allSeconds.toFixed(1)} s ` +
      `(each: p50 ${percentile(times, 50).toFixed(1)} s, max ${times.at(-1)!.toFixed(1)} s; one alone: ${alone.toFixed(2)} s)`,
  );
  const teardown = await deleteAll(many.map((p) => p.name));
  out(`${PRODUCTS} products deleted at once: all gone in ${teardown.toFixed(1)} s`);

  const machine = `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
  out(`machine: ${machine}`);
  const r = (n: number) => Number(n.toFixed(3));
  out(
    JSON.stringify({
      suite: 'operator',
      machine,
      events: EVENTS,
      products: PRODUCTS,
      smallEvents: SMALL_EVENTS,
      seedConcurrency: config.worker.seedConcurrency,
      emptyLogReadySeconds: Object.fromEntries(Object.entries(empty).map(([k, v]) => [k, r(v)])),
      ceilingEventsPerSecond: Math.round(ceiling),
      bigLog: Object.fromEntries(
        Object.entries(big).map(([k, v]) => [
          k,
          {
            readySeconds: r(v.readySeconds),
            seedSeconds: r(v.seedSeconds),
            seedEventsPerSecond: Math.round(v.seedEventsPerSecond),
            seedVsCeiling: r(v.seedEventsPerSecond / ceiling),
            readyVsEmpty: r(v.readySeconds / empty[k as BenchTarget]!),
          },
        ]),
      ),
      manyAtOnce: {
        allReadySeconds: r(allSeconds),
        p50ReadySeconds: r(percentile(times, 50)),
        maxReadySeconds: r(times.at(-1)!),
        aloneReadySeconds: r(alone),
        allVsAlone: r(allSeconds / alone),
        productsPerSecond: r(PRODUCTS / allSeconds),
        teardownSeconds: r(teardown),
      },
    }),
  );
} finally {
  if (created.length > 0) await deleteAll([...created]).catch(() => undefined);
  await embedded.close();
  await eventLog.close();
  const pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 1 });
  const like = `dp_${namespace.replaceAll('-', '_')}%`;
  for (const { nspname } of (
    await pool.query<{ nspname: string }>('SELECT nspname FROM pg_namespace WHERE nspname LIKE $1', [like])
  ).rows) {
    await pool.query(`DROP SCHEMA IF EXISTS "${nspname}" CASCADE`);
  }
  for (const { rolname } of (
    await pool.query<{ rolname: string }>('SELECT rolname FROM pg_roles WHERE rolname LIKE $1', [like])
  ).rows) {
    await pool.query(`DROP ROLE IF EXISTS "${rolname}"`);
  }
  await pool.end();
  for (const user of (await redis.call('ACL', 'USERS')) as string[]) {
    if (user.startsWith(`dp:${namespace}:`) || user.includes(`:dp:${namespace}:`)) {
      await redis.call('ACL', 'DELUSER', user);
    }
  }
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.unlink(...keys);
  } while (cursor !== '0');
  redis.disconnect();
}
