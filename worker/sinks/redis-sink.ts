/**
 * The redis target: one Redis key per record, `${keyPrefix}${key}`, holding a hash of the
 * record's fields or one JSON document, with an optional TTL. One Lua script per batch applies
 * the guards, the writes, the TTLs and the checkpoint atomically (see `redis-sink-script.ts`).
 *
 * The guard — the position (offset, stream) of the event that last wrote a key — lives in the
 * record itself, as the fields `_offset` (`<ms>-<seq>`) and `_stream` (first in a JSON document).
 * Readers see it too, which tells them how fresh a record is; user field names cannot start with
 * "_", so nothing collides. It expires with the record, so a TTL never leaves guards behind.
 *
 * A delete removes the record and leaves a tombstone (and marks, once, that the sink has any): a small string key
 * `${tombstonePrefix}${key}` holding `<ms>-<seq> <stream>`, so a delete at offset N still beats
 * an upsert older than N that arrives later. Tombstones live outside the record key space, so
 * readers scanning the product's prefix never see them; a newer upsert removes its key's
 * tombstone. Tombstones are indexed by time (a sorted set at the bare tombstone prefix) and
 * removed by {@link RedisSink.purgeTombstones} once no older event can arrive any more; with a
 * TTL they also expire like records (after that, a replayed older event could bring the key back
 * — a TTL makes the state time-dependent anyway).
 *
 * A batch's keys are sent as the script's KEYS; on Redis Cluster they must share a slot, i.e. the
 * prefixes must carry one hash tag (`offtake:{ns.name}:`) — single-node Redis needs nothing.
 */
import type { Redis } from 'ioredis';
import {
  checkRecord,
  checkpointJson,
  latestPerKey,
  offsetParts,
  parseCheckpoint,
  toJsonText,
} from './records.ts';
import { REDIS_PURGE_SCRIPT, REDIS_SINK_SCRIPT } from './redis-sink-script.ts';
import type { Checkpoint, Sink, SinkRecord, SinkWriteResult } from './sink.ts';
import { SinkRecordError } from './sink-record-error.ts';

/** Options of a {@link RedisSink}. */
export interface RedisSinkOptions {
  /** Prefix of every record key, e.g. `offtake:data:checkout.eu-big-orders:`. */
  keyPrefix: string;
  /** A hash of the record's fields, or one JSON string. */
  format: 'hash' | 'json';
  /** Expire each record this many seconds after its last write (1-31536000); never when absent. */
  ttlSeconds?: number;
  /**
   * The hash holding this sink's checkpoints (name -> JSON). Must lie outside the record key
   * space. Default: `keyPrefix` without its trailing ":" plus `#checkpoints`.
   */
  checkpointKey?: string;
  /**
   * Prefix of the tombstone keys. Must lie outside the record key space. Default: `keyPrefix`
   * without its trailing ":" plus `#tombstones:`.
   */
  tombstonePrefix?: string;
}

/** Longest TTL a record may have (one year, as the spec allows). */
const MAX_TTL_SECONDS = 31_536_000;

/** Keys deleted per UNLINK while dropping. */
const DROP_BATCH = 500;

/** Tombstones looked at per purge script: each run holds Redis for about a millisecond. */
const PURGE_BATCH = 1000;

/** Purge scripts per call: a large backlog is worked off over several calls, never in one long stall of the tail. */
const PURGE_RUNS = 20;

/**
 * Why a record cannot be written to a redis target, or undefined when it can (see
 * `checkRecord`: key of at most 1024 bytes, valid stream and offset, storable fields). Any key
 * string is otherwise safe: it only ever travels as a Redis key argument.
 */
export function validateRedisRecord(record: SinkRecord): string | undefined {
  return checkRecord(record, { allowNul: true });
}

/** A field value as a hash stores it: text as is, numbers and booleans as their JSON text, objects as JSON. */
function hashValue(value: unknown): string {
  switch (typeof value) {
    case 'string':
      return value;
    case 'number':
    case 'bigint':
    case 'boolean':
      return String(value);
    default:
      return value instanceof Date ? value.toISOString() : toJsonText(value);
  }
}

/** A Redis glob matching exactly the keys that start with `prefix`. */
function globPrefix(prefix: string): string {
  return `${prefix.replace(/[\\*?[\]]/g, (c) => `\\${c}`)}*`;
}

/** The sink of a redis target. The connection belongs to the caller. */
export class RedisSink implements Sink {
  readonly keyPrefix: string;
  readonly format: 'hash' | 'json';
  readonly ttlSeconds: number | undefined;
  readonly checkpointKey: string;
  readonly tombstonePrefix: string;
  private readonly redis: Redis;

