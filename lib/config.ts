/**
 * Offtake's configuration: read once from the environment (and CLI flags) into a typed,
 * frozen object, then passed to whatever needs it. No other module reads `process.env`.
 */
import { checkProductRef } from '../worker/pipeline-keys.ts';

/** Everything a running Offtake process can be configured with. */
export interface OfftakeConfig {
  /** Redis holding the embedded resource store and the event log. */
  readonly redisUrl: string;
  /** PostgreSQL for postgres targets (any libpq URL, unix-socket form included). */
  readonly postgresUrl: string | undefined;
  /** HTTP port of the API server. */
  readonly port: number;
  /** Address the API server binds to. */
  readonly host: string;
  /**
   * The bearer token every `/v1` request must carry (`Authorization: Bearer …`); undefined
   * leaves the API open, which is only sensible on loopback.
   */
  readonly apiToken: string | undefined;
  /** PEM files of the API's TLS certificate and key: both set, it serves HTTPS (the admission webhook needs it). */
  readonly tlsCertFile: string | undefined;
  readonly tlsKeyFile: string | undefined;
  /** Largest request body accepted, in bytes. */
  readonly maxBodyBytes: number;
  /** Key prefix under which Offtake keeps its own state in Redis. */
  readonly redisPrefix: string;
  /** Log level (pino): fatal, error, warn, info, debug, trace, silent. */
  readonly logLevel: string;
  /**
   * Port of `offtake operator`'s `/healthz`, `/readyz` and `/metrics`
   * (OFFTAKE_OPERATOR_HEALTH_PORT); none when absent.
   */
  readonly operatorHealthPort?: number;
  /** The event log's settings. */
  readonly eventLog: EventLogConfig;
  /** The pipeline workers' settings. */
  readonly worker: WorkerConfig;
}

/** How much work one pipeline worker process takes on at once. */
export interface WorkerConfig {
  /** Seed chunks replayed at once. */
  readonly seedConcurrency: number;
  /** Product tails followed at once. */
  readonly tailConcurrency: number;
  /** Events read per batch while seeding. */
  readonly seedBatchSize: number;
  /**
   * How long, in seconds, a deleted key's tombstone is kept after the tail's checkpoint has passed
   * it on every stream (OFFTAKE_WORKER_TOMBSTONE_RETENTION_SECONDS, default 3600); then it is
   * purged, so a product that deletes keeps no guard rows or keys for them for ever.
   */
  readonly tombstoneRetentionSeconds: number;
  /**
   * Dedicated mode: the one product this worker serves (OFFTAKE_WORKER_PRODUCT,
   * `<namespace>/<name>`); it then takes only that product build's queues. Absent: a shared worker.
   */
  readonly product?: { readonly namespace: string; readonly name: string };
  /** The build of {@link product} served (OFFTAKE_WORKER_BUILD, default 1); set only with a product. */
  readonly build?: number;
  /**
   * The URI of the dedicated product's own store (OFFTAKE_WORKER_STORE_URI: `redis://`,
   * `rediss://`, `postgres://` or `postgresql://`); set exactly when {@link product} is. It holds
   * a password: never log it or put it in a message.
   */
  readonly storeUri?: string;
  /** Port of the worker's `/healthz` and `/readyz` (OFFTAKE_WORKER_HEALTH_PORT); no health server when absent. */
  readonly healthPort?: number;
}

/** What "acknowledged" means for an append, and the event log's limits. */
export interface EventLogConfig {
  /** none: in Redis memory; everysec: AOF, fsync within ~1 s; always: fsynced before the answer. */
  readonly durability: 'none' | 'everysec' | 'always';
  /** Replicas that must confirm each append (Redis WAIT); 0 = none. */
  readonly replicas: number;
  /** How long to wait for those replicas before answering 503. */
  readonly replicaTimeoutMs: number;
  /** How long a retried source + id is recognised as a duplicate. */
  readonly dedupWindowSeconds: number;
  /** Largest stored event, in bytes (413 past it). */
  readonly maxEventBytes: number;
  /** Most events in one append (413 past it). */
  readonly maxBatchEvents: number;
  /** Largest request body of an append, in bytes. */
  readonly maxBodyBytes: number;
  /** Interval of SSE heartbeat comments. */
  readonly heartbeatMs: number;
  /** Most concurrent SSE followers per API process. */
  readonly maxFollowers: number;
}

