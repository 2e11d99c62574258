/**
 * The platform credential of a dedicated worker: an ACL user on the platform's Redis per product
 * build, allowed only what that build's pipeline touches — read its source streams (and the
 * stream registry), append to its own dead-letter stream, run the jobs of its own queues and keep
 * its own pipeline state. No other product's streams, queues or state; no KEYS, SCAN, CONFIG,
 * FLUSHALL or Pub/Sub. The worker gets it as the `OFFTAKE_REDIS_URL` of its platform Secret.
 */
import type { Redis } from 'ioredis';
import { redisStreamKey } from '../../lib/eventlog/redis-event-log.ts';
import {
  deadLetterStream,
  pipelineId,
  pipelineKeys,
  pipelineQueues,
  queuePrefix,
  type ProductRef,
} from '../../worker/pipeline-keys.ts';
import type { PipelineProduct } from '../../worker/pipeline-state-store.ts';
import { redisFailure } from '../failures.ts';
import type { ProductRecords } from '../product-records.ts';
import { deleteProductUser, redisConnection, redisEndpoint, setAclUser } from '../redis-access.ts';
import { redisGlob } from '../store-names.ts';

/** What {@link DedicatedWorkerAccess} works with. */
export interface DedicatedWorkerAccessOptions {
  /** The platform's Redis, with the right to manage ACL users. */
  redis: Redis;
  /** Its URL as workers reach it (the credentials are replaced by the worker's). */
  url: string;
  /** The platform's key prefix (e.g. `offtake`). */
  prefix: string;
  records: ProductRecords;
}

/**
 * What a worker may run: everything a pipeline and BullMQ need, minus what would reach beyond
 * its keys or the server (`@dangerous`, `@admin`, SCAN/RANDOMKEY which key patterns do not
 * limit, Pub/Sub), plus INFO (BullMQ reads the server version) and the CLIENT subcommands its
 * connections use (naming, and waking the shared blocking reader).
 */
const WORKER_COMMAND_RULES = [
  '+@all',
  '-@dangerous',
  '-@admin',
  '-@pubsub',
  '-scan',
  '-randomkey',
  '+info',
  '+client|id',
  '+client|setname',
  '+client|getname',
  '+client|unblock',
];

/** Makes and removes the platform credentials of dedicated workers. */
export class DedicatedWorkerAccess {
  private readonly options: DedicatedWorkerAccessOptions;

  constructor(options: DedicatedWorkerAccessOptions) {
    this.options = options;
  }

  /** The ACL user of a product build's worker: `<prefix>:worker:<pipeline id>`. */
  userName(ref: ProductRef): string {
    return `${this.options.prefix}:worker:${pipelineId(ref)}`;
  }

  /** The key patterns of a build's worker: `%R~` read-only, `~` read-write. */
  keyRules(product: PipelineProduct): string[] {
    const { prefix } = this.options;
    const logPrefix = `${prefix}:log`;
    const queues = pipelineQueues(product, true);
    const dlq = deadLetterStream(product);
    const exact = (key: string) => redisGlob(key, true);
    return [
      `%R~${exact(`${logPrefix}:streams`)}`,
      ...product.spec.source.streams.map((stream) => `%R~${exact(redisStreamKey(logPrefix, stream))}`),
      `~${exact(redisStreamKey(logPrefix, dlq))}`,
      `~${redisGlob(`${logPrefix}:dedup:{${dlq}}:`)}`,
      `~${redisGlob(`${queuePrefix(prefix)}:${queues.seed}:`)}`,
      `~${redisGlob(`${queuePrefix(prefix)}:${queues.tail}:`)}`,
      `~${redisGlob(`${pipelineKeys(prefix, product).state.replace(/:state$/, ':')}`)}`,
    ];
  }

  /**
   * Creates (or redefines, exactly) the build's worker user and returns the URL the worker
   * connects with. The password is the build's own, kept in the product's records.
   */
  async ensure(product: PipelineProduct): Promise<string> {
    const { redis, url, records } = this.options;
    const build = product.build ?? 1;
    const password = await records.workerPassword(product, build);
    const user = this.userName(product);
    await setAclUser(redis, user, password, [...this.keyRules(product), ...WORKER_COMMAND_RULES]);
    return redisConnection(redisEndpoint(url), 'redis', user, password).uri;
  }

  /** Deletes the worker user of one build (its connections end), or of every build of the product. */
  async revoke(ref: ProductRef, build?: number): Promise<void> {
    const { redis } = this.options;
    if (build !== undefined) {
      await deleteProductUser(redis, this.userName({ ...ref, build }));
      return;
    }
    let users: string[];
    try {
      users = (await redis.call('ACL', ['USERS'])) as string[];
    } catch (err) {
      throw redisFailure(err, 'listing ACL users');
    }
    const first = this.userName({ namespace: ref.namespace, name: ref.name });
    for (const user of users) {
      if (user === first || user.startsWith(`${first}.b`)) await deleteProductUser(redis, user);
    }
  }
}
