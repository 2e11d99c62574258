/**
 * The event log on Redis Streams. One Redis stream per log stream; the stream entry ID is the
 * offset; each entry has one field, named by the event type (filtering needs no parsing), holding its normalised
 * CloudEvents JSON envelope. Appends run as one Lua script per batch (dedup + XADD + retention,
 * atomically); reads are XRANGE pages; followers read with plain XREADs and, once caught up,
 * wait on one shared blocking connection (`stream-watcher.ts`).
 */
import type { Redis } from 'ioredis';
import { OfftakeError } from '../errors.ts';
import { prepareEvents } from './cloudevents.ts';
import {
  OFFSET_ZERO,
  checkStreamName,
  compareOffsets,
  nextOffset,
  offsetAtTime,
  offsetTime,
  parseOffset,
  previousOffset,
  type AppendResult,
  type EventInput,
  type EventLog,
  type EventLogLimits,
  type FollowOptions,
  type LogEvent,
  type Offset,
  type RangeOptions,
  type ReadOptions,
  type ReadPage,
  type Retention,
  type ScanOptions,
  type StreamInfo,
} from './event-log.ts';
import { APPEND, DELETE, RETENTION, luaScript, type LuaScript } from './lua.ts';
import { StreamWatcher } from './stream-watcher.ts';

/**
 * What "acknowledged" means, checked at start-up (CONFIG GET; the check is not repeated, so a
 * later CONFIG SET on the server weakens the promise unnoticed):
 * - `none`: in the primary's memory; a crash loses everything since the last snapshot, if any.
 * - `everysec`: needs `appendonly yes` and `appendfsync everysec|always`. Written to the AOF
 *   (the OS page cache) before the answer and fsynced within about a second: survives a crash
 *   of redis-server, but an OS crash or power loss can take the last ~1-2 s; when a slow disk
 *   makes Redis postpone AOF writes (up to 2 s), a redis-server crash can too.
 * - `always`: needs `appendonly yes` + `appendfsync always`: fsynced before the answer; survives
 *   a redis-server crash and, on a disk that honours fsync, power loss.
 * `replicas` > 0 adds `WAIT replicas timeoutMs` after each append: the answer waits until that
 * many replicas hold the batch in memory, so losing the primary loses nothing acknowledged if an
 * acknowledged replica takes over; if they do not confirm in time the answer is `unavailable`
 * (503) with the offsets — the batch is on the primary and a retry is safe.
 */
export interface Durability {
  mode: 'none' | 'everysec' | 'always';
  replicas?: number;
  /** How long WAIT may take, in ms (default 1000; 0 waits without limit, as WAIT does). */
  timeoutMs?: number;
}

/** Options of a {@link RedisEventLog}. */
export interface RedisEventLogOptions {
  /** The connection to use (the caller owns it). Followers and WAIT use duplicates of it. */
  redis: Redis;
  /** Prefix of every key the log writes, e.g. `offtake:log`. */
  prefix: string;
  durability: Durability;
  /**
   * How long a `source` + `id` is remembered for idempotent retries, in seconds (default 86400;
   * 0 = off). Ids are kept in window-long buckets: remembered at least this long, at most twice.
   */
  dedupWindowSeconds?: number;
  limits?: Partial<EventLogLimits>;
  /** How long one XREAD of the followers' shared watcher blocks before it asks again, in ms (default 5000). */
  followBlockMs?: number;
  /** Client name of the log's own connections, shown by CLIENT LIST (default `offtake-eventlog`). */
  connectionName?: string;
}

/** The limits an event log enforces unless told otherwise. */
export const DEFAULT_EVENT_LOG_LIMITS: EventLogLimits = Object.freeze({
  maxEventBytes: 256 * 1024,
  maxBatchEvents: 1000,
});

/** Default idempotency window: one day. */
export const DEFAULT_DEDUP_WINDOW_SECONDS = 86_400;

