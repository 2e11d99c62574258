/**
 * A pipeline worker process of the pipeline benchmark (`runWorkerProcess` with the benchmark's
 * sinks). Prints `ready` once it takes jobs; SIGTERM drains and exits. One JSON argument.
 * BENCH_MEMORY_TRACE=1 prints its memory and heap spaces to stderr twice a second.
 */
import v8 from 'node:v8';
import { Redis } from 'ioredis';
import pg from 'pg';
import { RedisEventLog } from '../lib/eventlog/redis-event-log.ts';
import { createLogger } from '../lib/logger.ts';
import { redisConnector } from '../worker/redis-connector.ts';
import { runWorkerProcess } from '../worker/worker-process.ts';
import { benchSink } from './_pipeline-shared.ts';

const config = JSON.parse(process.argv[2]) as {
  redisUrl: string;
  postgresUrl: string;
  prefix: string;
  schema: string;
  seedConcurrency: number;
  seedBatchSize: number;
};
const redis = new Redis(config.redisUrl);
const pool = new pg.Pool({ connectionString: config.postgresUrl, max: config.seedConcurrency + 2 });
pool.on('error', () => undefined);
const eventLog = await RedisEventLog.create({
  redis,
  prefix: `${config.prefix}:log`,
  durability: { mode: 'none' },
});
const layout = { prefix: config.prefix, schema: config.schema, redis, pool, eventLog };
await runWorkerProcess({
  connect: redisConnector(config.redisUrl),
  eventLog,
  sinkFactory: (product) => benchSink(layout, product),
  logger: createLogger('warn', 'bench-worker'),
  prefix: config.prefix,
  seedConcurrency: config.seedConcurrency,
  seedBatchSize: config.seedBatchSize,
  onShutdown: async () => {
    await eventLog.close();
    await pool.end();
    redis.disconnect();
  },
});
process.stdout.write('ready\n');
if (process.env.BENCH_MEMORY_TRACE === '1') {
  setInterval(() => {
    const m = process.memoryUsage();
    const mb = (n: number) => (n / 2 ** 20).toFixed(0);
    const spaces = v8
      .getHeapSpaceStatistics()
      .map((s) => `${s.space_name.replace('_space', '')}=${mb(s.space_size)}/${mb(s.space_used_size)}`)
      .join(' ');
    process.stderr.write(
      `mem pid=${process.pid} rss=${mb(m.rss)} heapTotal=${mb(m.heapTotal)} heapUsed=${mb(m.heapUsed)} external=${mb(m.external)} ${spaces}\n`,
    );
  }, 500).unref();
}
