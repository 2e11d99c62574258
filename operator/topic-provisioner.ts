/**
 * Shared-placement topics: per product a derived stream in the event log, claimed for the
 * product so no other topic product (and no producer's stream that existed before) can be
 * taken over, and an ACL user `dp:<ns>:<name>` that may read that stream's key and nothing else.
 */
import type { Redis } from 'ioredis';
import { isOfftakeError } from '../lib/errors.ts';
import type { EventLog } from '../lib/eventlog/event-log.ts';
import type { ProductRef } from '../worker/pipeline-keys.ts';
import type { PipelineProduct } from '../worker/pipeline-state-store.ts';
import { redisFailure } from './failures.ts';
import type { ProductRecords } from './product-records.ts';
import type { ProductSinkDeps } from './product-sinks.ts';
import type { Credential, EnsureOptions, ProvisionedStore, Provisioner } from './provisioner.ts';
import { ProvisioningError } from './provisioning-error.ts';
import {
  STREAM_READ_COMMANDS,
  deleteProductUser,
  redisConnection,
  redisEndpoint,
  setProductUser,
  unlinkMatching,
  type RedisEndpoint,
} from './redis-access.ts';
import { redisStreamKey } from '../lib/eventlog/redis-event-log.ts';
import { productStoreNames, redisGlob, topicStreamName } from './store-names.ts';

/** Options of a {@link TopicProvisioner}. */
export interface TopicProvisionerOptions {
  redis: Redis;
  /** The platform Redis URL (host, port, database of the delivered URIs). */
  url: string;
  eventLog: EventLog;
  /** The event log's key prefix (e.g. `offtake:log`), for the stream's key in the ACL. */
  logPrefix: string;
  records: ProductRecords;
  sinks: ProductSinkDeps;
}

/** Provisions topic targets: derived streams in the platform's event log. */
export class TopicProvisioner implements Provisioner {
  readonly type = 'topic' as const;
  private readonly options: TopicProvisionerOptions;
  private readonly endpoint: RedisEndpoint;

  constructor(options: TopicProvisionerOptions) {
    this.options = options;
    this.endpoint = redisEndpoint(options.url);
  }

  /** Topics have no blue/green builds (readers follow one stream): `options.publish` changes nothing. */
  async ensure(
    product: PipelineProduct,
    credential: Credential,
    _options: EnsureOptions,
  ): Promise<ProvisionedStore> {
    const { records, eventLog, logPrefix } = this.options;
    const stream = topicStreamName(product, product.spec);
    if (product.spec.source.streams.includes(stream)) {
      throw new ProvisioningError(
        'TopicStreamIsSource',
        `The derived stream ${stream} is one of the product's own source streams; choose another spec.target.topic.stream.`,
        { terminal: true },
      );
    }
    const exists = await this.streamExists(stream);
    const claim = await this.wrap(() => records.streamClaim(stream), 'reading the stream claims');
    const owner = `${product.namespace}/${product.name}`;
    if ((claim !== null && claim.owner !== owner) || (claim === null && exists)) {
      throw new ProvisioningError(
        'StreamInUse',
        `The stream ${stream} already exists and belongs to ${claim === null ? 'the event log (a producer stream)' : `another product (${claim.owner})`}; choose another spec.target.topic.stream.`,
        { terminal: true },
      );
    }
    if (!(await this.wrap(() => records.claimStream(product, stream), 'claiming the stream'))) {
      throw new ProvisioningError('StreamInUse', `Another product claimed the stream ${stream} meanwhile.`, {
        terminal: true,
      });
    }
    if (!exists) {
      // Registers the stream now, so readers find it (empty) before the first event.
      await this.wrap(() => eventLog.setRetention(stream, null), `creating the stream ${stream}`);
    }
    const { user } = productStoreNames(this.options.sinks.platformPrefix, product).redis;
    const key = redisStreamKey(logPrefix, stream);
    await setProductUser(this.options.redis, {
      user,
      password: credential.password,
      keys: [redisGlob(key, true)],
      commands: STREAM_READ_COMMANDS,
      db: this.endpoint.db,
    });
    return {
      connection: { ...redisConnection(this.endpoint, 'topic', user, credential.password), stream, key },
      description: `Stream ${stream}, readable by ACL user ${user}, is ready.`,
    };
  }

  async revokeAccess(ref: ProductRef): Promise<void> {
    await deleteProductUser(
      this.options.redis,
      productStoreNames(this.options.sinks.platformPrefix, ref).redis.user,
    );
  }

  /** Deletes every stream the product holds and the sink's checkpoints. */
  async dropData(ref: ProductRef): Promise<void> {
    const { records, eventLog, redis } = this.options;
    for (const stream of await this.wrap(() => records.claimedStreams(ref), 'reading the stream claims')) {
      await this.wrap(() => eventLog.deleteStream(stream), `deleting the stream ${stream}`);
      await this.wrap(() => records.releaseStream(ref, stream), 'releasing the stream');
    }
    for (const pattern of productStoreNames(this.options.sinks.platformPrefix, ref).redisPatterns) {
      await this.wrap(() => unlinkMatching(redis, pattern), 'deleting the checkpoints');
    }
  }

  /** A build of a topic shares the stream with the others: only its checkpoints are its own. */
  async dropBuild(product: PipelineProduct): Promise<void> {
    const checkpointKey = productStoreNames(this.options.sinks.platformPrefix, product).topicCheckpointKey;
    await this.wrap(() => this.options.redis.unlink(checkpointKey), 'deleting the checkpoints');
  }

  /** Keeps the streams, marked as retained: only a product of the same name may take them again. */
  async retainData(ref: ProductRef): Promise<void> {
    const { records } = this.options;
    for (const stream of await this.wrap(() => records.claimedStreams(ref), 'reading the stream claims')) {
      await this.wrap(() => records.releaseStream(ref, stream, true), 'retaining the stream');
    }
  }

  private async streamExists(stream: string): Promise<boolean> {
    try {
      await this.options.eventLog.describe(stream);
      return true;
    } catch (err) {
      if (isOfftakeError(err, 'stream-not-found')) return false;
      throw redisFailure(err, `looking up the stream ${stream}`);
    }
  }

  private async wrap<T>(body: () => Promise<T>, doing: string): Promise<T> {
    try {
      return await body();
    } catch (err) {
      throw redisFailure(err, doing);
    }
  }
}
