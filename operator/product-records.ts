/**
 * The operator's own records of each product, in Redis under `${prefix}:` (platform keys no
 * product credential can read): the product's generated password, the connection details once
 * its store is ready, the target types it was given a store for (written before the store is
 * made, so a teardown after a crash knows what to remove), and the builds of its store (which
 * spec each was seeded from, which one readers use). Plus the claims on derived streams, so that no topic product takes
 * a stream it did not create.
 */
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { DataProductSpec } from '../crds/generated/types.ts';
import type { ProductRef } from '../worker/pipeline-keys.ts';
import type { ConnectionReader, ProductConnection } from './product-connection.ts';

/** One build of a product's store: its number and the spec (as its pipeline sees it) of one generation. */
export interface BuildRecord {
  build: number;
  generation: number;
  fingerprint: string;
  spec: DataProductSpec;
}

/**
 * The builds of a product's store: the one readers use (`active`), the one being seeded beside
 * it after a spec change (`next`), and earlier ones whose data is still to be dropped (`retired`).
 */
export interface ProductBuilds {
  active?: BuildRecord;
  next?: BuildRecord;
  retired: BuildRecord[];
  /** The highest build number ever used: numbers are never reused. */
  highest?: number;
}

/** A target type. */
export type TargetType = ProductConnection['type'];

/**
 * What kind of store a product has, which decides who makes it: a target type in the platform's
 * shared servers, or a server of its own in the cluster (`dedicated-redis`, `dedicated-postgres`).
 */
export type StoreKind = TargetType | 'dedicated-redis' | 'dedicated-postgres';

/** The kind of store a spec asks for. */
export function storeKind(spec: { target: { type: TargetType; placement?: string } }): StoreKind {
  const { type, placement } = spec.target;
  if (placement === 'dedicated' && type !== 'topic') return `dedicated-${type}`;
  return type;
}

/** How a derived stream is held: by a live product, or kept after its product was deleted with Retain. */
export type StreamClaim = { owner: string; retained: boolean };

/** The operator's records of products, in Redis. The connection belongs to the caller. */
export class ProductRecords implements ConnectionReader {
  private readonly redis: Redis;
  private readonly prefix: string;

  constructor(redis: Redis, prefix: string) {
    if (prefix.length === 0) throw new RangeError('The records prefix must not be empty.');
    this.redis = redis;
    this.prefix = prefix;
  }

  /**
   * The records of the platform whose Redis keys start with `platformPrefix`: the one place that
   * says where they live, for the operator that writes them and the API that reads connections.
   */
  static forPlatform(redis: Redis, platformPrefix: string): ProductRecords {
    return new ProductRecords(redis, `${platformPrefix}:operator`);
  }

  private key(ref: ProductRef): string {
    return `${this.prefix}:product:${ref.namespace}/${ref.name}`;
  }

  private get claimsKey(): string {
    return `${this.prefix}:topic-streams`;
  }

  /**
   * The product's password: generated (32 random bytes, base64url: no character needs escaping
   * in a URI) and stored on first use, the same one ever after. Stored before any role or ACL
   * user is made with it, so a crash never leaves a credential nobody knows.
   */
  async password(ref: ProductRef): Promise<{ password: string; created: boolean }> {
    const fresh = randomBytes(32).toString('base64url');
    const created = (await this.redis.hsetnx(this.key(ref), 'password', fresh)) === 1;
    const password = created ? fresh : await this.redis.hget(this.key(ref), 'password');
    if (password === null) return this.password(ref);
    return { password, created };
  }

  /**
   * The password of the platform credential of a dedicated build's worker (random, made on first
   * use, kept until the product's records go). Never derived from the product's own credential:
   * readers of the product's store must not be able to work it out.
   */
  async workerPassword(ref: ProductRef, build: number): Promise<string> {
    const field = `workerPassword:b${build}`;
    await this.redis.hsetnx(this.key(ref), field, randomBytes(32).toString('base64url'));
    const password = await this.redis.hget(this.key(ref), field);
    return password ?? this.workerPassword(ref, build);
  }

