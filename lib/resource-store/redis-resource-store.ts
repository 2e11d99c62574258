/**
 * The embedded resource store: DataProducts kept in Redis with Kubernetes semantics.
 *
 * Keys, all under `${prefix}:`:
 * - `resourceVersion` — the global counter; every write takes the next value.
 * - `objects` — a hash from `namespace/name` to `<resourceVersion>\n<object JSON>`. The
 *   version sits in front of the JSON so the write script can stamp it without parsing JSON.
 * - `namespace:<namespace>` — the set of names in a namespace (the index `list` uses).
 * - `changes` — a stream with one entry per write, ID `<resourceVersion>-1`, trimmed to
 *   `watchHistory` entries; watches read it.
 *
 * Writes follow the Kubernetes API server's pattern over etcd: read the object, compute the
 * new one in TypeScript (generation, finalizers, deletion), then commit it with one Lua script
 * that compares the resourceVersion and, only if it still matches, takes the next version,
 * stores the object, updates the index and appends the change — all or nothing. A write
 * without a client-given resourceVersion retries on a lost race; with one, the race is the
 * client's conflict.
 */
import { checkedName, checkedRef } from './checked-names.ts';
import { createHash, randomUUID } from 'node:crypto';
import { isDeepStrictEqual } from 'node:util';
import type { Redis } from 'ioredis';
import { API_VERSION, KIND } from '../../crds/dataproduct.schema.ts';
import type { DataProductStatus } from '../../crds/generated/types.ts';
import { OfftakeError, type FieldError } from '../errors.ts';
import { isValidLabelKey, isValidLabelValue, parseLabelSelector } from './label-selector.ts';
import { RedisWatch } from './redis-watch.ts';
import type {
  DataProductInput,
  ListOptions,
  ListResult,
  ResourceStore,
  StoredDataProduct,
  Watch,
  WatchEvent,
} from './resource-store.ts';

/** Options of a {@link RedisResourceStore}. */
export interface RedisResourceStoreOptions {
  /** Every key of the store lives under `${prefix}:`. */
  prefix: string;
  /** How many changes the change stream keeps for watches to resume from (default 10000). */
  watchHistory?: number;
  /** The source of creation and deletion timestamps (default: the system clock). */
  clock?: () => Date;
}

/**
 * Compare-and-commit of one object. KEYS: counter, objects, namespace index, changes.
 * ARGV: field, expected resourceVersion ('' = must not exist), 'put' | 'remove', event type,
 * object JSON, name, watch history. Everything that can refuse runs before the first write:
 * Redis does not roll a script back when it fails half way.
 */
const COMMIT_SCRIPT = `
local current = redis.call('HGET', KEYS[2], ARGV[1])
local currentVersion = current and string.match(current, '^(%d+)\\n') or ''
if ARGV[2] == '' then
  if current then return {'already-exists', currentVersion} end
else
  if not current then return {'not-found', ''} end
  if currentVersion ~= ARGV[2] then return {'conflict', currentVersion} end
end
local version = string.format('%d', redis.call('INCR', KEYS[1]))
redis.call('XADD', KEYS[4], 'MAXLEN', ARGV[7], version .. '-1', 'type', ARGV[4], 'object', ARGV[5])
if ARGV[3] == 'put' then
  redis.call('HSET', KEYS[2], ARGV[1], version .. '\\n' .. ARGV[5])
  redis.call('SADD', KEYS[3], ARGV[6])
else
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('SREM', KEYS[3], ARGV[6])
end
return {'ok', version}
`;

/**
 * The store's resourceVersion and the stored values, read at one instant. KEYS: counter,
 * objects[, namespace index]. ARGV: [namespace].
 */
const LIST_SCRIPT = `
local version = redis.call('GET', KEYS[1]) or '0'
local values
if KEYS[3] then
  values = {}
  local names = redis.call('SMEMBERS', KEYS[3])
  -- unpack() is bounded by Lua's C stack, so fetch in slices
  for i = 1, #names, 1000 do
    local fields = {}
    for j = i, math.min(i + 999, #names) do fields[#fields + 1] = ARGV[1] .. '/' .. names[j] end
    for _, value in ipairs(redis.call('HMGET', KEYS[2], unpack(fields))) do values[#values + 1] = value end
  end
else
  values = redis.call('HVALS', KEYS[2])
end
table.insert(values, 1, version)
return values
`;

/** A loaded Lua script: its text and SHA-1, run by EVALSHA with EVAL as the fallback. */
interface LuaScript {
  source: string;
  sha: string;
}

function luaScript(source: string): LuaScript {
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}