/** The defaults every setting falls back to. */
export const DEFAULT_CONFIG: OfftakeConfig = Object.freeze({
  redisUrl: 'redis://127.0.0.1:6379',
  postgresUrl: undefined,
  port: 8080,
  host: '127.0.0.1',
  apiToken: undefined,
  tlsCertFile: undefined,
  tlsKeyFile: undefined,
  maxBodyBytes: 1024 * 1024,
  redisPrefix: 'offtake',
  logLevel: 'info',
  eventLog: Object.freeze({
    durability: 'everysec',
    replicas: 0,
    replicaTimeoutMs: 1000,
    dedupWindowSeconds: 86400,
    maxEventBytes: 256 * 1024,
    maxBatchEvents: 1000,
    maxBodyBytes: 4 * 1024 * 1024,
    heartbeatMs: 15000,
    maxFollowers: 1000,
  }),
  worker: Object.freeze({
    seedConcurrency: 2,
    tailConcurrency: 1000,
    seedBatchSize: 1000,
    tombstoneRetentionSeconds: 3600,
  }),
});

function durabilitySetting(raw: string | undefined): EventLogConfig['durability'] {
  if (raw === undefined || raw === '') return DEFAULT_CONFIG.eventLog.durability;
  if (raw === 'none' || raw === 'everysec' || raw === 'always') return raw;
  throw new Error(`OFFTAKE_EVENTLOG_DURABILITY must be none, everysec or always, got ${JSON.stringify(raw)}`);
}

