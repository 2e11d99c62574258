/**
 * Shared-placement redis stores: per product a key prefix `<platformPrefix>:dp:<ns>:<name>:` in
 * the platform's Redis and an ACL user `dp:<ns>:<name>` that may read keys under it and nothing
 * else. Each build of the store has its records under `<prefix>b<N>:`; the key `<prefix>current`
 * names the build readers should use, and publishing a build is one SET of it. The sink's
 * tombstones and checkpoints live beside the prefix, outside the user's reach.
 */
import type { Redis } from 'ioredis';
import type { ProductRef } from '../worker/pipeline-keys.ts';
import type { PipelineProduct } from '../worker/pipeline-state-store.ts';
import { redisFailure } from './failures.ts';
import { productSink, type ProductSinkDeps } from './product-sinks.ts';
import type { Credential, EnsureOptions, ProvisionedStore, Provisioner } from './provisioner.ts';
import {
  RECORD_READ_COMMANDS,
  deleteProductUser,
  unlinkMatching,
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

  async ensure(
    product: PipelineProduct,
    credential: Credential,
    options: EnsureOptions,
  ): Promise<ProvisionedStore> {
    const { user, keyPrefix, productPrefix, currentKey } = productStoreNames(
      this.sinks.platformPrefix,
      product,
    ).redis;
    await setProductUser(this.redis, {
      user,
      password: credential.password,
      keys: [prefixPattern(productPrefix)],
      commands: RECORD_READ_COMMANDS,
      db: this.endpoint.db,
    });
    if (options.publish) {
      try {
        await this.redis.set(currentKey, keyPrefix);
      } catch (err) {
        throw redisFailure(
          err,
          `publishing build ${product.build ?? 1} of ${product.namespace}/${product.name}`,
        );
      }
    }
    return {
      connection: {
        ...redisConnection(this.endpoint, 'redis', user, credential.password),
        keyPrefix,
        currentKey,
      },
      description: `Keys under ${keyPrefix}, readable by ACL user ${user}, are ready.`,
    };
  }

  async revokeAccess(ref: ProductRef): Promise<void> {
    await deleteProductUser(this.redis, productStoreNames(this.sinks.platformPrefix, ref).redis.user);
  }

  /** Deletes one build's records, tombstones and checkpoints (SCAN, never KEYS). */
  async dropBuild(product: PipelineProduct): Promise<void> {
    try {
      await productSink(this.sinks, product).drop();
    } catch (err) {
      throw redisFailure(
        err,
        `deleting the keys of build ${product.build ?? 1} of ${product.namespace}/${product.name}`,
      );
    }
  }

  /** Deletes every key of every build, and the pointer (SCAN, never KEYS). */
  async dropData(ref: ProductRef): Promise<void> {
    try {
      for (const pattern of productStoreNames(this.sinks.platformPrefix, ref).redisPatterns) {
        await unlinkMatching(this.redis, pattern);
      }
    } catch (err) {
      throw redisFailure(err, `deleting the keys of ${ref.namespace}/${ref.name}`);
    }
  }

  retainData(): Promise<void> {
    return Promise.resolve();
  }
}
