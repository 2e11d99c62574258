/**
 * The sinks of products' builds in their shared-placement stores, named by `store-names.ts`:
 * the same names the provisioners create and grant. The pipeline workers get {@link productSinkFactory};
 * the provisioners use {@link productSink} to prepare a postgres table before granting it.
 *
 * A dedicated product build's worker (`offtake worker` with OFFTAKE_WORKER_PRODUCT) writes to
 * the build's own server instead: {@link openDedicatedStore} connects to it and
 * {@link dedicatedSinkFactory} makes the sink, under the names its connection Secret tells
 * readers (records under `records:` in Redis; the table as a view in `public` in Postgres).
 */
import { Redis } from 'ioredis';
import pg from 'pg';
import type { EventLog } from '../lib/eventlog/event-log.ts';
import type { Logger } from '../lib/logger.ts';
import { buildOf, type ProductRef } from '../worker/pipeline-keys.ts';
import type { PipelineProduct } from '../worker/pipeline-state-store.ts';
import type { SinkFactory } from '../worker/pipeline-worker.ts';
import { PostgresSink } from '../worker/sinks/postgres-sink.ts';
import { RedisSink } from '../worker/sinks/redis-sink.ts';
import type { Sink } from '../worker/sinks/sink.ts';
import { TopicSink } from '../worker/sinks/topic-sink.ts';
import { DEDICATED_POSTGRES_SCHEMA, DEDICATED_REDIS_KEY_PREFIX } from './kube/dedicated.ts';
import { ProvisioningError } from './provisioning-error.ts';
import { productStoreNames, topicStreamName } from './store-names.ts';

/** Where product sinks write: the platform's Redis (records, topics), its Postgres and its event log. */
export interface ProductSinkDeps {
  redis: Redis;
  /** The platform's Postgres; absent when none is configured (postgres targets then fail). */
  pool: pg.Pool | undefined;
  eventLog: EventLog;
  /** The platform's Redis key prefix (e.g. `offtake`). */
  platformPrefix: string;
}

/** The sink of a product's target. */
export function productSink(deps: ProductSinkDeps, product: PipelineProduct): Sink {
  const names = productStoreNames(deps.platformPrefix, product);
  const target = product.spec.target;
  if (target.type === 'postgres') {
    if (deps.pool === undefined || target.postgres === undefined) {
      throw new ProvisioningError(
        'PostgresNotConfigured',
        'This Offtake has no Postgres for postgres targets (set OFFTAKE_POSTGRES_URL).',
        { terminal: true },
      );
    }
    // Each build fills a storage table of its own; the operator decides which one readers see.
    return new PostgresSink(deps.pool, {
      schema: names.postgres.schema,
      table: target.postgres.table,
      columns: target.postgres.columns,
      storageTable: names.postgres.storageTable(target.postgres.table),
      ownsView: false,
    });
  }
  if (target.type === 'redis') {
    return new RedisSink(deps.redis, {
      keyPrefix: names.redis.keyPrefix,
      tombstonePrefix: names.redis.tombstonePrefix,
      checkpointKey: names.redis.checkpointKey,
      format: target.redis?.format ?? 'hash',
      ttlSeconds: target.redis?.ttlSeconds,
    });
  }
  return new TopicSink(deps.eventLog, deps.redis, {
    stream: topicStreamName(product, product.spec),
    product: `${product.namespace}/${product.name}`,
    checkpointKey: names.topicCheckpointKey,
  });
}

/** The {@link SinkFactory} the pipeline workers use for shared-placement products. */
export function productSinkFactory(deps: ProductSinkDeps): SinkFactory {
  return (product) => productSink(deps, product);
}

/** An open connection to a dedicated product build's own store. Its URI holds a password: it is never shown. */
export type DedicatedStore = { type: 'redis'; redis: Redis } | { type: 'postgres'; pool: pg.Pool };

/** The store type a dedicated store URI names by its scheme, or undefined for any other scheme. */
export function storeUriType(uri: string): DedicatedStore['type'] | undefined {
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(uri)?.[1]?.toLowerCase();
  if (scheme === 'redis' || scheme === 'rediss') return 'redis';
  if (scheme === 'postgres' || scheme === 'postgresql') return 'postgres';
  return undefined;
}