function intSetting(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) {
    throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`);
  }
  return value;
}

function tokenSetting(raw: string | undefined): string | undefined {
  if (raw === undefined || raw === '') return undefined;
  // A short token can be guessed; the value itself never appears in the message.
  if (raw.length < 16) throw new Error('OFFTAKE_API_TOKEN must be at least 16 characters long');
  return raw;
}

function positive(name: string, value: number): number {
  if (value === 0) throw new Error(`${name} must be at least 1`);
  return value;
}

function portSetting(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined || raw === '') return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1 || value > 65535) {
    throw new Error(`${name} must be a port number (1-65535), got ${JSON.stringify(raw)}`);
  }
  return value;
}

function productSetting(raw: string | undefined): WorkerConfig['product'] {
  if (raw === undefined || raw === '') return undefined;
  const parts = raw.split('/');
  const problem = `OFFTAKE_WORKER_PRODUCT must be <namespace>/<name>, both DNS-1123 labels (lower-case letters, digits and "-"), got ${JSON.stringify(raw)}`;
  if (parts.length !== 2) throw new Error(problem);
  const [namespace, name] = parts;
  try {
    checkProductRef({ namespace, name });
  } catch {
    throw new Error(problem);
  }
  return Object.freeze({ namespace, name });
}

function healthSettings(env: Record<string, string | undefined>): Pick<WorkerConfig, 'healthPort'> {
  const healthPort = portSetting('OFFTAKE_WORKER_HEALTH_PORT', env.OFFTAKE_WORKER_HEALTH_PORT);
  return healthPort === undefined ? {} : { healthPort };
}

/** URI schemes of the stores a dedicated worker writes to. */
const STORE_URI_SCHEME = /^(rediss?|postgres(ql)?):\/\/./i;

/** The dedicated-mode settings: all or nothing, so a half-configured worker does not start as a shared one. */
function dedicatedSettings(
  env: Record<string, string | undefined>,
): Pick<WorkerConfig, 'product' | 'build' | 'storeUri'> {
  const product = productSetting(env.OFFTAKE_WORKER_PRODUCT);
  const storeUri = env.OFFTAKE_WORKER_STORE_URI || undefined;
  const rawBuild = env.OFFTAKE_WORKER_BUILD || undefined;
  if (product === undefined) {
    // The names only: the URI holds a password.
    if (storeUri !== undefined)
      throw new Error('OFFTAKE_WORKER_STORE_URI is set without OFFTAKE_WORKER_PRODUCT');
    if (rawBuild !== undefined) throw new Error('OFFTAKE_WORKER_BUILD is set without OFFTAKE_WORKER_PRODUCT');
    return {};
  }
  if (storeUri === undefined) {
    throw new Error(
      "OFFTAKE_WORKER_STORE_URI must be set with OFFTAKE_WORKER_PRODUCT (the product's own store)",
    );
  }
  if (!STORE_URI_SCHEME.test(storeUri)) {
    throw new Error(
      'OFFTAKE_WORKER_STORE_URI must be a redis://, rediss://, postgres:// or postgresql:// URI',
    );
  }
  const build = positive('OFFTAKE_WORKER_BUILD', intSetting('OFFTAKE_WORKER_BUILD', rawBuild, 1));
  return { product, build, storeUri };
}

/** Reads the configuration from an environment map (normally `process.env`), then applies overrides. */
export function loadConfig(
  env: Record<string, string | undefined>,
  overrides: Partial<OfftakeConfig> = {},
): OfftakeConfig {
  const d = DEFAULT_CONFIG.eventLog;
  const w = DEFAULT_CONFIG.worker;
  const fromEnv: OfftakeConfig = {
    redisUrl: env.OFFTAKE_REDIS_URL || DEFAULT_CONFIG.redisUrl,
    postgresUrl: env.OFFTAKE_POSTGRES_URL || DEFAULT_CONFIG.postgresUrl,
    port: intSetting('OFFTAKE_PORT', env.OFFTAKE_PORT, DEFAULT_CONFIG.port),
    host: env.OFFTAKE_HOST || DEFAULT_CONFIG.host,
    apiToken: tokenSetting(env.OFFTAKE_API_TOKEN),
    tlsCertFile: env.OFFTAKE_TLS_CERT_FILE || undefined,
    tlsKeyFile: env.OFFTAKE_TLS_KEY_FILE || undefined,
    maxBodyBytes: intSetting(
      'OFFTAKE_MAX_BODY_BYTES',
      env.OFFTAKE_MAX_BODY_BYTES,
      DEFAULT_CONFIG.maxBodyBytes,
    ),
    redisPrefix: env.OFFTAKE_REDIS_PREFIX || DEFAULT_CONFIG.redisPrefix,
    logLevel: env.OFFTAKE_LOG_LEVEL || DEFAULT_CONFIG.logLevel,
    operatorHealthPort: portSetting('OFFTAKE_OPERATOR_HEALTH_PORT', env.OFFTAKE_OPERATOR_HEALTH_PORT),
    eventLog: Object.freeze({
      durability: durabilitySetting(env.OFFTAKE_EVENTLOG_DURABILITY),
      replicas: intSetting('OFFTAKE_EVENTLOG_REPLICAS', env.OFFTAKE_EVENTLOG_REPLICAS, d.replicas),
      replicaTimeoutMs: intSetting(
        'OFFTAKE_EVENTLOG_REPLICA_TIMEOUT_MS',
        env.OFFTAKE_EVENTLOG_REPLICA_TIMEOUT_MS,
        d.replicaTimeoutMs,
      ),
      dedupWindowSeconds: intSetting(
        'OFFTAKE_EVENTLOG_DEDUP_WINDOW_SECONDS',
        env.OFFTAKE_EVENTLOG_DEDUP_WINDOW_SECONDS,
        d.dedupWindowSeconds,
      ),
      maxEventBytes: intSetting(
        'OFFTAKE_EVENTLOG_MAX_EVENT_BYTES',
        env.OFFTAKE_EVENTLOG_MAX_EVENT_BYTES,
        d.maxEventBytes,
      ),
      maxBatchEvents: intSetting(
        'OFFTAKE_EVENTLOG_MAX_BATCH_EVENTS',
        env.OFFTAKE_EVENTLOG_MAX_BATCH_EVENTS,
        d.maxBatchEvents,
      ),
      maxBodyBytes: intSetting(
        'OFFTAKE_EVENTLOG_MAX_BODY_BYTES',
        env.OFFTAKE_EVENTLOG_MAX_BODY_BYTES,
        d.maxBodyBytes,
      ),
      heartbeatMs: intSetting(
        'OFFTAKE_EVENTLOG_HEARTBEAT_MS',
        env.OFFTAKE_EVENTLOG_HEARTBEAT_MS,
        d.heartbeatMs,
      ),
      maxFollowers: intSetting(
        'OFFTAKE_EVENTLOG_MAX_FOLLOWERS',
        env.OFFTAKE_EVENTLOG_MAX_FOLLOWERS,
        d.maxFollowers,
      ),
    }),
    worker: Object.freeze({
      seedConcurrency: positive(
        'OFFTAKE_WORKER_SEED_CONCURRENCY',
        intSetting('OFFTAKE_WORKER_SEED_CONCURRENCY', env.OFFTAKE_WORKER_SEED_CONCURRENCY, w.seedConcurrency),
      ),
      tailConcurrency: positive(
        'OFFTAKE_WORKER_TAIL_CONCURRENCY',
        intSetting('OFFTAKE_WORKER_TAIL_CONCURRENCY', env.OFFTAKE_WORKER_TAIL_CONCURRENCY, w.tailConcurrency),
      ),
      seedBatchSize: positive(
        'OFFTAKE_WORKER_SEED_BATCH_SIZE',
        intSetting('OFFTAKE_WORKER_SEED_BATCH_SIZE', env.OFFTAKE_WORKER_SEED_BATCH_SIZE, w.seedBatchSize),
      ),
      tombstoneRetentionSeconds: intSetting(
        'OFFTAKE_WORKER_TOMBSTONE_RETENTION_SECONDS',
        env.OFFTAKE_WORKER_TOMBSTONE_RETENTION_SECONDS,
        w.tombstoneRetentionSeconds,
      ),
      ...dedicatedSettings(env),
      ...healthSettings(env),
    }),
  };
  const defined = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined));
  const config: OfftakeConfig = Object.freeze({ ...fromEnv, ...defined });
  if ((config.tlsCertFile === undefined) !== (config.tlsKeyFile === undefined)) {
    throw new Error('OFFTAKE_TLS_CERT_FILE and OFFTAKE_TLS_KEY_FILE must be set together');
  }
  return config;
}