const COMMIT = luaScript(COMMIT_SCRIPT);
const LIST = luaScript(LIST_SCRIPT);

/** What a computed write does to the stored object. */
type Change =
  | { kind: 'put'; object: StoredDataProduct }
  | { kind: 'remove'; object: StoredDataProduct }
  | { kind: 'unchanged' };

/** The outcome of a committed change: the object as stored (or as last stored, when removed). */
interface Committed {
  removed: boolean;
  object: StoredDataProduct;
}

const RESOURCE_VERSION = /^(0|[1-9][0-9]{0,15})$/;
/** Retries of a write without a client-given resourceVersion that keeps losing races. */
const MAX_ATTEMPTS = 32;

/**
 * The embedded {@link ResourceStore}, in Redis. Writes are atomic Lua scripts; the
 * resourceVersion is a global counter, so a watch can resume from any version it saw, across
 * reconnects and restarts of the API, as long as the change stream still holds it.
 *
 * The Redis connection is the caller's: `close()` ends the store's watches (each has a
 * duplicated connection of its own) but leaves the given connection open.
 */
export class RedisResourceStore implements ResourceStore {
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly watchHistory: number;
  private readonly clock: () => Date;
  private readonly watches = new Set<RedisWatch>();

  constructor(redis: Redis, opts: RedisResourceStoreOptions) {
    const watchHistory = opts.watchHistory ?? 10000;
    if (!Number.isInteger(watchHistory) || watchHistory < 1) {
      throw new RangeError(`watchHistory must be a positive integer, got ${watchHistory}`);
    }
    if (opts.prefix === '') throw new RangeError('prefix must not be empty');
    this.redis = redis;
    this.prefix = opts.prefix;
    this.watchHistory = watchHistory;
    this.clock = opts.clock ?? (() => new Date());
  }

  async create(input: DataProductInput): Promise<StoredDataProduct> {
    const { name, namespace } = checkedRef(input.metadata.namespace, input.metadata.name);
    const finalizers =
      input.metadata.finalizers === undefined ? [] : checkedFinalizers(input.metadata.finalizers);
    const object: StoredDataProduct = {
      apiVersion: API_VERSION,
      kind: KIND,
      metadata: {
        name,
        namespace,
        uid: randomUUID(),
        resourceVersion: '',
        generation: 1,
        creationTimestamp: this.timestamp(),
        finalizers,
        labels: checkedLabels(input.metadata.labels),
        annotations: checkedAnnotations(input.metadata.annotations),
      },
      spec: plain(input.spec),
    };
    const reply = await this.commit('', { kind: 'put', object }, 'ADDED');
    if (reply.outcome === 'already-exists') {
      throw new OfftakeError('already-exists', `DataProduct ${namespace}/${name} already exists.`);
    }
    if (reply.outcome !== 'ok')
      throw new OfftakeError('internal', `Unexpected create outcome ${reply.outcome}.`);
    return withVersion(object, reply.version);
  }

  async get(namespace: string, name: string): Promise<StoredDataProduct> {
    const ref = checkedRef(namespace, name);
    const stored = await this.read(ref.namespace, ref.name);
    if (stored === undefined) throw notFound(ref.namespace, ref.name);
    return stored;
  }

  async list(opts: ListOptions = {}): Promise<ListResult> {
    const namespace = opts.namespace === undefined ? undefined : checkedName('namespace', opts.namespace);
    const selector = opts.labelSelector === undefined ? undefined : parseLabelSelector(opts.labelSelector);
    const keys = [this.key('resourceVersion'), this.key('objects')];
    if (namespace !== undefined) keys.push(this.namespaceKey(namespace));
    const reply = await this.run(LIST, keys, namespace === undefined ? [] : [namespace]);
    if (!Array.isArray(reply) || typeof reply[0] !== 'string') {
      throw new OfftakeError('internal', 'The resource store answered a list with an unexpected shape.');
    }
    const [resourceVersion, ...values] = reply as [string, ...unknown[]];
    const items = values
      .filter((value): value is string => typeof value === 'string')
      .map(decodeStored)
      .filter((item) => selector === undefined || selector.matches(item.metadata.labels))
      .sort(byNamespaceAndName);
    return { items, resourceVersion };
  }