/** Entries fetched per XRANGE round trip while scanning for a filtered page. */
const SCAN_CHUNK = 1000;
/** Entries a single filtered page may look through before it returns with a cursor. */
const PAGE_SCAN_BUDGET = 20_000;

type Entry = [id: string, fields: string[]];

interface StreamConfig {
  createdAt: number;
  epoch: string;
  retention?: Retention;
}

/** An inclusive range of offsets; `null` ends are open. `empty` when nothing can match. */
interface ResolvedRange {
  start: Offset | null;
  end: Offset | null;
  empty: boolean;
}

/**
 * The Redis key of a stream of the log kept under `prefix` (e.g. `offtake:log`): what a product's
 * ACL user of a topic target is granted. The hash tag keeps a stream's keys in one slot, should
 * the log move to Redis Cluster.
 */
export function redisStreamKey(prefix: string, stream: string): string {
  return `${prefix}:stream:{${checkStreamName(stream)}}`;
}

/** The Redis Streams {@link EventLog}. Create with {@link RedisEventLog.create}, which checks durability. */
export class RedisEventLog implements EventLog {
  readonly limits: EventLogLimits;
  /** The durability promise this log was created with (and checked against the server). */
  readonly durability: Readonly<Durability>;
  private readonly redis: Redis;
  private readonly prefix: string;
  private readonly registryKey: string;
  private readonly dedupWindowMs: number;
  private readonly followBlockMs: number;
  private readonly connectionName: string;
  private readonly appendScript: LuaScript;
  private readonly retentionScript: LuaScript;
  private readonly deleteScript: LuaScript;
  /** WAIT blocks its connection, so appends that wait for replicas get their own. */
  private waitConnection: Redis | undefined;
  /** Wakes followers that have caught up; one blocking connection for all of them. */
  private readonly watcher: StreamWatcher;
  private followers = 0;
  private closed = false;

  private constructor(options: RedisEventLogOptions) {
    this.redis = options.redis;
    this.prefix = options.prefix;
    this.registryKey = `${options.prefix}:streams`;
    this.durability = Object.freeze({ timeoutMs: 1000, replicas: 0, ...options.durability });
    this.dedupWindowMs = (options.dedupWindowSeconds ?? DEFAULT_DEDUP_WINDOW_SECONDS) * 1000;
    this.limits = Object.freeze({ ...DEFAULT_EVENT_LOG_LIMITS, ...options.limits });
    this.followBlockMs = options.followBlockMs ?? 5000;
    this.connectionName = options.connectionName ?? 'offtake-eventlog';
    this.appendScript = luaScript(APPEND);
    this.retentionScript = luaScript(RETENTION);
    this.deleteScript = luaScript(DELETE);
    this.watcher = new StreamWatcher({
      connect: () => this.duplicate('watch'),
      control: this.redis,
      blockMs: this.followBlockMs,
    });
  }

  /** Followers running now, and how many of them wait for new events (for metrics and tests). */
  get followerCount(): { running: number; waiting: number } {
    return { running: this.followers, waiting: this.watcher.waiting };
  }

  /**
   * Creates the log after checking that the Redis server keeps the durability promise asked
   * for (CONFIG GET appendonly / appendfsync); refuses with an error that says what to change.
   */
  static async create(options: RedisEventLogOptions): Promise<RedisEventLog> {
    const log = new RedisEventLog(options);
    await log.checkDurability();
    return log;
  }

