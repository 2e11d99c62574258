/**
 * `npm run bench -- pipeline`: the pipeline runtime on a generated log of BENCH_EVENTS order
 * events (default 1,000,000) with the DESIGN.md spec (type list, a filter, a key and three
 * fields), all measured in one run:
 * - the raw ceiling: a read-only range replay of the whole log from Node, no processing;
 * - a naive baseline per target: read a batch, evaluate each event, write each record with its
 *   own round trip (`writeOneByOne`), on the first BENCH_NAIVE_EVENTS events (default 50,000);
 * - Offtake's seed into redis, postgres and topic targets by BENCH_WORKERS worker processes
 *   (default 2, seed concurrency BENCH_SEED_CONCURRENCY each, default 2 as in `offtake worker`, started with the Node
 *   options BENCH_WORKER_NODE_ARGS, default `--max-semi-space-size=16`, what `offtake worker`
 *   runs with), their peak RSS; each measured after an unmeasured warm-up seed of
 *   BENCH_WARMUP_EVENTS (default 100,000) per target, as the ceiling is the best of three runs;
 * - live-tail latency, publish → visible (the checkpoint committed with the data passes the
 *   event), p50/p99 for redis and postgres targets at BENCH_TAIL_RATE events/s (default 5,000)
 *   for BENCH_TAIL_SECONDS (default 10).
 * The last line is one JSON object.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { createInterface } from 'node:readline';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import pg from 'pg';
import { compareOffsets, type EventInput } from '../lib/eventlog/event-log.ts';
import { RedisEventLog } from '../lib/eventlog/redis-event-log.ts';
import { createLogger } from '../lib/logger.ts';
import { processBatch } from '../worker/batch-writer.ts';
import { CompiledProduct } from '../worker/compiled-product.ts';
import { CHECKPOINT_NAME } from '../worker/pipeline-keys.ts';
import { PipelineRunner } from '../worker/pipeline-runner.ts';
import type { PipelineProduct } from '../worker/pipeline-state-store.ts';
import { redisConnector } from '../worker/redis-connector.ts';
import { writeOneByOne } from '../worker/sinks/naive.ts';
import type { Sink } from '../worker/sinks/sink.ts';
import {
  BENCH_STREAM,
  benchProduct,
  benchSink,
  orderEvent,
  type BenchLayout,
  type BenchTarget,
} from './_pipeline-shared.ts';

const EVENTS = Number(process.env.BENCH_EVENTS ?? 1_000_000);
const NAIVE_EVENTS = Math.min(EVENTS, Number(process.env.BENCH_NAIVE_EVENTS ?? 50_000));
const WORKERS = Number(process.env.BENCH_WORKERS ?? 2);
const SEED_CONCURRENCY = Number(process.env.BENCH_SEED_CONCURRENCY ?? 2);
const SEED_BATCH = Number(process.env.BENCH_SEED_BATCH ?? 1000);
const WARMUP_EVENTS = Math.min(EVENTS, Number(process.env.BENCH_WARMUP_EVENTS ?? 100_000));
const WARMUP_STREAM = `${BENCH_STREAM}-warmup`;
const TAIL_RATE = Number(process.env.BENCH_TAIL_RATE ?? 5000);
const TAIL_SECONDS = Number(process.env.BENCH_TAIL_SECONDS ?? 10);
const REDIS_URL = process.env.OFFTAKE_REDIS_URL ?? 'redis://127.0.0.1:6379';
const POSTGRES_URL =
  process.env.OFFTAKE_POSTGRES_URL ?? 'postgres://postgres:postgres@127.0.0.1:5432/postgres';
// A young generation of at most 2 x 16 MiB, as `offtake worker` sets it: V8 otherwise grows it to
// 128 MiB under the seed's allocation rate, which is most of a worker's peak RSS.
const WORKER_NODE_ARGS = (process.env.BENCH_WORKER_NODE_ARGS ?? '--max-semi-space-size=16')
  .split(' ')
  .filter((a) => a !== '');
const WORKER = fileURLToPath(new URL('./_pipeline-worker.ts', import.meta.url));

const prefix = `bench:pipeline:${randomBytes(3).toString('hex')}`;
const schema = `bench_pipeline_${randomBytes(3).toString('hex')}`;
const redis = new Redis(REDIS_URL);
const pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 4 });
const eventLog = await RedisEventLog.create({ redis, prefix: `${prefix}:log`, durability: { mode: 'none' } });
const layout: BenchLayout = { prefix, schema, redis, pool, eventLog };
const logger = createLogger('silent');
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const out = (line: string) => process.stdout.write(`${line}\n`);

async function timed<T>(body: () => Promise<T>): Promise<{ seconds: number; result: T }> {
  const start = performance.now();
  const result = await body();
  return { seconds: (performance.now() - start) / 1000, result };
}

/** Starts a benchmark worker process and waits until it takes jobs. */
async function startWorker(): Promise<ChildProcess> {
  const config = {
    redisUrl: REDIS_URL,
    postgresUrl: POSTGRES_URL,
    prefix,
    schema,
    seedConcurrency: SEED_CONCURRENCY,
    seedBatchSize: SEED_BATCH,
  };
  const child = spawn(process.execPath, [...WORKER_NODE_ARGS, WORKER, JSON.stringify(config)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: child.stdout });
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`a worker exited with ${code}`)));
    lines.on('line', (line) => line === 'ready' && resolve());
  });
  child.removeAllListeners('exit');
  return child;
}

