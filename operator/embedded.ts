/**
 * Embedded mode in one process: the HTTP API, the operator and the pipeline workers, against the
 * platform's Redis (resource store, event log, pipeline queues, redis targets, topics) and,
 * when configured, its Postgres (postgres targets). Both are checked at start-up, and an
 * unreachable one stops the start with a message naming it (never its password).
 */
import type { Server } from 'node:http';
import type { Redis } from 'ioredis';
import pg from 'pg';
import {
  connectRedis,
  createEventLog,
  createPlatformApp,
  listen,
  redactUrl,
  stopServer,
} from '../api/server.ts';
import type { OfftakeConfig } from '../lib/config.ts';
import type { Logger } from '../lib/logger.ts';
import { OfftakeMetrics } from '../lib/metrics.ts';
import { RedisResourceStore } from '../lib/resource-store/redis-resource-store.ts';
import { startHealthServer, type ReadinessCheck } from '../worker/health-server.ts';
import { pipelineQueues } from '../worker/pipeline-keys.ts';
import type { PipelineWorker, SinkFactory } from '../worker/pipeline-worker.ts';
import { redisConnector } from '../worker/redis-connector.ts';
import { runWorkerProcess, type RunningWorker } from '../worker/worker-process.ts';
import type { DataProductController } from './controller.ts';
import { startOperatorParts, workerSettings, type OperatorTuning } from './operator-parts.ts';
import {
  checkDedicatedStore,
  closeDedicatedStore,
  dedicatedSinkFactory,
  openDedicatedStore,
  productSinkFactory,
  type DedicatedStore,
} from './product-sinks.ts';

/** Tuning of the embedded parts (tests shorten timings); configuration proper comes from {@link OfftakeConfig}. */
export interface EmbeddedOptions extends OperatorTuning {
  /** Milliseconds to wait for a Postgres connection before calling it unreachable (default 5000). */
  postgresConnectTimeoutMs?: number;
}

/** A running embedded Offtake. */
export interface RunningEmbedded {
  server: Server;
  port: number;
  /** `http://<host>:<port>` of the API. */
  url: string;
  controller: DataProductController;
  /** Stops the API, the operator and the workers (running batches drain), and closes connections. */
  close(): Promise<void>;
}

/** Connects to Postgres and fails fast, with a message naming the server (without credentials). */
export async function connectPostgres(
  url: string,
  logger: Logger,
  connectTimeoutMs = 5000,
): Promise<pg.Pool> {
  const pool = new pg.Pool({
    connectionString: url,
    max: 10,
    connectionTimeoutMillis: connectTimeoutMs,
    idleTimeoutMillis: 30_000,
    application_name: 'offtake',
  });
  // An idle client's error (the server went away) must not crash the process; the next query reports it.
  pool.on('error', (err) => logger.warn({ err: err.message }, 'postgres connection error'));
  try {
    await pool.query('SELECT 1');
  } catch (err) {
    await pool.end().catch(() => undefined);
    throw new Error(`cannot reach Postgres at ${redactUrl(url)}: ${(err as Error).message}`, { cause: err });
  }
  return pool;
}

/** Starts the API on `config.host:config.port` (0 picks a free port), the operator and the workers. */
export async function startEmbedded(
  config: OfftakeConfig,
  logger: Logger,
  options: EmbeddedOptions = {},
): Promise<RunningEmbedded> {
  const redis = await connectRedis(config.redisUrl, logger);
  const closers: (() => Promise<unknown>)[] = [
    () => {
      redis.disconnect();
      return Promise.resolve();
    },
  ];
  const closeAll = async () => {
    for (const close of closers.splice(0).reverse()) await close().catch(() => undefined);
  };
  try {
    return await startParts(config, logger, options, redis, closers, closeAll);
  } catch (err) {
    await closeAll();
    throw err;
  }
}

async function startParts(
  config: OfftakeConfig,
  logger: Logger,
  options: EmbeddedOptions,
  redis: Redis,
  closers: (() => Promise<unknown>)[],
  closeAll: () => Promise<void>,
): Promise<RunningEmbedded> {
  const prefix = config.redisPrefix;
  const pool =
    config.postgresUrl === undefined
      ? undefined
      : await connectPostgres(config.postgresUrl, logger, options.postgresConnectTimeoutMs);
  if (pool !== undefined) closers.push(() => pool.end());

  const eventLog = await createEventLog(redis, config);
  closers.push(() => eventLog.close());
  const store = new RedisResourceStore(redis, { prefix: `${prefix}:resources` });
  closers.push(() => store.close());
  // One registry for the process: the API serves what its workers report, too.
  const metrics = new OfftakeMetrics();
  const { controller, records } = await startOperatorParts(
    config,
    logger,
    { ...options, metrics },
    { redis, pool, eventLog, store },
    closers,
  );

  const app = createPlatformApp(config, logger, {
    redis,
    store,
    eventLog,
    connections: records,
    metrics,
  });
  const { server, port } = await listen(app, config);
  closers.push(() =>
    stopServer(server, async () => {
      await store.close();
      await eventLog.close();
    }),
  );
  const host = config.host === '0.0.0.0' || config.host === '::' ? '127.0.0.1' : config.host;
  logger.info(
    {
      port,
      redis: redactUrl(config.redisUrl),
      postgres: config.postgresUrl === undefined ? null : redactUrl(config.postgresUrl),
    },
    'offtake up: api, operator and workers running',
  );
  return { server, port, url: `http://${host}:${port}`, controller, close: closeAll };
}