  private async checkDurability(): Promise<void> {
    const positive = (value: number, name: string, allowZero = false) => {
      if (!Number.isSafeInteger(value) || value < (allowZero ? 0 : 1)) {
        throw new Error(
          `Event log ${name} must be a ${allowZero ? 'non-negative' : 'positive'} integer, got ${value}.`,
        );
      }
    };
    positive(this.limits.maxEventBytes, 'maxEventBytes');
    positive(this.limits.maxBatchEvents, 'maxBatchEvents');
    positive(this.dedupWindowMs, 'dedupWindowSeconds', true);
    positive(this.followBlockMs, 'followBlockMs');
    positive(this.durability.timeoutMs ?? 1000, 'durability timeoutMs', true);
    const { mode, replicas = 0 } = this.durability;
    if (!['none', 'everysec', 'always'].includes(mode)) {
      throw new Error(
        `Event log durability mode ${JSON.stringify(mode)} is unknown: use none, everysec or always.`,
      );
    }
    if (!Number.isInteger(replicas) || replicas < 0) {
      throw new Error(`Event log durability replicas must be a non-negative integer, got ${replicas}.`);
    }
    if (mode === 'none') return;
    let appendonly: string | undefined;
    let appendfsync: string | undefined;
    try {
      const reply = (await this.redis.call('CONFIG', ['GET', 'append*'])) as string[];
      for (let i = 0; i + 1 < reply.length; i += 2) {
        if (reply[i] === 'appendonly') appendonly = reply[i + 1];
        if (reply[i] === 'appendfsync') appendfsync = reply[i + 1];
      }
    } catch (cause) {
      throw new Error(
        `Event log durability "${mode}" cannot be verified: CONFIG GET was refused by Redis (${(cause as Error).message}). ` +
          'Allow CONFIG GET for this user, or set the durability mode to none.',
        { cause },
      );
    }
    const wanted = mode === 'always' ? ['always'] : ['everysec', 'always'];
    if (appendonly !== 'yes' || appendfsync === undefined || !wanted.includes(appendfsync)) {
      throw new Error(
        `Event log durability "${mode}" needs Redis with appendonly yes and appendfsync ${wanted.join(' or ')}, ` +
          `but the server has appendonly ${appendonly ?? '?'} and appendfsync ${appendfsync ?? '?'}. ` +
          `Reconfigure Redis (e.g. CONFIG SET appendonly yes; CONFIG SET appendfsync ${wanted[0]}) or choose a weaker mode.`,
      );
    }
  }

  private streamKey(stream: string): string {
    return redisStreamKey(this.prefix, stream);
  }

  private dedupBase(stream: string): string {
    return `${this.prefix}:dedup:{${stream}}:`;
  }

  private async runScript(
    client: Redis,
    script: LuaScript,
    keys: string[],
    args: (string | number)[],
    waitReplicas = 0,
  ): Promise<{ result: unknown; acknowledgedBy?: number }> {
    const run = async (useSource: boolean) => {
      const pipeline = client.pipeline();
      if (useSource) pipeline.eval(script.source, keys.length, ...keys, ...args);
      else pipeline.evalsha(script.sha, keys.length, ...keys, ...args);
      if (waitReplicas > 0) pipeline.wait(waitReplicas, this.durability.timeoutMs ?? 1000);
      return (await pipeline.exec()) ?? [];
    };
    let replies = await run(false);
    if (replies[0]?.[0] instanceof Error && replies[0][0].message.startsWith('NOSCRIPT'))
      replies = await run(true);
    const [scriptError, result] = replies[0] ?? [new Error('no reply'), undefined];
    if (scriptError !== null) throw scriptError;
    if (waitReplicas === 0) return { result };
    const [waitError, acknowledgedBy] = replies[1];
    if (waitError !== null) throw waitError;
    return { result, acknowledgedBy: acknowledgedBy as number };
  }

