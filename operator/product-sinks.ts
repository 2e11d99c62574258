/**
 * The sinks of products' builds in their shared-placement stores, named by `store-names.ts`:
 * the same names the provisioners create and grant. The pipeline workers get {@link productSinkFactory};
 * the provisioners use {@link productSink} to prepare a postgres table before granting it.
 */
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { EventLog } from '../lib/eventlog/event-log.ts';
import type { PipelineProduct } from '../worker/pipeline-state-store.ts';
import type { SinkFactory } from '../worker/pipeline-worker.ts';
import { PostgresSink } from '../worker/sinks/postgres-sink.ts';
import { RedisSink } from '../worker/sinks/redis-sink.ts';
import type { Sink } from '../worker/sinks/sink.ts';
import { TopicSink } from '../worker/sinks/topic-sink.ts';
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