/** How long a readiness answer is reused (probes of several kinds come close together), in ms. */
const READINESS_CACHE_MS = 2000;
/** How long the dedicated store may take to answer a readiness check, in ms. */
const STORE_CHECK_TIMEOUT_MS = 1000;

/** What a worker's readiness depends on, filled in as the process starts. */
export interface WorkerHealthParts {
  started: boolean;
  /** The running worker, once started (not ready while it drains). */
  worker?: Pick<PipelineWorker, 'closingDown'>;
  redis?: Redis;
  /** Dedicated mode: the product build's store, and its URI (for masking it in messages). */
  store?: { connection: DedicatedStore; uri: string };
}

/**
 * Ready: the worker has started, the platform Redis is connected and, in dedicated mode, the
 * product's store answers. Answers are reused for {@link READINESS_CACHE_MS}.
 */
export function workerReadiness(parts: WorkerHealthParts): ReadinessCheck {
  const check = async (): Promise<true | string> => {
    if (!parts.started) return 'the worker has not started yet';
    const status = parts.redis?.status ?? 'not connected';
    if (status !== 'ready') return `the platform Redis is not connected (${status})`;
    if (parts.store === undefined) return true;
    const { connection, uri } = parts.store;
    return (await checkDedicatedStore(connection, uri, STORE_CHECK_TIMEOUT_MS)) ?? true;
  };
  let cached: { at: number; answer: Promise<true | string> } | undefined;
  return () => {
    // Draining takes no new work: say so at once, not after the cache runs out.
    if (parts.worker?.closingDown === true) return Promise.resolve('the worker is draining (shutting down)');
    const now = Date.now();
    if (cached === undefined || now - cached.at >= READINESS_CACHE_MS) cached = { at: now, answer: check() };
    return cached.answer;
  };
}

/**
 * `offtake worker`: pipeline workers in a process of their own. Shared (the default): they write
 * into the same shared stores, under the same names, as the workers of `offtake up` (so either
 * may take any job). Dedicated (OFFTAKE_WORKER_PRODUCT set): they take only that product build's
 * queues and write to its own store at OFFTAKE_WORKER_STORE_URI. With OFFTAKE_WORKER_HEALTH_PORT,
 * `/healthz` and `/readyz` answer on that port. Drains and exits on SIGTERM/SIGINT.
 */
export async function startWorkerProcess(config: OfftakeConfig, logger: Logger): Promise<RunningWorker> {
  const { product, build, storeUri, healthPort } = config.worker;
  const served = product === undefined ? undefined : { ...product, build: build ?? 1 };
  const parts: WorkerHealthParts = { started: false };
  const metrics = new OfftakeMetrics();
  // Listening first: liveness answers while the rest starts, and readiness says what is missing.
  const health =
    healthPort === undefined
      ? undefined
      : await startHealthServer({ port: healthPort, ready: workerReadiness(parts), metrics });
  let redis: Redis | undefined;
  let pool: pg.Pool | undefined;
  let store: DedicatedStore | undefined;
  try {
    redis = await connectRedis(config.redisUrl, logger);
    parts.redis = redis;
    if (served !== undefined && storeUri !== undefined) {
      // The product's store is its own; the platform's Postgres is never written here.
      store = openDedicatedStore(storeUri, logger);
      parts.store = { connection: store, uri: storeUri };
    } else if (config.postgresUrl !== undefined) {
      pool = await connectPostgres(config.postgresUrl, logger);
    }
    const eventLog = await createEventLog(redis, config);
    const sinkFactory: SinkFactory =
      served === undefined || store === undefined
        ? productSinkFactory({ redis, pool, eventLog, platformPrefix: config.redisPrefix })
        : dedicatedSinkFactory({ product: served, store });
    logger.info(
      served === undefined
        ? { mode: 'shared' }
        : { mode: 'dedicated', product: `${served.namespace}/${served.name}`, build: served.build },
      'offtake worker mode',
    );
    const [openRedis, openPool, openStore] = [redis, pool, store];
    const running = await runWorkerProcess({
      ...workerSettings(config),
      ...(served === undefined ? {} : { queues: pipelineQueues(served, true) }),
      connect: redisConnector(config.redisUrl),
      eventLog,
      logger,
      metrics,
      prefix: config.redisPrefix,
      sinkFactory,
      onShutdown: async () => {
        await health?.close();
        await eventLog.close();
        await openPool?.end();
        if (openStore !== undefined) await closeDedicatedStore(openStore);
        openRedis.disconnect();
      },
    });
    parts.worker = running.worker;
    parts.started = true;
    return running;
  } catch (err) {
    await health?.close().catch(() => undefined);
    await pool?.end().catch(() => undefined);
    if (store !== undefined) await closeDedicatedStore(store).catch(() => undefined);
    redis?.disconnect();
    throw err;
  }
}