  async append(stream: string, events: readonly EventInput[]): Promise<AppendResult> {
    checkStreamName(stream);
    if (!Array.isArray(events)) throw new OfftakeError('invalid-event', 'Events must be given as an array.');
    const prepared = prepareEvents(events, this.limits);
    if (prepared.length === 0) return { offsets: [], duplicates: [] };
    const args: (string | number)[] = new Array<string | number>(3 + prepared.length * 3);
    args[0] = stream;
    args[1] = this.dedupBase(stream);
    args[2] = this.dedupWindowMs;
    let i = 3;
    for (const e of prepared) {
      // Length-prefixed source: no two (source, id) pairs make the same field.
      args[i++] = `${e.source.length}:${e.source}${e.id}`;
      args[i++] = e.type;
      args[i++] = e.json;
    }
    const replicas = this.durability.replicas ?? 0;
    const client = replicas > 0 ? (this.waitConnection ??= this.duplicate('wait')) : this.redis;
    const { result, acknowledgedBy } = await this.runScript(
      client,
      this.appendScript,
      [this.registryKey, this.streamKey(stream)],
      args,
      replicas,
    );
    const replies = result as string[];
    const offsets = new Array<Offset>(replies.length);
    const duplicates = new Array<boolean>(replies.length);
    for (let j = 0; j < replies.length; j++) {
      const duplicate = replies[j].charCodeAt(0) === 61; // '='
      duplicates[j] = duplicate;
      offsets[j] = duplicate ? replies[j].slice(1) : replies[j];
    }
    if (acknowledgedBy !== undefined && acknowledgedBy < replicas) {
      throw new OfftakeError(
        'unavailable',
        `The events were stored on the primary but only ${acknowledgedBy} of ${replicas} replicas confirmed them within ` +
          `${this.durability.timeoutMs} ms; retrying with the same source and id is safe.`,
        {
          extensions: {
            offsets,
            duplicates,
            replicasAcknowledged: acknowledgedBy,
            replicasRequired: replicas,
          },
        },
      );
    }
    return { offsets, duplicates };
  }

  private duplicate(role: string): Redis {
    const connection = this.redis.duplicate({ connectionName: `${this.connectionName}:${role}` });
    // An idle duplicate's connection errors are reported through its pending commands.
    connection.on('error', () => undefined);
    return connection;
  }

  private async requireStream(stream: string): Promise<void> {
    if ((await this.redis.hexists(this.registryKey, stream)) === 0) throw notFound(stream);
  }

  async read(stream: string, options: ReadOptions = {}): Promise<ReadPage> {
    checkStreamName(stream);
    const range = resolveRange(options);
    const limit = options.limit ?? 100;
    if (!Number.isInteger(limit) || limit < 1)
      throw new OfftakeError('invalid-parameter', 'limit must be a positive integer.');
    const maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY;
    const types = typeFilter(options.types);
    const key = this.streamKey(stream);
    const end = range.end ?? '+';
    let start = range.start ?? '-';
    const events: LogEvent[] = [];
    let bytes = 0;
    let scanned = 0;
    let first = true;
    for (;;) {
      const count = types === null ? Math.min(limit - events.length, SCAN_CHUNK) : SCAN_CHUNK;
      let entries: Entry[];
      if (first) {
        // The existence check rides in the same round trip as the first page.
        const replies = (await this.redis
          .pipeline()
          .hexists(this.registryKey, stream)
          .xrange(key, range.empty ? '+' : start, range.empty ? '-' : end, 'COUNT', count)
          .exec())!;
        if (replies[0][0] !== null) throw replies[0][0];
        if (replies[0][1] === 0) throw notFound(stream);
        if (replies[1][0] !== null) throw replies[1][0];
        entries = replies[1][1] as Entry[];
        first = false;
      } else {
        entries = await this.redis.xrange(key, start, end, 'COUNT', count);
      }
      for (let i = 0; i < entries.length; i++) {
        const [id, fields] = entries[i];
        scanned++;
        if (types !== null && !types.has(fields[0])) continue;
        const json = entryJson(fields);
        const event = JSON.parse(json) as LogEvent;
        event.offset = id;
        events.push(event);
        bytes += json.length;
        if (events.length >= limit || bytes >= maxBytes) {
          const exhausted = i === entries.length - 1 && entries.length < count;
          return { events, next: exhausted ? null : id };
        }
      }
      if (entries.length < count) return { events, next: null };
      const lastId = entries[entries.length - 1][0];
      if (scanned >= PAGE_SCAN_BUDGET) return { events, next: lastId };
      start = `(${lastId}`;
    }
  }