/** Peak resident set size of a process, in MiB (Linux). */
function peakRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0);
  return kb / 1024;
}

/**
 * Waits until Redis is not rewriting its AOF or saving a snapshot: the fork runs on one of the
 * machine's cores, and a measurement taken meanwhile says more about the rewrite than about us.
 */
async function quiesce(): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const info = await redis.info('persistence');
    if (!/aof_rewrite_in_progress:1|rdb_bgsave_in_progress:1|aof_rewrite_scheduled:1/.test(info)) return;
    await delay(100);
  }
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

const workers: ChildProcess[] = [];
const runner = new PipelineRunner({
  connect: redisConnector(REDIS_URL),
  eventLog,
  logger,
  prefix,
  chunkEvents: 25_000,
});
const products: PipelineProduct[] = [];

try {
  // The log.
  const append = await timed(async () => {
    for (let i = 0; i < EVENTS; i += 1000) {
      const batch: EventInput[] = [];
      for (let j = i; j < Math.min(EVENTS, i + 1000); j++) batch.push(orderEvent(j));
      await eventLog.append(BENCH_STREAM, batch);
    }
  });
  out(`log: ${fmt(EVENTS)} events appended in ${append.seconds.toFixed(1)} s`);

  // The raw ceiling: replay the whole range, nothing else; the best of three runs (the first
  // one also warms up Node and lets Redis finish rewriting its AOF after the appends).
  let ceilingRate = 0;
  for (let run = 0; run < 3; run++) {
    await quiesce();
    const ceiling = await timed(async () => {
      let n = 0;
      for await (const batch of eventLog.scan(BENCH_STREAM, { batchSize: 1000 })) n += batch.length;
      return n;
    });
    ceilingRate = Math.max(ceilingRate, ceiling.result / ceiling.seconds);
  }
  out(`raw ceiling (range replay, no processing):   ${fmt(ceilingRate)} events/s`);

  // The naive baseline: per event, evaluate, then one round trip per record.
  const naive: Partial<Record<BenchTarget, number>> = {};
  for (const type of ['redis', 'postgres'] as const) {
    const product = benchProduct(`naive-${type}`, type);
    products.push(product);
    const sink: Sink = benchSink(layout, product);
    await sink.prepare();
    const compiled = CompiledProduct.compile(product.spec);
    const run = await timed(async () => {
      let n = 0;
      for await (const events of eventLog.scan(BENCH_STREAM, { batchSize: 1000 })) {
        const batch = processBatch(compiled, events, BENCH_STREAM);
        await writeOneByOne(sink, batch.records);
        n += events.length;
        if (n >= NAIVE_EVENTS) break;
      }
      return n;
    });
    naive[type] = run.result / run.seconds;
    out(`naive baseline into ${type.padEnd(8)} (${fmt(run.result)} events): ${fmt(naive[type])} events/s`);
  }

  // Offtake's seed, by worker processes. First a warm-up seed of each target from a small stream
  // of its own, unmeasured: the ceiling is the best of three runs, so the seeds too are measured
  // on warm processes (a cold worker's first seed runs while V8 is still compiling its code).
  for (let i = 0; i < WORKERS; i++) workers.push(await startWorker());
  for (let i = 0; i < WARMUP_EVENTS; i += 1000) {
    const batch: EventInput[] = [];
    for (let j = i; j < Math.min(WARMUP_EVENTS, i + 1000); j++) batch.push(orderEvent(j, 'w'));
    await eventLog.append(WARMUP_STREAM, batch);
  }
  for (const type of ['redis', 'postgres', 'topic'] as const) {
    const product = benchProduct(`warmup-${type}`, type, WARMUP_STREAM);
    products.push(product);
    await runner.start(product);
    for (;;) {
      const state = (await runner.state(product))!;
      if (state.phase === 'failed') throw new Error(`the ${type} warm-up seed failed: ${state.error}`);
      if (state.seed.completedAt !== undefined) break;
      await delay(100);
    }
    await runner.stop(product);
  }
  const seed: Partial<Record<BenchTarget, number>> = {};
  const tailProducts: PipelineProduct[] = [];
  for (const type of ['redis', 'postgres', 'topic'] as const) {
    const product = benchProduct(`seed-${type}`, type);
    products.push(product);
    await quiesce();
    await runner.start(product);
    for (;;) {
      const state = (await runner.state(product))!;
      if (state.phase === 'failed') throw new Error(`the ${type} seed failed: ${state.error}`);
      if (state.seed.completedAt !== undefined) {
        // The replay covers the whole log (events of other types are skipped by the log itself).
        const seconds = (Date.parse(state.seed.completedAt) - Date.parse(state.seed.startedAt)) / 1000;
        seed[type] = EVENTS / seconds;
        out(
          `offtake seed into ${type.padEnd(8)} (${WORKERS} workers x ${SEED_CONCURRENCY}): ${fmt(seed[type])} events/s ` +
            `(${(seed[type] / ceilingRate).toFixed(2)} of ceiling${naive[type as 'redis'] === undefined ? '' : `, ${(seed[type] / naive[type as 'redis']!).toFixed(1)}x naive`}; ${fmt(state.seed.written)} records written)`,
        );
        break;
      }
      await delay(100);
    }
    if (type !== 'topic') tailProducts.push(product);
    // The next seed runs alone.
    if (type === 'topic') await runner.stop(product);
  }

  // Live tail: publish at a steady rate; an event is visible once the checkpoint passes it.
  await quiesce();
  const latency: Partial<Record<BenchTarget, { p50: number; p99: number; samples: number }>> = {};
  const sinks = tailProducts.map((p) => ({
    type: p.spec.target.type,
    sink: benchSink(layout, p),
    samples: [] as number[],
  }));
  const pending: { offset: string; at: number; count: number; seen: Set<number> }[] = [];
  let publishing = true;
  const tickMs = 10;
  const perTick = Math.max(1, Math.round((TAIL_RATE * tickMs) / 1000));
  let sent = 0;
  const publisher = (async () => {
    const start = performance.now();
    for (let tick = 0; publishing; tick++) {
      const wait = start + tick * tickMs - performance.now();
      if (wait > 0) await delay(wait);
      const batch: EventInput[] = [];
      for (let j = 0; j < perTick; j++) batch.push(orderEvent(EVENTS + sent + j, 'live'));
      const at = performance.now();
      const { offsets } = await eventLog.append(BENCH_STREAM, batch);
      // The checkpoint moves with the events the tail reads (the product's types): the batch is
      // visible once its last event of those types is.
      const types = benchProduct('x', 'redis').spec.source.types!;
      const last = batch.map((e) => e.type).findLastIndex((t) => types.includes(t));
      if (last >= 0) pending.push({ offset: offsets[last], at, count: batch.length, seen: new Set() });
      sent += batch.length;
    }
  })();
  let drainDeadline = Number.POSITIVE_INFINITY;
  const poller = (async () => {
    while (publishing || (pending.length > 0 && performance.now() < drainDeadline)) {
      for (let s = 0; s < sinks.length; s++) {
        const checkpoint = await sinks[s].sink.readCheckpoint(CHECKPOINT_NAME);
        const now = performance.now();
        const position = checkpoint?.[BENCH_STREAM];
        if (position === undefined) continue;
        for (const p of pending) {
          if (p.seen.has(s) || compareOffsets(p.offset, position) > 0) continue;
          p.seen.add(s);
          for (let k = 0; k < p.count; k++) sinks[s].samples.push(now - p.at);
        }
      }
      while (pending.length > 0 && pending[0].seen.size === sinks.length) pending.shift();
      await delay(1);
    }
  })();
  await delay(TAIL_SECONDS * 1000);
  publishing = false;
  await publisher;
  // Events not visible 30 s after the last publish are left out (and show as a short count).
  drainDeadline = performance.now() + 30_000;
  await poller;
  for (const { type, samples } of sinks) {
    samples.sort((a, b) => a - b);
    latency[type] = { p50: percentile(samples, 50), p99: percentile(samples, 99), samples: samples.length };
    out(
      `live tail into ${type.padEnd(8)} at ${fmt(TAIL_RATE)} events/s: p50 ${latency[type].p50.toFixed(1)} ms, p99 ${latency[type].p99.toFixed(1)} ms (${fmt(samples.length)} events)`,
    );
  }

  const rss = workers.map((w) => peakRssMiB(w.pid!));
  const peakRss = Math.max(...rss);
  out(
    `peak RSS of a worker: ${peakRss.toFixed(0)} MiB (${rss.map((r) => r.toFixed(0)).join(', ')}; node ${WORKER_NODE_ARGS.join(' ') || '(no options)'})`,
  );
  const machine = `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
  out(`machine: ${machine}`);
  const ratio = (a: number | undefined, b: number | undefined) =>
    a === undefined || b === undefined ? null : Number((a / b).toFixed(3));
  out(
    JSON.stringify({
      suite: 'pipeline',
      machine,
      events: EVENTS,
      workers: WORKERS,
      seedConcurrency: SEED_CONCURRENCY,
      workerNodeArgs: WORKER_NODE_ARGS.join(' '),
      ceilingEventsPerSecond: Math.round(ceilingRate),
      naiveEventsPerSecond: {
        redis: Math.round(naive.redis ?? 0),
        postgres: Math.round(naive.postgres ?? 0),
      },
      naiveEvents: NAIVE_EVENTS,
      seedEventsPerSecond: {
        redis: Math.round(seed.redis ?? 0),
        postgres: Math.round(seed.postgres ?? 0),
        topic: Math.round(seed.topic ?? 0),
      },
      seedVsCeiling: {
        redis: ratio(seed.redis, ceilingRate),
        postgres: ratio(seed.postgres, ceilingRate),
        topic: ratio(seed.topic, ceilingRate),
      },
      seedVsNaive: { redis: ratio(seed.redis, naive.redis), postgres: ratio(seed.postgres, naive.postgres) },
      tailRate: TAIL_RATE,
      tailLatencyMs: Object.fromEntries(
        Object.entries(latency).map(([k, v]) => [
          k,
          { p50: Number(v.p50.toFixed(2)), p99: Number(v.p99.toFixed(2)) },
        ]),
      ),
      peakWorkerRssMiB: Math.round(peakRss),
    }),
  );
} finally {
  for (const product of products) {
    await runner.deleteRuntimeState(product, { timeoutMs: 30_000 }).catch(() => undefined);
    await benchSink(layout, product)
      .drop()
      .catch(() => undefined);
  }
  for (const worker of workers) {
    worker.kill('SIGTERM');
    await once(worker, 'exit');
  }
  await runner.close();
  await eventLog.deleteStream(BENCH_STREAM);
  await eventLog.deleteStream(WARMUP_STREAM).catch(() => undefined);
  await eventLog.close();
  await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await pool.end();
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.unlink(...keys);
  } while (cursor !== '0');
  redis.disconnect();
}
