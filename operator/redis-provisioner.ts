/**
 * Shared-placement redis stores: per product a key prefix `<platformPrefix>:dp:<ns>:<name>:` in
 * the platform's Redis and an ACL user `dp:<ns>:<name>` that may read keys under it and nothing
 * else. The sink's tombstones and checkpoints live beside the prefix, outside the user's reach.
 */
import type { Redis } from 'ioredis';
import type { ProductRef } from '../worker/pipeline-keys.ts';
import type { PipelineProduct } from '../worker/pipeline-state-store.ts';
import { redisFailure } from './failures.ts';
import { productSink, type ProductSinkDeps } from './product-sinks.ts';
import type { Credential, ProvisionedStore, Provisioner } from './provisioner.ts';
import {
  RECORD_READ_COMMANDS,
  deleteProductUser,
  prefixPattern,
  redisConnection,
  redisEndpoint,
  setProductUser,
  type RedisEndpoint,
} from './redis-access.ts';
import { productStoreNames } from './store-names.ts';

/** Options of a {@link RedisProvisioner}. */
export interface RedisProvisionerOptions {
  /** The platform's Redis (its user needs the ACL command). */
  redis: Redis;
  /** Its URL: host, port and database of the delivered URIs come from it. */
  url: string;
  sinks: ProductSinkDeps;
}

/** Provisions redis targets in the platform's Redis. */
export class RedisProvisioner implements Provisioner {
  readonly type = 'redis' as const;
  private readonly redis: Redis;
  private readonly endpoint: RedisEndpoint;
  private readonly sinks: ProductSinkDeps;

  constructor(options: RedisProvisionerOptions) {
    this.redis = options.redis;
    this.endpoint = redisEndpoint(options.url);
    this.sinks = options.sinks;
  }

  async ensure(product: PipelineProduct, credential: Credential): Promise<ProvisionedStore> {
    const { user, keyPrefix } = productStoreNames(this.sinks.platformPrefix, product).redis;
    await setProductUser(this.redis, {
      user,
      password: credential.password,
      keys: [prefixPattern(keyPrefix)],
      commands: RECORD_READ_COMMANDS,
      db: this.endpoint.db,
    });
    return {
      connection: { ...redisConnection(this.endpoint, 'redis', user, credential.password), keyPrefix },
      description: `Keys under ${keyPrefix}, readable by ACL user ${user}, are ready.`,
    };
  }

  async revokeAccess(ref: ProductRef): Promise<void> {
    await deleteProductUser(this.redis, productStoreNames(this.sinks.platformPrefix, ref).redis.user);
  }

  /** Deletes the records, the tombstones and the checkpoints (SCAN, never KEYS). */
  async dropData(ref: ProductRef): Promise<void> {
    // The sink's drop needs a spec only for its format, which dropping ignores.
    const sink = productSink(this.sinks, {
      ...ref,
      spec: { source: { streams: ['x'] }, transform: { key: 'x' }, target: { type: 'redis' } },
    });
    try {
      await sink.drop();
    } catch (err) {
      throw redisFailure(err, `deleting the keys of ${ref.namespace}/${ref.name}`);
    }
  }

  retainData(): Promise<void> {
    return Promise.resolve();
  }
}