  async *scan(stream: string, options: ScanOptions = {}): AsyncGenerator<LogEvent[]> {
    checkStreamName(stream);
    const range = resolveRange(options);
    const batchSize = options.batchSize ?? 1000;
    if (!Number.isInteger(batchSize) || batchSize < 1) {
      throw new OfftakeError('invalid-parameter', 'batchSize must be a positive integer.');
    }
    await this.requireStream(stream);
    if (range.empty) return;
    const types = typeFilter(options.types);
    const key = this.streamKey(stream);
    const end = range.end ?? '+';
    const fetch = (start: string) =>
      this.redis.xrange(key, start, end, 'COUNT', batchSize) as Promise<Entry[]>;
    let pending: Promise<Entry[]> | null = fetch(range.start ?? '-');
    try {
      while (pending !== null) {
        const entries: Entry[] = await pending;
        // Ask for the next batch before decoding this one, so Redis works while we parse.
        pending = entries.length === batchSize ? fetch(`(${entries[entries.length - 1][0]}`) : null;
        const events: LogEvent[] = [];
        for (let i = 0; i < entries.length; i++) {
          const fields = entries[i][1];
          if (types !== null && !types.has(fields[0])) continue;
          const event = JSON.parse(entryJson(fields)) as LogEvent;
          event.offset = entries[i][0];
          events.push(event);
        }
        if (events.length > 0) yield events;
      }
    } finally {
      // A consumer that stops early leaves a prefetch in flight; its outcome no longer matters.
      pending?.catch(() => undefined);
    }
  }

  async *follow(stream: string, options: FollowOptions = {}): AsyncGenerator<LogEvent[]> {
    checkStreamName(stream);
    const batchSize = options.batchSize ?? 500;
    const types = typeFilter(options.types);
    const key = this.streamKey(stream);
    let after: Offset;
    if (options.after !== undefined) after = parseOffset(options.after, 'after offset');
    else if (options.from !== undefined) after = previousOffset(parseOffset(options.from, 'from offset'));
    else if (options.since !== undefined)
      after = previousOffset(offsetAtTime(checkDate(options.since, 'since')));
    else after = OFFSET_ZERO;
    const [exists, last] = (await this.redis
      .pipeline()
      .hexists(this.registryKey, stream)
      .xrevrange(key, '+', '-', 'COUNT', 1)
      .exec())!;
    if (exists[0] !== null) throw exists[0];
    if (exists[1] === 0) throw notFound(stream);
    if (options.after === undefined && options.from === undefined && options.since === undefined) {
      // "From now": pin the current end once; re-reading `$` on every call would skip events.
      const lastEntries = last[1] as Entry[] | null;
      if (lastEntries !== null && lastEntries.length > 0) after = lastEntries[0][0];
    }
    const signal = options.signal;
    // A function, because the signal and `closed` change while this generator waits.
    const stopped = (): boolean => signal?.aborted === true || this.closed;
    if (stopped()) return;
    this.followers++;
    try {
      while (!stopped()) {
        // A plain read on the shared connection; only the watcher blocks, for every follower at once.
        let reply: [string, Entry[]][] | null;
        try {
          reply = await this.redis.xread('COUNT', batchSize, 'STREAMS', key, after);
        } catch (err) {
          if (stopped()) return;
          throw err;
        }
        const entries = reply?.[0]?.[1] ?? [];
        if (entries.length === 0) {
          await this.watcher.wait(key, after, signal);
          continue;
        }
        after = entries[entries.length - 1][0];
        const events: LogEvent[] = [];
        for (const [id, fields] of entries) {
          if (types !== null && !types.has(fields[0])) continue;
          const event = JSON.parse(entryJson(fields)) as LogEvent;
          event.offset = id;
          events.push(event);
        }
        if (events.length > 0) yield events;
      }
    } finally {
      this.followers--;
    }
  }