  async replace(input: DataProductInput): Promise<StoredDataProduct> {
    const { name, namespace } = checkedRef(input.metadata.namespace, input.metadata.name);
    const labels = checkedLabels(input.metadata.labels);
    const annotations = checkedAnnotations(input.metadata.annotations);
    const finalizers =
      input.metadata.finalizers === undefined ? undefined : checkedFinalizers(input.metadata.finalizers);
    const spec = plain(input.spec);
    const result = await this.update(namespace, name, input.metadata.resourceVersion, (current) => {
      const nextFinalizers = finalizers ?? current.metadata.finalizers;
      refuseNewFinalizersWhileDeleting(current, nextFinalizers);
      const generation = isDeepStrictEqual(current.spec, spec)
        ? current.metadata.generation
        : current.metadata.generation + 1;
      const object: StoredDataProduct = {
        ...current,
        metadata: { ...current.metadata, generation, labels, annotations, finalizers: nextFinalizers },
        spec,
      };
      return releasedOrPut(object);
    });
    // A replace that drops the last finalizer of a deleting object deletes it; the caller
    // gets the object as it was last stored, with the deletion's resourceVersion.
    return result.object;
  }

  async updateStatus(
    namespace: string,
    name: string,
    status: DataProductStatus,
    resourceVersion?: string,
  ): Promise<StoredDataProduct> {
    const ref = checkedRef(namespace, name);
    const nextStatus = plain(status);
    const result = await this.update(ref.namespace, ref.name, resourceVersion, (current) => ({
      kind: 'put',
      object: { ...current, status: nextStatus },
    }));
    return result.object;
  }

  async setFinalizers(
    namespace: string,
    name: string,
    finalizers: string[],
    resourceVersion?: string,
  ): Promise<StoredDataProduct | undefined> {
    const ref = checkedRef(namespace, name);
    const next = checkedFinalizers(finalizers);
    const result = await this.update(ref.namespace, ref.name, resourceVersion, (current) => {
      refuseNewFinalizersWhileDeleting(current, next);
      return releasedOrPut({ ...current, metadata: { ...current.metadata, finalizers: next } });
    });
    return result.removed ? undefined : result.object;
  }

  async delete(
    namespace: string,
    name: string,
    resourceVersion?: string,
  ): Promise<StoredDataProduct | undefined> {
    const ref = checkedRef(namespace, name);
    const result = await this.update(ref.namespace, ref.name, resourceVersion, (current) => {
      if (current.metadata.finalizers.length === 0) return { kind: 'remove', object: current };
      // Deletion was already requested: the first deletionTimestamp stands.
      if (current.metadata.deletionTimestamp !== undefined) return { kind: 'unchanged' };
      return {
        kind: 'put',
        object: { ...current, metadata: { ...current.metadata, deletionTimestamp: this.timestamp() } },
      };
    });
    return result.removed ? undefined : result.object;
  }

  /**
   * Watches changes after `resourceVersion`, or after the store's version at the time of this
   * call when absent (no synthetic ADDED events: list first, then watch from the list's
   * resourceVersion). A version older than the kept history, or newer than the store's,
   * fails the first read with `watch-expired`; the watch also fails so if it falls behind the
   * trimming of the history. A malformed version throws `invalid-parameter` at once.
   */
  watch(opts: { resourceVersion?: string; namespace?: string } = {}): Watch {
    const namespace = opts.namespace === undefined ? undefined : checkedName('namespace', opts.namespace);
    const requested = opts.resourceVersion;
    if (requested !== undefined && !RESOURCE_VERSION.test(requested)) {
      throw new OfftakeError(
        'invalid-parameter',
        `resourceVersion ${JSON.stringify(requested.slice(0, 40))} is not a resourceVersion of this store (a decimal number).`,
      );
    }
    // Read the head on the shared connection now, so "now" is this call: writes the caller
    // issues after it on the same connection are seen.
    const startAfter = this.redis.get(this.key('resourceVersion')).then((head) => {
      const current = Number(head ?? '0');
      if (requested === undefined) return current;
      const from = Number(requested);
      if (from > current) {
        throw new OfftakeError(
          'watch-expired',
          `resourceVersion ${requested} is ahead of the store's current resourceVersion ${current}; it comes from another store. List again and watch from the list's resourceVersion.`,
        );
      }
      return from;
    }, unavailable);
    const watch: RedisWatch = new RedisWatch({
      connection: this.redis.duplicate(),
      changesKey: this.key('changes'),
      startAfter,
      namespace,
      onClose: () => this.watches.delete(watch),
    });
    this.watches.add(watch);
    return watch;
  }

  /** Ends every open watch. The Redis connection given to the constructor stays open: it is the caller's. */
  async close(): Promise<void> {
    await Promise.all([...this.watches].map((watch) => watch.close()));
  }