/** `text` with the URI and its password masked: driver messages may echo what they were given. */
function withoutSecrets(text: string, uri: string): string {
  let out = text.split(uri).join('<store URI>');
  let password = '';
  try {
    password = new URL(uri).password;
  } catch {
    // An unparseable URI has no password we could find; the whole URI is masked already.
  }
  for (const secret of new Set([password, safeDecode(password)])) {
    if (secret.length > 0) out = out.split(secret).join('***');
  }
  return out;
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/**
 * Connects to a dedicated product build's store at `uri` (redis://, rediss://, postgres:// or
 * postgresql://). Does not wait for it: a store that is not up yet (its StatefulSet still
 * starting) is retried in the background, and {@link checkDedicatedStore} says whether it answers.
 * Connection errors are logged without the URI.
 */
export function openDedicatedStore(uri: string, logger: Logger): DedicatedStore {
  const type = storeUriType(uri);
  let lastLogged: string | undefined;
  const onError = (err: Error) => {
    const message = withoutSecrets(err.message, uri);
    // A store that stays down fails every reconnect the same way: say so once, not every 2 s.
    if (message === lastLogged) return;
    lastLogged = message;
    logger.warn({ err: message }, 'dedicated store connection error');
  };
  if (type === 'redis') {
    const redis = new Redis(uri, { connectionName: 'offtake-dedicated-store', maxRetriesPerRequest: 3 });
    redis.on('error', onError);
    redis.on('ready', () => (lastLogged = undefined));
    return { type, redis };
  }
  if (type === 'postgres') {
    const pool = new pg.Pool({
      connectionString: uri,
      max: 10,
      connectionTimeoutMillis: 5000,
      idleTimeoutMillis: 30_000,
      application_name: 'offtake-worker',
    });
    // An idle client's error (the server went away) must not crash the process; the next query reports it.
    pool.on('error', onError);
    return { type, pool };
  }
  throw new Error('The dedicated store URI must be a redis://, rediss://, postgres:// or postgresql:// URI.');
}

/**
 * Whether a dedicated store answers (Redis PING, Postgres SELECT 1) within `timeoutMs`:
 * undefined when it does, else one line saying why not — without the URI or its password.
 */
export async function checkDedicatedStore(
  store: DedicatedStore,
  uri: string,
  timeoutMs: number,
): Promise<string | undefined> {
  if (store.type === 'redis' && store.redis.status !== 'ready') {
    return `the dedicated redis store is not connected (${store.redis.status})`;
  }
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
  });
  const probe = store.type === 'redis' ? store.redis.ping() : store.pool.query('SELECT 1');
  // The probe may still fail after the timeout won; nobody waits for it then.
  probe.catch(() => undefined);
  try {
    await Promise.race([probe, timeout]);
    return undefined;
  } catch (err) {
    return `the dedicated ${store.type} store does not answer: ${withoutSecrets((err as Error).message, uri)}`;
  } finally {
    clearTimeout(timer);
  }
}

/** Closes a dedicated store's connection (pool). */
export async function closeDedicatedStore(store: DedicatedStore): Promise<void> {
  if (store.type === 'redis') store.redis.disconnect();
  else await store.pool.end();
}

/** What a dedicated worker's sinks need: the one product build it serves, and that build's store. */
export interface DedicatedSinkDeps {
  /** The product and build (absent: 1) this worker serves. */
  product: ProductRef;
  store: DedicatedStore;
}

function refText(ref: ProductRef): string {
  return `${ref.namespace}/${ref.name} build ${buildOf(ref)}`;
}

/** The sink of a dedicated product build's target in its own store; throws when the job is not this worker's. */
export function dedicatedSink(deps: DedicatedSinkDeps, product: PipelineProduct): Sink {
  const served = deps.product;
  if (
    product.namespace !== served.namespace ||
    product.name !== served.name ||
    buildOf(product) !== buildOf(served)
  ) {
    throw new Error(
      `This dedicated worker serves ${refText(served)} (OFFTAKE_WORKER_PRODUCT, OFFTAKE_WORKER_BUILD), not ${refText(product)}.`,
    );
  }
  const target = product.spec.target;
  if (target.type === 'topic') {
    throw new Error(
      'A topic target has no dedicated store (a topic is a stream in the event log); use placement: shared.',
    );
  }
  const store = deps.store;
  if (target.type !== store.type) {
    throw new Error(
      `The product's target is ${target.type}, but this dedicated worker's store (OFFTAKE_WORKER_STORE_URI) is a ${store.type} server.`,
    );
  }
  if (store.type === 'redis') {
    return new RedisSink(store.redis, {
      keyPrefix: DEDICATED_REDIS_KEY_PREFIX,
      format: target.redis?.format ?? 'hash',
      ttlSeconds: target.redis?.ttlSeconds,
    });
  }
  if (target.postgres === undefined) {
    throw new Error("The product's postgres target has no table (spec.target.postgres).");
  }
  // The server is the build's alone: the sink makes the reader view itself.
  return new PostgresSink(store.pool, {
    schema: DEDICATED_POSTGRES_SCHEMA,
    table: target.postgres.table,
    columns: target.postgres.columns,
  });
}

/** The {@link SinkFactory} of a dedicated product build's worker: its target in its own store, nothing else. */
export function dedicatedSinkFactory(deps: DedicatedSinkDeps): SinkFactory {
  return (product) => dedicatedSink(deps, product);
}