  async describe(stream: string): Promise<StreamInfo> {
    checkStreamName(stream);
    const replies = (await this.redis
      .pipeline()
      .hget(this.registryKey, stream)
      .call('XINFO', 'STREAM', this.streamKey(stream))
      .exec())!;
    if (replies[0][0] !== null) throw replies[0][0];
    const config = replies[0][1] as string | null;
    if (config === null) throw notFound(stream);
    return streamInfo(stream, config, replies[1]);
  }

  async listStreams(): Promise<StreamInfo[]> {
    const registry = await this.redis.hgetall(this.registryKey);
    const names = Object.keys(registry).sort();
    if (names.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const name of names) pipeline.call('XINFO', 'STREAM', this.streamKey(name));
    const replies = (await pipeline.exec())!;
    return names.map((name, i) => streamInfo(name, registry[name], replies[i]));
  }

  async setRetention(stream: string, retention: Retention | null): Promise<StreamInfo> {
    checkStreamName(stream);
    const value = retention === null ? '' : JSON.stringify(checkRetention(retention));
    await this.runScript(
      this.redis,
      this.retentionScript,
      [this.registryKey, this.streamKey(stream)],
      [stream, 'set', value],
    );
    return this.describe(stream);
  }

  async applyRetention(stream: string): Promise<number> {
    checkStreamName(stream);
    const { result } = await this.runScript(
      this.redis,
      this.retentionScript,
      [this.registryKey, this.streamKey(stream)],
      [stream, 'apply'],
    );
    if (result === -1) throw notFound(stream);
    return result as number;
  }

  async deleteStream(stream: string): Promise<boolean> {
    checkStreamName(stream);
    const { result } = await this.runScript(
      this.redis,
      this.deleteScript,
      [this.registryKey, this.streamKey(stream)],
      [stream],
    );
    return result === 1;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.watcher.close();
    const waitConnection = this.waitConnection;
    this.waitConnection = undefined;
    if (waitConnection !== undefined) await waitConnection.quit().catch(() => waitConnection.disconnect());
  }
}

function notFound(stream: string): OfftakeError {
  return new OfftakeError('stream-not-found', `The stream ${JSON.stringify(stream)} does not exist.`);
}

/** The envelope JSON of an entry written by the append script (one field: type -> JSON). */
function entryJson(fields: string[]): string {
  if (fields.length === 2) return fields[1];
  throw new OfftakeError(
    'internal',
    'A stream entry is not an event envelope; was the stream written by something else?',
  );
}

function typeFilter(types: readonly string[] | undefined): Set<string> | null {
  if (types === undefined || types.length === 0) return null;
  return new Set(types);
}

function checkDate(value: Date, what: string): number {
  const ms = value instanceof Date ? value.getTime() : Number.NaN;
  if (Number.isNaN(ms)) throw new OfftakeError('invalid-parameter', `${what} must be a valid time.`);
  return ms;
}