  /**
   * Reads the object, computes its next state and commits it if nobody wrote in between.
   * With a client-given `precondition` a lost race is the client's conflict; without one the
   * change is recomputed on the fresh object.
   */
  private async update(
    namespace: string,
    name: string,
    precondition: string | undefined,
    compute: (current: StoredDataProduct) => Change,
  ): Promise<Committed> {
    for (let attempt = 1; ; attempt += 1) {
      const current = await this.read(namespace, name);
      if (current === undefined) throw notFound(namespace, name);
      const currentVersion = current.metadata.resourceVersion;
      if (precondition !== undefined && precondition !== currentVersion) {
        throw conflict(namespace, name, precondition, currentVersion);
      }
      const change = compute(current);
      // Writing what is already stored is no write: no new resourceVersion, no watch event
      // (so a controller re-writing the same status does not wake itself up).
      if (
        change.kind === 'unchanged' ||
        (change.kind === 'put' && isDeepStrictEqual(plain(change.object), current))
      ) {
        return { removed: false, object: current };
      }
      const reply = await this.commit(currentVersion, change, change.kind === 'put' ? 'MODIFIED' : 'DELETED');
      if (reply.outcome === 'ok') {
        return { removed: change.kind === 'remove', object: withVersion(change.object, reply.version) };
      }
      if (reply.outcome === 'not-found') throw notFound(namespace, name);
      if (precondition !== undefined) throw conflict(namespace, name, precondition, reply.version);
      if (attempt >= MAX_ATTEMPTS) throw conflict(namespace, name, currentVersion, reply.version);
    }
  }

  /** Commits a change if the stored resourceVersion is still `expectedVersion` ('' = the object must not exist). */
  private async commit(
    expectedVersion: string,
    change: Exclude<Change, { kind: 'unchanged' }>,
    type: WatchEvent['type'],
  ): Promise<{ outcome: 'ok' | 'already-exists' | 'not-found' | 'conflict'; version: string }> {
    const { namespace, name } = change.object.metadata;
    const json = JSON.stringify({
      ...change.object,
      metadata: { ...change.object.metadata, resourceVersion: '' },
    });
    const reply = await this.run(
      COMMIT,
      [this.key('resourceVersion'), this.key('objects'), this.namespaceKey(namespace), this.key('changes')],
      [`${namespace}/${name}`, expectedVersion, change.kind, type, json, name, String(this.watchHistory)],
    );
    if (
      !Array.isArray(reply) ||
      !['ok', 'already-exists', 'not-found', 'conflict'].includes(reply[0] as string) ||
      typeof reply[1] !== 'string'
    ) {
      throw new OfftakeError('internal', 'The resource store answered a write with an unexpected shape.');
    }
    return { outcome: reply[0] as 'ok' | 'already-exists' | 'not-found' | 'conflict', version: reply[1] };
  }

  private async read(namespace: string, name: string): Promise<StoredDataProduct | undefined> {
    const value = await this.redis.hget(this.key('objects'), `${namespace}/${name}`).catch(unavailable);
    return value === null ? undefined : decodeStored(value);
  }

  private async run(script: LuaScript, keys: string[], args: string[]): Promise<unknown> {
    try {
      return await this.redis.evalsha(script.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) return unavailable(err);
    }
    return this.redis.eval(script.source, keys.length, ...keys, ...args).catch(unavailable);
  }

  private key(name: string): string {
    return `${this.prefix}:${name}`;
  }

  private namespaceKey(namespace: string): string {
    return `${this.prefix}:namespace:${namespace}`;
  }

  /** Now, as Kubernetes writes timestamps: RFC 3339 in UTC, whole seconds. */
  private timestamp(): string {
    return this.clock()
      .toISOString()
      .replace(/\.\d+Z$/, 'Z');
  }
}

/** A removal when the object is deleting and has no finalizer left, else a put. */
function releasedOrPut(object: StoredDataProduct): Change {
  if (object.metadata.deletionTimestamp !== undefined && object.metadata.finalizers.length === 0) {
    return { kind: 'remove', object };
  }
  return { kind: 'put', object };
}

function refuseNewFinalizersWhileDeleting(current: StoredDataProduct, next: string[]): void {
  if (current.metadata.deletionTimestamp === undefined) return;
  const added = next.filter((finalizer) => !current.metadata.finalizers.includes(finalizer));
  if (added.length === 0) return;
  throw new OfftakeError(
    'invalid-spec',
    `DataProduct ${current.metadata.namespace}/${current.metadata.name} is being deleted: no finalizer can be added.`,
    {
      errors: [
        {
          pointer: '/metadata/finalizers',
          kind: 'forbidden',
          message: `no new finalizers can be added while the object is being deleted (tried ${added.map((f) => JSON.stringify(f)).join(', ')})`,
        },
      ],
    },
  );
}

