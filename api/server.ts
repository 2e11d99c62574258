/**
 * The only place that listens: wires configuration, Redis, the resource store, the validator
 * and the event log into the app, and serves it until SIGINT/SIGTERM.
 */
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { KubeConfig } from '@kubernetes/client-node';
import { Redis } from 'ioredis';
import type { OfftakeConfig } from '../lib/config.ts';
import type { Logger } from '../lib/logger.ts';
import { OfftakeMetrics } from '../lib/metrics.ts';
import { KubernetesResourceStore } from '../lib/resource-store/kubernetes-resource-store.ts';
import { RedisResourceStore } from '../lib/resource-store/redis-resource-store.ts';
import { DataProductValidator } from '../lib/validation/validator.ts';
import { RedisEventLog } from '../lib/eventlog/redis-event-log.ts';
import type { ResourceStore } from '../lib/resource-store/resource-store.ts';
import type { Express } from 'express';
import { ProductRecords } from '../operator/product-records.ts';
import type { ConnectionReader } from '../operator/product-connection.ts';
import { createApp, type ExtraRouter } from './app.ts';
import { admissionRoute } from './routes/admission.ts';
import { connectionRoute } from './routes/connection.ts';
import { streamsRouter } from './routes/streams.ts';
import { streamsOpenApiPaths } from './routes/streams-openapi.ts';
import { VERSION } from '../lib/version.ts';

/** A running API server. */
export interface RunningServer {
  server: Server;
  port: number;
  close(): Promise<void>;
}

/** Connects to Redis and fails fast, with a message naming the URL (without credentials). */
export async function connectRedis(url: string, logger: Logger): Promise<Redis> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 3, enableOfflineQueue: true });
  redis.on('error', (err: Error) => logger.warn({ err: err.message }, 'redis connection error'));
  try {
    await redis.connect();
    await redis.ping();
  } catch (err) {
    redis.disconnect();
    throw new Error(`cannot reach Redis at ${redactUrl(url)}: ${(err as Error).message}`, { cause: err });
  }
  return redis;
}

/** A URL with its password replaced, safe for logs and errors. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<unparseable URL>';
  }
}

/** The event log on the configured Redis, with the configured durability and limits. */
export function createEventLog(redis: Redis, config: OfftakeConfig): Promise<RedisEventLog> {
  const ev = config.eventLog;
  return RedisEventLog.create({
    redis,
    prefix: `${config.redisPrefix}:log`,
    durability: { mode: ev.durability, replicas: ev.replicas, timeoutMs: ev.replicaTimeoutMs },
    dedupWindowSeconds: ev.dedupWindowSeconds,
    limits: { maxEventBytes: ev.maxEventBytes, maxBatchEvents: ev.maxBatchEvents },
  });
}

/** The event log's HTTP face, mounted at `/v1/streams`, with its OpenAPI paths. */
export function streamsRoute(
  eventLog: RedisEventLog,
  config: OfftakeConfig,
  logger: Logger,
  metrics?: OfftakeMetrics,
): ExtraRouter {
  const ev = config.eventLog;
  return {
    path: '/v1/streams',
    router: streamsRouter({
      eventLog,
      logger,
      metrics,
      limits: { maxBodyBytes: ev.maxBodyBytes, heartbeatMs: ev.heartbeatMs, maxFollowers: ev.maxFollowers },
    }),
    openApiPaths: streamsOpenApiPaths(),
  };
}

/** What the platform's HTTP API serves from: `offtake api` and `offtake up` pass the same parts. */
export interface PlatformApiParts {
  /** The platform's Redis, also asked for `/readyz`. */
  redis: Redis;
  store: ResourceStore;
  eventLog: RedisEventLog;
  /** Where the connection details of products are read (the operator's records). */
  connections: ConnectionReader;
  /** Whether specs may ask for `placement: dedicated` (Kubernetes mode); default false. */
  allowDedicated?: boolean;
  /**
   * The process's metrics, served at `/metrics` with the DataProduct and event-log gauges
   * added; `offtake up` passes the registry its operator and workers report to as well.
   */
  metrics: OfftakeMetrics;
}

/**
 * The platform's HTTP API, built without listening: DataProducts (with watch), their connection
 * details, the event log, OpenAPI and health. One code path for `offtake api` and `offtake up`.
 */