/** Turns offsets and times into one inclusive range; reversed explicit pairs are `invalid-range`. */
function resolveRange(options: RangeOptions): ResolvedRange {
  const from = options.from === undefined ? undefined : parseOffset(options.from, 'from offset');
  const after = options.after === undefined ? undefined : parseOffset(options.after, 'cursor');
  const to = options.to === undefined ? undefined : parseOffset(options.to, 'to offset');
  const since = options.since === undefined ? undefined : checkDate(options.since, 'since');
  const until = options.until === undefined ? undefined : checkDate(options.until, 'until');
  if (from !== undefined && to !== undefined && compareOffsets(from, to) > 0) {
    throw new OfftakeError('invalid-range', `from (${from}) is after to (${to}).`);
  }
  if (since !== undefined && until !== undefined && since >= until) {
    throw new OfftakeError(
      'invalid-range',
      `since (${new Date(since).toISOString()}) is not before until (${new Date(until).toISOString()}).`,
    );
  }
  let start: Offset | null = null;
  for (const candidate of [
    from,
    after === undefined ? undefined : nextOffset(after),
    since === undefined ? undefined : offsetAtTime(since),
  ]) {
    if (candidate !== undefined && (start === null || compareOffsets(candidate, start) > 0))
      start = candidate;
  }
  let end: Offset | null = null;
  for (const candidate of [to, until === undefined ? undefined : previousOffset(offsetAtTime(until))]) {
    if (candidate !== undefined && (end === null || compareOffsets(candidate, end) < 0)) end = candidate;
  }
  const empty = (start !== null && end !== null && compareOffsets(start, end) > 0) || end === OFFSET_ZERO;
  return { start, end, empty };
}

function checkRetention(retention: Retention): Retention {
  const checked: Retention = {};
  const positive = (value: unknown, name: string): number | undefined => {
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
      throw new OfftakeError('invalid-parameter', `retention.${name} must be a positive integer.`, {
        errors: [{ pointer: `/retention/${name}`, message: 'must be a positive integer' }],
      });
    }
    return value;
  };
  if (typeof retention !== 'object' || retention === null) {
    throw new OfftakeError('invalid-parameter', 'retention must be an object, or null to keep every event.');
  }
  for (const key of Object.keys(retention)) {
    if (key !== 'maxLength' && key !== 'maxAgeSeconds') {
      throw new OfftakeError(
        'invalid-parameter',
        `retention.${key} is not a retention setting: use maxLength or maxAgeSeconds.`,
        {
          errors: [{ pointer: `/retention/${key}`, message: 'unknown field' }],
        },
      );
    }
  }
  const maxLength = positive(retention.maxLength, 'maxLength');
  const maxAgeSeconds = positive(retention.maxAgeSeconds, 'maxAgeSeconds');
  if (maxLength !== undefined) checked.maxLength = maxLength;
  if (maxAgeSeconds !== undefined) checked.maxAgeSeconds = maxAgeSeconds;
  if (maxLength === undefined && maxAgeSeconds === undefined) {
    throw new OfftakeError(
      'invalid-parameter',
      'A retention needs maxLength or maxAgeSeconds; to keep every event, set the retention to null.',
      { errors: [{ pointer: '/retention', message: 'no limit given' }] },
    );
  }
  return checked;
}

function streamInfo(name: string, configJson: string, xinfo: [Error | null, unknown]): StreamInfo {
  const config = JSON.parse(configJson) as StreamConfig;
  const info: StreamInfo = {
    name,
    length: 0,
    firstOffset: null,
    lastOffset: null,
    firstTime: null,
    lastTime: null,
    retention: config.retention ?? null,
    createdAt: new Date(config.createdAt).toISOString(),
  };
  const [error, reply] = xinfo;
  if (error !== null) {
    // A registered stream whose key is gone holds nothing (never appended, or deleted under us).
    if (/no such key/i.test(error.message)) return info;
    throw error;
  }
  const fields = reply as unknown[];
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const value = fields[i + 1];
    switch (fields[i]) {
      case 'length':
        info.length = value as number;
        break;
      case 'first-entry':
        if (Array.isArray(value)) info.firstOffset = value[0] as string;
        break;
      case 'last-entry':
        if (Array.isArray(value)) info.lastOffset = value[0] as string;
        break;
    }
  }
  if (info.firstOffset !== null) info.firstTime = new Date(offsetTime(info.firstOffset)).toISOString();
  if (info.lastOffset !== null) info.lastTime = new Date(offsetTime(info.lastOffset)).toISOString();
  return info;
}