  constructor(redis: Redis, opts: RedisSinkOptions) {
    const { keyPrefix, format, ttlSeconds } = opts;
    if (typeof keyPrefix !== 'string' || keyPrefix.length === 0)
      throw new Error('A redis sink needs a keyPrefix.');
    if (format !== 'hash' && format !== 'json') throw new Error('A redis sink format is "hash" or "json".');
    if (
      ttlSeconds !== undefined &&
      (!Number.isInteger(ttlSeconds) || ttlSeconds < 1 || ttlSeconds > MAX_TTL_SECONDS)
    ) {
      throw new Error(`A redis sink TTL is a whole number of seconds from 1 to ${MAX_TTL_SECONDS}.`);
    }
    const base = keyPrefix.endsWith(':') ? keyPrefix.slice(0, -1) : undefined;
    const checkpointKey = opts.checkpointKey ?? (base === undefined ? undefined : `${base}#checkpoints`);
    const tombstonePrefix = opts.tombstonePrefix ?? (base === undefined ? undefined : `${base}#tombstones:`);
    if (checkpointKey === undefined || tombstonePrefix === undefined) {
      throw new Error(
        'A redis sink keyPrefix that does not end with ":" needs an explicit checkpointKey and tombstonePrefix.',
      );
    }
    // Any string can be a record key, so the sink's own keys must not start with the record
    // prefix — and records must not fall into the tombstone space — or a key could clobber them.
    if (
      tombstonePrefix.length === 0 ||
      checkpointKey.startsWith(keyPrefix) ||
      tombstonePrefix.startsWith(keyPrefix) ||
      keyPrefix.startsWith(tombstonePrefix) ||
      checkpointKey.startsWith(tombstonePrefix)
    ) {
      throw new Error(
        'A redis sink checkpointKey and tombstonePrefix must lie outside the record key space and each other.',
      );
    }
    this.redis = redis;
    this.keyPrefix = keyPrefix;
    this.format = format;
    this.ttlSeconds = ttlSeconds;
    this.checkpointKey = checkpointKey;
    this.tombstonePrefix = tombstonePrefix;
  }

  /** Why `record` cannot be written here, or undefined (see {@link validateRedisRecord}). */
  validateRecord(record: SinkRecord): string | undefined {
    return validateRedisRecord(record);
  }

  /** Nothing to create: Redis keys come into being on first write. */
  prepare(): Promise<void> {
    return Promise.resolve();
  }

  /**
   * Applies a batch in one script. Throws {@link SinkRecordError} (nothing written) when a
   * record is invalid; within the batch the newest record of each key wins. The script holds
   * Redis while it runs (about a millisecond per thousand records), so keep batches to a few
   * thousand records.
   */
  async write(
    records: readonly SinkRecord[],
    checkpoint?: { name: string; position: Checkpoint },
  ): Promise<SinkWriteResult> {
    for (let i = 0; i < records.length; i++) {
      const why = validateRedisRecord(records[i]);
      if (why !== undefined) throw new SinkRecordError(i, why);
    }
    const checkpointText =
      checkpoint === undefined ? '' : checkpointJson(checkpoint.name, checkpoint.position);
    const latest = latestPerKey(records);
    if (latest.length === 0 && checkpoint === undefined) return { written: 0, skipped: records.length };

    const keys: string[] = [this.checkpointKey, this.tombstonePrefix];
    const args: (string | number)[] = [
      this.format,
      this.ttlSeconds ?? 0,
      checkpoint?.name ?? '',
      checkpointText,
    ];
    for (const record of latest) {
      keys.push(this.keyPrefix + record.key, this.tombstonePrefix + record.key);
      const { ms, seq } = offsetParts(record.offset);
      if (record.op === 'delete') {
        args.push('d', ms, seq, record.stream, 0);
      } else if (this.format === 'json') {
        const body = toJsonText(record.fields ?? {});
        // The guard goes first, where the script finds it without parsing the document.
        const head = `{"_offset":"${ms}-${seq}","_stream":"${record.stream}"`;
        args.push('u', ms, seq, record.stream, 1, body === '{}' ? `${head}}` : `${head},${body.slice(1)}`);
      } else {
        const countAt = args.length + 4;
        args.push('u', ms, seq, record.stream, 0);
        let n = 0;
        for (const [name, value] of Object.entries(record.fields ?? {})) {
          if (value === null || value === undefined) continue;
          args.push(name, hashValue(value));
          n += 2;
        }
        args[countAt] = n;
      }
    }
    const written = (await this.runScript(REDIS_SINK_SCRIPT, keys, args)) as number;
    return { written, skipped: records.length - written };
  }

  /**
   * Deletes the tombstones of events older than `beforeMs` (the milliseconds of an offset,
   * decimal) in runs of {@link PURGE_BATCH}, so Redis is never held long, and at most
   * {@link PURGE_RUNS} runs (the rest goes at the next call); returns how many.
   */
  async purgeTombstones(beforeMs: string): Promise<number> {
    let purged = 0;
    for (let run = 0; run < PURGE_RUNS; run++) {
      const [deleted, looked] = (await this.runScript(
        REDIS_PURGE_SCRIPT,
        [this.tombstonePrefix],
        [beforeMs, PURGE_BATCH],
      )) as [number, number];
      purged += deleted;
      if (looked < PURGE_BATCH) break;
    }
    return purged;
  }

  private async runScript(
    script: { source: string; sha: string },
    keys: string[],
    args: (string | number)[],
  ): Promise<unknown> {
    try {
      return await this.redis.call('EVALSHA', [script.sha, keys.length, ...keys, ...args]);
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return await this.redis.call('EVAL', [script.source, keys.length, ...keys, ...args]);
    }
  }

  async readCheckpoint(name: string): Promise<Checkpoint | null> {
    const json = await this.redis.hget(this.checkpointKey, name);
    return json === null ? null : parseCheckpoint(json);
  }

  /** Deletes every record, tombstone and checkpoint of this sink (SCAN, never KEYS). */
  async drop(): Promise<void> {
    for (const prefix of [this.keyPrefix, this.tombstonePrefix]) {
      let cursor = '0';
      do {
        const [next, found] = await this.redis.scan(cursor, 'MATCH', globPrefix(prefix), 'COUNT', 1000);
        cursor = next;
        for (let i = 0; i < found.length; i += DROP_BATCH)
          await this.redis.unlink(...found.slice(i, i + DROP_BATCH));
      } while (cursor !== '0');
    }
    await this.redis.unlink(this.checkpointKey);
  }

  /** Nothing to release: the connection belongs to the caller. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}