export function createPlatformApp(config: OfftakeConfig, logger: Logger, parts: PlatformApiParts): Express {
  const { redis, store, eventLog, connections, metrics } = parts;
  metrics.watchProducts(store);
  metrics.watchEventLog(eventLog);
  if (config.apiToken === undefined && !isLoopback(config.host)) {
    logger.warn(
      { host: config.host },
      'the API has no token and listens beyond loopback: anyone who reaches it can read product credentials; set OFFTAKE_API_TOKEN',
    );
  }
  // One validator for the HTTP API and the admission webhook: the kubectl path gets the same answers.
  const validator = new DataProductValidator({ allowDedicated: parts.allowDedicated ?? false });
  return createApp({
    store,
    validator,
    logger,
    maxBodyBytes: config.maxBodyBytes,
    version: VERSION,
    apiToken: config.apiToken,
    ready: async () => (await redis.ping()) === 'PONG',
    metrics,
    extraRouters: [
      streamsRoute(eventLog, config, logger, metrics),
      connectionRoute({ store, connections }),
      admissionRoute({ validator }),
    ],
  });
}

/** Whether a bind address only accepts connections from this machine. */
function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

/** A certificate and key (PEM) to serve HTTPS with, e.g. for kube-apiserver calling the admission webhook. */
export interface TlsOptions {
  cert: string | Buffer;
  key: string | Buffer;
}

/**
 * Listens on `config.port` (0 picks a free port) and answers the port actually bound; over
 * HTTPS when `tls` is given or configured (`OFFTAKE_TLS_CERT_FILE`/`_KEY_FILE`): kube-apiserver
 * calls admission webhooks only over HTTPS.
 */
export async function listen(
  app: Express,
  config: OfftakeConfig,
  tls?: TlsOptions,
): Promise<{ server: Server; port: number }> {
  if (tls === undefined && config.tlsCertFile !== undefined && config.tlsKeyFile !== undefined) {
    tls = { cert: readFileSync(config.tlsCertFile), key: readFileSync(config.tlsKeyFile) };
  }
  const server = await new Promise<Server>((resolve, reject) => {
    const s: Server =
      tls === undefined
        ? app.listen(config.port, config.host, () => resolve(s))
        : createHttpsServer({ cert: tls.cert, key: tls.key }, app).listen(config.port, config.host, () =>
            resolve(s),
          );
    s.once('error', reject);
  });
  const address = server.address();
  return { server, port: typeof address === 'object' && address !== null ? address.port : config.port };
}

/**
 * Stops listening and waits until every answer is finished. Watches and event-log followers
 * never finish on their own: `endStreams` closes their sources (the resource store's watches,
 * the event log's followers), which ends them, before the wait.
 */
export async function stopServer(server: Server, endStreams: () => Promise<void>): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  await endStreams();
  // An ended stream leaves its keep-alive connection idle, which close() alone would wait out.
  const sweep = setInterval(() => server.closeIdleConnections(), 20);
  try {
    await closed;
  } finally {
    clearInterval(sweep);
  }
}

/** Starts the API on `config.port` (0 picks a free port). */
export async function startApiServer(
  config: OfftakeConfig,
  logger: Logger,
  options: { kubeConfig?: KubeConfig } = {},
): Promise<RunningServer> {
  const redis = await connectRedis(config.redisUrl, logger);
  // In a cluster, products submitted over HTTP become DataProduct resources the operator watches.
  const store: ResourceStore =
    options.kubeConfig === undefined
      ? new RedisResourceStore(redis, { prefix: `${config.redisPrefix}:resources` })
      : new KubernetesResourceStore(options.kubeConfig, { fieldManager: 'offtake-api' });
  const eventLog = await createEventLog(redis, config);
  const connections = ProductRecords.forPlatform(redis, config.redisPrefix);
  const app = createPlatformApp(config, logger, {
    redis,
    store,
    eventLog,
    connections,
    metrics: new OfftakeMetrics(),
  });
  const { server, port } = await listen(app, config);
  logger.info(
    {
      port,
      redis: redactUrl(config.redisUrl),
      resources:
        options.kubeConfig === undefined
          ? 'redis'
          : (options.kubeConfig.getCurrentCluster()?.server ?? 'kubernetes'),
    },
    'offtake api listening',
  );
  return {
    server,
    port,
    close: async () => {
      await stopServer(server, async () => {
        await store.close();
        await eventLog.close();
      });
      redis.disconnect();
    },
  };
}