  async getConnection(namespace: string, name: string): Promise<ProductConnection | null> {
    const json = await this.redis.hget(this.key({ namespace, name }), 'connection');
    return json === null ? null : (JSON.parse(json) as ProductConnection);
  }

  async setConnection(ref: ProductRef, connection: ProductConnection): Promise<void> {
    await this.redis.hset(this.key(ref), 'connection', JSON.stringify(connection));
  }

  async clearConnection(ref: ProductRef): Promise<void> {
    await this.redis.hdel(this.key(ref), 'connection');
  }

  /** The kinds of store the product may have. */
  async targets(ref: ProductRef): Promise<StoreKind[]> {
    const json = await this.redis.hget(this.key(ref), 'targets');
    return json === null ? [] : (JSON.parse(json) as StoreKind[]);
  }

  /** Records that a store of `type` is about to be made (before it is). */
  async addTarget(ref: ProductRef, type: StoreKind): Promise<void> {
    const targets = await this.targets(ref);
    if (!targets.includes(type))
      await this.redis.hset(this.key(ref), 'targets', JSON.stringify([...targets, type]));
  }

  /** Records that the store of `type` is gone. */
  async removeTarget(ref: ProductRef, type: StoreKind): Promise<void> {
    const targets = (await this.targets(ref)).filter((t) => t !== type);
    await this.redis.hset(this.key(ref), 'targets', JSON.stringify(targets));
  }

  /** The builds of the product's store (none before its first reconcile). */
  async builds(ref: ProductRef): Promise<ProductBuilds> {
    const json = await this.redis.hget(this.key(ref), 'builds');
    return json === null ? { retired: [] } : (JSON.parse(json) as ProductBuilds);
  }

  /** Replaces the builds record in one write: a switch from one build to the next is atomic. */
  async setBuilds(ref: ProductRef, builds: ProductBuilds): Promise<void> {
    await this.redis.hset(this.key(ref), 'builds', JSON.stringify(builds));
  }

  /** Removes every record of the product (its stream claims are released separately). */
  async delete(ref: ProductRef): Promise<void> {
    await this.redis.unlink(this.key(ref));
  }

  /**
   * Claims a derived stream for the product: true when it is the product's now (newly claimed,
   * already its own, or retained by an earlier product of the same name), false when another
   * product holds it.
   */
  async claimStream(ref: ProductRef, stream: string): Promise<boolean> {
    const owner = `${ref.namespace}/${ref.name}`;
    if ((await this.redis.hsetnx(this.claimsKey, stream, owner)) === 1) return true;
    const claim = await this.streamClaim(stream);
    if (claim === null) return this.claimStream(ref, stream);
    if (claim.owner !== owner) return false;
    if (claim.retained) await this.redis.hset(this.claimsKey, stream, owner);
    return true;
  }

  /** Who holds a derived stream, or null. */
  async streamClaim(stream: string): Promise<StreamClaim | null> {
    const value = await this.redis.hget(this.claimsKey, stream);
    if (value === null) return null;
    const retained = value.startsWith('retained:');
    return { owner: retained ? value.slice('retained:'.length) : value, retained };
  }

  /** The derived streams the product holds (live claims only). */
  async claimedStreams(ref: ProductRef): Promise<string[]> {
    const owner = `${ref.namespace}/${ref.name}`;
    const all = await this.redis.hgetall(this.claimsKey);
    return Object.entries(all)
      .filter(([, value]) => value === owner)
      .map(([stream]) => stream)
      .sort();
  }

  /** Releases a claim (the stream is gone), or with `retain` keeps it for a product of the same name. */
  async releaseStream(ref: ProductRef, stream: string, retain = false): Promise<void> {
    const owner = `${ref.namespace}/${ref.name}`;
    if (retain) await this.redis.hset(this.claimsKey, stream, `retained:${owner}`);
    else if ((await this.streamClaim(stream))?.owner === owner) await this.redis.hdel(this.claimsKey, stream);
  }
}