function decodeStored(value: string): StoredDataProduct {
  const newline = value.indexOf('\n');
  const object = JSON.parse(value.slice(newline + 1)) as StoredDataProduct;
  object.metadata.resourceVersion = value.slice(0, newline);
  return object;
}

function withVersion(object: StoredDataProduct, resourceVersion: string): StoredDataProduct {
  return plain({ ...object, metadata: { ...object.metadata, resourceVersion } });
}

/** A deep copy that is plain JSON: no undefined members, no shared references with the caller. */
function plain<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

function byNamespaceAndName(a: StoredDataProduct, b: StoredDataProduct): number {
  const an = a.metadata.namespace;
  const bn = b.metadata.namespace;
  if (an !== bn) return an < bn ? -1 : 1;
  return a.metadata.name < b.metadata.name ? -1 : a.metadata.name > b.metadata.name ? 1 : 0;
}

function checkedMap(
  field: 'labels' | 'annotations',
  map: Record<string, string> | undefined,
  validValue: (value: string) => boolean,
  valueRule: string,
): Record<string, string> {
  if (map === undefined) return {};
  const errors: FieldError[] = [];
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    errors.push({ pointer: `/metadata/${field}`, kind: field, message: 'must be an object of strings' });
  } else {
    for (const [key, value] of Object.entries(map)) {
      const pointer = `/metadata/${field}/${key.replaceAll('~', '~0').replaceAll('/', '~1')}`;
      if (!isValidLabelKey(key)) {
        errors.push({
          pointer,
          kind: field,
          message: `${JSON.stringify(key.slice(0, 80))} is not a valid key (an optional DNS subdomain and "/", then at most 63 letters, digits, "-", "_" or ".", starting and ending with a letter or digit)`,
        });
      } else if (typeof value !== 'string' || !validValue(value)) {
        errors.push({ pointer, kind: field, message: valueRule });
      }
    }
  }
  if (errors.length > 0) throw new OfftakeError('invalid-spec', `metadata.${field} is invalid.`, { errors });
  return { ...map };
}

function checkedLabels(labels: Record<string, string> | undefined): Record<string, string> {
  return checkedMap(
    'labels',
    labels,
    isValidLabelValue,
    'a label value is empty or at most 63 letters, digits, "-", "_" or ".", starting and ending with a letter or digit',
  );
}

function checkedAnnotations(annotations: Record<string, string> | undefined): Record<string, string> {
  return checkedMap('annotations', annotations, () => true, 'an annotation value is a string');
}

function checkedFinalizers(finalizers: string[]): string[] {
  if (!Array.isArray(finalizers)) {
    throw new OfftakeError('invalid-spec', 'metadata.finalizers is invalid.', {
      errors: [
        { pointer: '/metadata/finalizers', kind: 'finalizers', message: 'must be an array of strings' },
      ],
    });
  }
  const errors: FieldError[] = [];
  finalizers.forEach((finalizer, index) => {
    if (typeof finalizer !== 'string' || !isValidLabelKey(finalizer)) {
      errors.push({
        pointer: `/metadata/finalizers/${index}`,
        kind: 'finalizers',
        message: `${JSON.stringify(String(finalizer).slice(0, 80))} is not a valid finalizer name (a qualified name such as offtake.dev/teardown)`,
      });
    }
  });
  if (errors.length > 0)
    throw new OfftakeError('invalid-spec', 'metadata.finalizers is invalid.', { errors });
  // A finalizer listed twice is one finalizer.
  return [...new Set(finalizers)];
}

function notFound(namespace: string, name: string): OfftakeError {
  return new OfftakeError('not-found', `DataProduct ${namespace}/${name} does not exist.`);
}

function conflict(namespace: string, name: string, sent: string, current: string): OfftakeError {
  return new OfftakeError(
    'conflict',
    `DataProduct ${namespace}/${name} has been modified: you sent resourceVersion ${sent}, the current one is ${current}. Read it again and retry.`,
  );
}

/**
 * Rethrows a Redis failure as a coded error with its cause: an error reply (Redis refused a
 * command) is `internal`, anything else (connection lost, retries exhausted) `unavailable`.
 */
function unavailable(err: unknown): never {
  if (err instanceof OfftakeError) throw err;
  if (err instanceof Error && err.name === 'ReplyError') {
    throw new OfftakeError('internal', 'The resource store failed.', { cause: err });
  }
  throw new OfftakeError('unavailable', 'The resource store cannot reach Redis.', { cause: err });
}
