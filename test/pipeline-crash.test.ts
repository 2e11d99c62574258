/**
 * Crash safety of the pipeline: a worker process (test/fixtures/pipeline-worker.ts) is killed
 * with SIGKILL at random points — at least five times during the seed and five times during
 * the tail while events are being published — and restarted each time. At the end the redis,
 * postgres and topic targets hold exactly the state computed independently from the log, the
 * seed read every event up to the high-water mark exactly once (chunks resume from their
 * cursors), and the dead-letter stream holds each poison event once.
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
import { compareOffsets } from '../lib/eventlog/event-log.ts';
import { RedisEventLog } from '../lib/eventlog/redis-event-log.ts';
import { createLogger } from '../lib/logger.ts';
import { deadLetterStream } from '../worker/pipeline-keys.ts';
import { PipelineRunner, type PipelineState } from '../worker/pipeline-runner.ts';
import { redisConnector } from '../worker/redis-connector.ts';
import { TEST_REDIS_URL, dropPrefix, testRedis, uniquePrefix } from './helpers/redis.ts';
import {
  OrderEvents,
  POSTGRES_URL,
  STREAMS,
  actualState,
  appendEvents,
  diffRows,
  expectedState,
  finalPositions,
  kept,
  prng,
  readAll,
  targetSink,
  testProduct,
  waitFor,
  type TestSinkOptions,
} from './pipeline-helpers.ts';

const EVENTS = Number(process.env.PIPELINE_TEST_EVENTS ?? 100_000);
const SEED = Number(process.env.PIPELINE_CRASH_SEED ?? Date.now() % 100_000);
const KILLS = 5;
const FIXTURE = fileURLToPath(new URL('./fixtures/pipeline-worker.ts', import.meta.url));

let redis: Redis;
let pool: pg.Pool;
let prefix: string;
let schema: string;
let eventLog: RedisEventLog;
let sinkOptions: TestSinkOptions;

before(async () => {
  redis = testRedis();
  prefix = uniquePrefix('pipeline-crash');
  schema = `test_crash_${randomBytes(4).toString('hex')}`;
  pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 4 });
  eventLog = await RedisEventLog.create({ redis, prefix: `${prefix}:log`, durability: { mode: 'none' } });
  sinkOptions = { layout: { prefix, schema }, redis, pool, eventLog };
  await appendEvents(eventLog, new OrderEvents({ seed: SEED, orders: 20_000 }), EVENTS);
});

after(async () => {
  await eventLog.close();
  await dropPrefix(redis, prefix);
  await pool.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
  await pool.end();
  redis.disconnect();
});

/** Starts the worker fixture and waits until it takes jobs. */
async function startWorker(): Promise<ChildProcess> {
  const config = {
    redisUrl: TEST_REDIS_URL,
    prefix,
    logPrefix: `${prefix}:log`,
    schema,
    seedConcurrency: 2,
    // Short locks: a killed worker's jobs are taken over within a few seconds.
    lockDurationMs: 2000,
    stalledIntervalMs: 1000,
    // Slow writes keep the seed long enough to be killed inside it five times.
    writeDelayMs: 40,
  };
  const child = spawn(process.execPath, [FIXTURE, JSON.stringify(config)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const lines = createInterface({ input: child.stdout });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the worker did not start: ${stderr}`)), 30_000);
    child.once('exit', (code) => reject(new Error(`the worker exited with ${code}: ${stderr}`)));
    lines.on('line', (line) => {
      if (line === 'ready') {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  child.removeAllListeners('exit');
  return child;
}

async function kill(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGKILL');
  await once(child, 'exit');
}

describe('pipeline: SIGKILL during the seed and the tail', () => {
  it(`ends in the independently computed state (seed ${SEED})`, async () => {
    const random = prng(SEED);
    const runner = new PipelineRunner({
      connect: redisConnector(TEST_REDIS_URL),
      eventLog,
      logger: createLogger('silent'),
      prefix,
      chunkEvents: 10_000,
    });
    const products = (['redis', 'postgres', 'topic'] as const).map((t) =>
      testProduct('crash', `crash-${t}`, t),
    );
    let worker: ChildProcess | undefined;
    let publishing = true;
    let publisher: Promise<void> = Promise.resolve();
    try {
      for (const product of products) await runner.start(product);
      const phases = async () => Promise.all(products.map(async (p) => (await runner.state(p))!));
      const hwm = (await runner.state(products[0]))!.seed.highWaterMark;

      let seedKills = 0;
      while (seedKills < KILLS) {
        worker = await startWorker();
        await delay(300 + random() * 1200);
        const states = await phases();
        assert.ok(
          states.some((s) => s.phase === 'seeding'),
          `the seed ended after ${seedKills} kills; it must last for ${KILLS}`,
        );
        await kill(worker);
        seedKills++;
      }
      worker = await startWorker();
      await waitFor(
        async () => {
          const states = await phases();
          const failed = states.find((s) => s.phase === 'failed');
          if (failed !== undefined) throw new Error(`failed: ${failed.error}`);
          return (
            states.every((s) => s.phase === 'tailing') ||
            states.map((s) => `${s.phase} ${s.seed.processed}`).join(', ')
          );
        },
        'the seed to end',
        180_000,
      );

      // Events keep arriving while the tail is killed.
      const live = new OrderEvents({ seed: SEED + 1, orders: 20_000, idPrefix: 'live' });
      publisher = (async () => {
        while (publishing) {
          await appendEvents(eventLog, live, 100, STREAMS, 100);
          await delay(40);
        }
      })();
      let tailKills = 0;
      while (tailKills < KILLS) {
        await delay(500 + random() * 1500);
        const states = await phases();
        assert.ok(states.every((s) => s.phase === 'tailing'));
        await kill(worker);
        tailKills++;
        worker = await startWorker();
      }
      publishing = false;
      await publisher;

      const log = await readAll(eventLog, STREAMS);
      const expected = expectedState(log);
      let final: PipelineState[] = [];
      await waitFor(
        async () => {
          final = await phases();
          const want = finalPositions(log);
          for (const state of final) {
            for (const stream of STREAMS) {
              if (state.checkpoint?.[stream] !== want[stream])
                return `checkpoint ${JSON.stringify(state.checkpoint)}`;
            }
          }
          return true;
        },
        'the tails to catch up',
        120_000,
      );
      for (const product of products) {
        const diff = diffRows(expected.rows, await actualState(sinkOptions, product));
        assert.equal(diff, undefined, `${product.spec.target.type} target: ${diff}`);
      }
      const seeded = kept(log).filter(
        ({ stream, event }) => compareOffsets(event.offset, hwm[stream]) <= 0,
      ).length;
      for (const state of final) {
        assert.equal(state.phase, 'tailing');
        assert.equal(
          state.seed.processed,
          seeded,
          'the seed read every event up to the high-water mark once',
        );
        assert.equal(state.lag?.events, 0);
      }
      for (const product of products) {
        const letters = await eventLog.describe(deadLetterStream(product));
        assert.equal(letters.length, expected.dead.size, 'each poison event is dead-lettered once');
      }
    } finally {
      publishing = false;
      await publisher.catch(() => undefined);
      if (worker !== undefined) await kill(worker);
      for (const product of products) {
        await runner.deleteRuntimeState(product, { timeoutMs: 10_000 }).catch(() => undefined);
        await targetSink(sinkOptions, product)
          .drop()
          .catch(() => undefined);
      }
      await runner.close();
    }
  });
});
