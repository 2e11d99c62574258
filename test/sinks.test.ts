/**
 * The three sinks against real Redis and Postgres: idempotent and order-independent (in order,
 * every batch twice, batches reversed, shuffled records in random batches, parallel writers all
 * end in the state of one sequential pass), checkpoints atomic with the data, per-record errors
 * for values and keys that cannot be stored, and identifiers that cannot inject SQL.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import pg from 'pg';
import { RedisEventLog } from '../lib/eventlog/redis-event-log.ts';
import type { LogEvent } from '../lib/eventlog/event-log.ts';
import { COPY_NULL, copyTextChunks, copyTextRow, copyTextValue } from '../worker/sinks/copy-encoder.ts';
import { copyIn } from '../worker/sinks/copy-in.ts';
import { writeOneByOne } from '../worker/sinks/naive.ts';
import {
  isMismatch,
  quoteIdent,
  toColumnValue,
  type ColumnValue,
  type PostgresColumnType,
} from '../worker/sinks/postgres-columns.ts';
import { PostgresSink, storageTableName } from '../worker/sinks/postgres-sink.ts';
import { RedisSink, validateRedisRecord } from '../worker/sinks/redis-sink.ts';
import type { Checkpoint, Sink, SinkRecord } from '../worker/sinks/sink.ts';
import { SinkRecordError } from '../worker/sinks/sink-record-error.ts';
import { TopicSink } from '../worker/sinks/topic-sink.ts';
import { dropPrefix, testRedis, uniquePrefix } from './helpers/redis.ts';

const POSTGRES_URL =
  process.env.OFFTAKE_TEST_POSTGRES_URL ?? 'postgres://postgres:postgres@127.0.0.1:5432/postgres';

// ---------------------------------------------------------------------------------------------
// The data set: ≥ 20,000 records over a few hundred keys, two streams, upserts and tombstones.

/** A small seeded PRNG (mulberry32), so a failing run can be repeated. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const SEED = Number(process.env.SINKS_TEST_SEED ?? 20240601);
const RECORDS = 20_000;
const STREAMS = ['orders', 'orders.eu'];

const COLUMNS: Record<string, PostgresColumnType> = {
  name: 'text',
  amount: 'numeric',
  qty: 'integer',
  big: 'bigint',
  score: 'double precision',
  active: 'boolean',
  at: 'timestamptz',
  day: 'date',
  doc: 'jsonb',
  note: 'text',
};

/** Keys that look like trouble: globs, separators, braces, unicode, spaces, the longest allowed. */
const SPECIAL_KEYS = [
  '*',
  'a?b[c]d\\e',
  'with:colons:and{braces}',
  'ключ 😀 ñ',
  ' leading and trailing ',
  '__offsets',
  "'; DROP TABLE x; --",
  'é'.repeat(512), // 1024 bytes
];

/** The fields of the i-th record: every column type, some nulls, text that is not ASCII. */
function fieldsFor(i: number, random: () => number): Record<string, unknown> {
  const at = new Date(1_700_000_000_000 + i * 1000 + Math.floor(random() * 1000)).toISOString();
  return {
    name: i % 10 === 0 ? `Zoë ✓ ${i}` : `name-${i}`,
    amount: i % 2 === 0 ? (i % 4000) / 4 : `${i % 1000}.4500`,
    qty: i % 2 === 0 ? i : String(-i),
    big: (9_007_199_254_740_993n + BigInt(i)).toString(),
    score: i / 8,
    active: i % 3 === 0,
    at,
    day: at.slice(0, 10),
    doc: i % 5 === 0 ? null : { i, tags: ['a', `t${i % 7}`], nested: { ok: i % 2 === 0 } },
    note: i % 4 === 0 ? null : `note ${i}`,
  };
}

function makeRecords(): SinkRecord[] {
  const random = prng(SEED);
  const keys = [...Array.from({ length: 292 }, (_, i) => `customer-${i}`), ...SPECIAL_KEYS];
  const records: SinkRecord[] = [];
  let ms = 1_718_000_000_000;
  let seq = 0;
  while (records.length < RECORDS) {
    // Several events per millisecond, and sometimes the very same offset in both streams.
    if (random() < 0.4) {
      ms += 1 + Math.floor(random() * 3);
      seq = 0;
    } else {
      seq++;
    }
    const both = random() < 0.05;
    for (const stream of both ? STREAMS : [STREAMS[Math.floor(random() * 2)]]) {
      const i = records.length;
      const key = keys[Math.floor(random() * keys.length)];
      const offset = `${ms}-${seq}`;
      if (random() < 0.15) {
        records.push({ key, stream, offset, op: 'delete' });
        continue;
      }
      records.push({ key, stream, offset, op: 'upsert', fields: fieldsFor(i, random) });
    }
  }
  // Last words on 40 keys: the same offset in both streams, so the stream name decides.
  ms += 10;
  for (let i = 0; i < 40; i++, ms++) {
    const key = keys[i * 7];
    const [first, second] = i % 2 === 0 ? STREAMS : [...STREAMS].reverse();
    records.push({
      key,
      stream: first,
      offset: `${ms}-0`,
      op: 'upsert',
      fields: { ...fieldsFor(i, random), name: `tie-${i}` },
    });
    records.push(
      i % 4 < 2
        ? { key, stream: second, offset: `${ms}-0`, op: 'delete' }
        : {
            key,
            stream: second,
            offset: `${ms}-0`,
            op: 'upsert',
            fields: { ...fieldsFor(i + 1, random), name: `tie-${i}-b` },
          },
    );
  }
  return records;
}

const DATA = makeRecords();

/** The final state, computed on its own: sort by (ms, seq, stream) numerically, apply in turn. */
function expectedState(records: readonly SinkRecord[]): Map<string, SinkRecord> {
  const position = (r: SinkRecord): [bigint, bigint, string] => {
    const [ms, seq] = r.offset.split('-');
    return [BigInt(ms), BigInt(seq), r.stream];
  };
  const sorted = [...records].sort((a, b) => {
    const [am, as, ast] = position(a);
    const [bm, bs, bst] = position(b);
    if (am !== bm) return am < bm ? -1 : 1;
    if (as !== bs) return as < bs ? -1 : 1;
    return ast < bst ? -1 : ast > bst ? 1 : 0;
  });
  const state = new Map<string, SinkRecord>();
  for (const r of sorted) {
    if (r.op === 'delete') state.delete(r.key);
    else state.set(r.key, r);
  }
  return state;
}

const EXPECTED = expectedState(DATA);

function batches<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

function randomBatches<T>(items: readonly T[], random: () => number, max: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length;) {
    const size = 1 + Math.floor(random() * max);
    out.push(items.slice(i, i + size));
    i += size;
  }
  return out;
}

/** The checkpoint a batch stands for: the greatest offset per stream in it. */
function checkpointOf(batch: readonly SinkRecord[]): Checkpoint {
  const position: Checkpoint = {};
  for (const r of batch) {
    const seen = position[r.stream];
    if (seen === undefined) {
      position[r.stream] = r.offset;
      continue;
    }
    const [am, as] = seen.split('-').map(BigInt);
    const [bm, bs] = r.offset.split('-').map(BigInt);
    if (bm > am || (bm === am && bs > as)) position[r.stream] = r.offset;
  }
  return position;
}

/** The ways a seed can deliver the same records; each must end in {@link EXPECTED}. */
const SCENARIOS: Record<string, (sink: Sink) => Promise<void>> = {
  'in order': async (sink) => {
    for (const batch of batches(DATA, 1000))
      await sink.write(batch, { name: 'seed', position: checkpointOf(batch) });
  },
  'every batch twice': async (sink) => {
    for (const batch of batches(DATA, 700)) {
      await sink.write(batch);
      await sink.write(batch);
    }
  },
  'batches in reverse order': async (sink) => {
    for (const batch of batches(DATA, 250).reverse()) await sink.write(batch);
  },
  'shuffled records in random batch sizes': async (sink) => {
    const random = prng(SEED + 1);
    for (const batch of randomBatches(shuffled(DATA, random), random, 1500)) await sink.write(batch);
  },
  'parallel writers over shuffled batches': async (sink) => {
    const random = prng(SEED + 2);
    const queue = shuffled(randomBatches(DATA, random, 1200), random);
    const lane = async () => {
      for (let batch = queue.pop(); batch !== undefined; batch = queue.pop()) await sink.write(batch);
    };
    await Promise.all([lane(), lane(), lane(), lane()]);
  },
};

// ---------------------------------------------------------------------------------------------
// Reading back each target's state in a form comparable with EXPECTED.

function hashText(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value);
}

function expectedRedis(format: 'hash' | 'json'): Map<string, Record<string, unknown>> {
  const out = new Map<string, Record<string, unknown>>();
  for (const [key, r] of EXPECTED) {
    const doc: Record<string, unknown> = { _offset: r.offset, _stream: r.stream };
    for (const [name, value] of Object.entries(r.fields ?? {})) {
      if (format === 'json') doc[name] = value;
      else if (value !== null) doc[name] = hashText(value);
    }
    out.set(key, doc);
  }
  return out;
}

async function redisState(redis: Redis, sink: RedisSink): Promise<Map<string, Record<string, unknown>>> {
  const out = new Map<string, Record<string, unknown>>();
  const escaped = sink.keyPrefix.replace(/[\\*?[\]]/g, (c) => `\\${c}`);
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${escaped}*`, 'COUNT', 1000);
    cursor = next;
    const pipeline = redis.pipeline();
    for (const key of keys) {
      if (sink.format === 'hash') pipeline.hgetall(key);
      else pipeline.get(key);
    }
    const replies = (await pipeline.exec()) ?? [];
    keys.forEach((key, i) => {
      const [err, value] = replies[i];
      assert.equal(err, null);
      out.set(
        key.slice(sink.keyPrefix.length),
        sink.format === 'hash' ? (value as Record<string, string>) : JSON.parse(value as string),
      );
    });
  } while (cursor !== '0');
  return out;
}

function expectedPostgres(): Map<string, Record<string, unknown>> {
  const out = new Map<string, Record<string, unknown>>();
  for (const [key, r] of EXPECTED) {
    const f = r.fields!;
    out.set(key, {
      name: f.name,
      amount: String(f.amount),
      qty: Number(f.qty),
      big: f.big,
      score: f.score,
      active: f.active,
      at: f.at,
      day: f.day,
      doc: f.doc,
      note: f.note,
      _offset: r.offset,
      _stream: r.stream,
    });
  }
  return out;
}

async function postgresState(
  pool: pg.Pool,
  sink: PostgresSink,
): Promise<Map<string, Record<string, unknown>>> {
  const { rows } = await pool.query<Record<string, unknown> & { _key: string }>(
    `SELECT _key, name, amount::text AS amount, qty, big::text AS big, score, active,
            to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at, day::text AS day, doc, note,
            _offset, _stream
       FROM ${quoteIdent(sink.schema)}.${quoteIdent(sink.table)}`,
  );
  return new Map(rows.map(({ _key, ...rest }) => [_key, rest]));
}

function expectedTopic(): Map<string, Record<string, unknown>> {
  const out = new Map<string, Record<string, unknown>>();
  for (const [key, r] of EXPECTED) out.set(key, { ...r.fields, _offset: r.offset, _stream: r.stream });
  return out;
}

async function topicEvents(log: RedisEventLog, stream: string): Promise<LogEvent[]> {
  const events: LogEvent[] = [];
  for await (const page of log.scan(stream)) events.push(...page);
  return events;
}

/** The state a consumer of the topic derives with the sinks' guard rule. */
function topicState(events: readonly LogEvent[]): Map<string, Record<string, unknown>> {
  const latest = new Map<string, LogEvent>();
  const position = (e: LogEvent): [bigint, bigint, string] => {
    const [ms, seq] = String(e.sourceoffset).split('-');
    return [BigInt(ms), BigInt(seq), String(e.sourcestream)];
  };
  for (const e of events) {
    const seen = latest.get(e.subject!);
    if (seen !== undefined) {
      const [am, as, ast] = position(seen);
      const [bm, bs, bst] = position(e);
      const newer = bm !== am ? bm > am : bs !== as ? bs > as : bst > ast;
      if (!newer) continue;
    }
    latest.set(e.subject!, e);
  }
  const out = new Map<string, Record<string, unknown>>();
  for (const [key, e] of latest) {
    if (e.type === 'delete') continue;
    out.set(key, {
      ...(e.data as Record<string, unknown>),
      _offset: e.sourceoffset,
      _stream: e.sourcestream,
    });
  }
  return out;
}

function assertSameState(
  actual: Map<string, Record<string, unknown>>,
  expected: Map<string, Record<string, unknown>>,
) {
  assert.equal(actual.size, expected.size, 'number of live keys');
  for (const [key, value] of expected)
    assert.deepEqual(actual.get(key), value, `record ${JSON.stringify(key.slice(0, 40))}`);
}

function upsert(key: string, offset: string, fields: Record<string, unknown>, stream = 'orders'): SinkRecord {
  return { key, stream, offset, op: 'upsert', fields };
}

function remove(key: string, offset: string, stream = 'orders'): SinkRecord {
  return { key, stream, offset, op: 'delete' };
}

// ---------------------------------------------------------------------------------------------
// COPY: hostile text, and a decoder of COPY's text format written from its documentation.

/** Strings that break a careless COPY encoder: escapes, separators, quotes, NULL look-alikes, unicode, length. */
const HOSTILE_STRINGS = [
  '',
  ' ',
  '\\',
  '\\\\',
  '\\N',
  'N',
  'NULL',
  'null',
  '\\.',
  '\\.\n',
  '.',
  '\t',
  '\n',
  '\r',
  '\r\n',
  'a\tb\nc\\d\re',
  'trailing backslash\\',
  '\\\t\\\n\\\r',
  '\\x41\\101\\u0041\\b\\f\\v',
  '"double quotes" and \'single quotes\'',
  'comma, "csv", field\n"next",line',
  '\b\f\v\u0001\u001f\u007f\u0085',
  'ключ 😀 ñ e\u0301 \u200f\u202e right-to-left \u2028\u2029 \ufeff',
  '𝄞'.repeat(1000),
  'ab\\\\Ncd\\N',
  `${'x'.repeat(300_000)}\t${'\\'.repeat(300_000)}\n${'é'.repeat(300_000)}`,
];

/** Reads COPY text back into rows of strings and nulls; throws on anything the format does not allow. */
function decodeCopyText(text: string): (string | null)[][] {
  assert.ok(text.endsWith('\n'), 'every row ends with a newline');
  return text
    .slice(0, -1)
    .split('\n')
    .map((line) =>
      line.split('\t').map((field) => {
        if (field === '\\N') return null;
        return field.replace(/\\(.?)/gs, (_, c: string) => {
          const plain: Record<string, string> = { '\\': '\\', n: '\n', r: '\r', t: '\t' };
          assert.ok(
            Object.hasOwn(plain, c),
            `only \\\\, \\n, \\r and \\t are escapes the encoder writes, not \\${c}`,
          );
          return plain[c];
        });
      }),
    );
}

describe('the test data', () => {
  it('has 20,000 records over a few hundred keys with tombstones and same-offset pairs', () => {
    assert.ok(DATA.length >= 20_000);
    const keys = new Set(DATA.map((r) => r.key));
    assert.ok(keys.size >= 200 && keys.size <= 400);
    assert.ok(DATA.filter((r) => r.op === 'delete').length > 2000);
    const offsets = new Set<string>();
    let ties = 0;
    for (const r of DATA) {
      if (offsets.has(r.offset)) ties++;
      offsets.add(r.offset);
    }
    assert.ok(ties > 100, 'some offsets occur in both streams');
    assert.ok(EXPECTED.size > 100 && EXPECTED.size < keys.size, 'some keys end deleted, most live');
  });
});

// ---------------------------------------------------------------------------------------------
// Redis

describe('RedisSink', () => {
  let redis: Redis;
  let prefix: string;
  let n = 0;
  const fresh = (opts: { format: 'hash' | 'json'; ttlSeconds?: number }) =>
    new RedisSink(redis, { keyPrefix: `${prefix}:${n++}:data:`, ...opts });

  before(() => {
    redis = testRedis();
    prefix = uniquePrefix('sinks-redis');
  });
  after(async () => {
    await dropPrefix(redis, prefix);
    await redis.quit();
  });

  for (const format of ['hash', 'json'] as const) {
    for (const [scenario, apply] of Object.entries(SCENARIOS)) {
      it(`${format}: ${scenario} ends in the sequential state`, async () => {
        const sink = fresh({ format });
        await sink.prepare();
        await apply(sink);
        assertSameState(await redisState(redis, sink), expectedRedis(format));
        await sink.drop();
      });
    }
  }

  it('keeps a tombstone so an older upsert arriving later changes nothing', async () => {
    const sink = fresh({ format: 'hash' });
    await sink.write([upsert('k', '10-0', { a: 1 })]);
    assert.deepEqual(await sink.write([remove('k', '20-0')]), { written: 1, skipped: 0 });
    assert.equal(await redis.exists(`${sink.keyPrefix}k`), 0);
    assert.equal(await redis.get(`${sink.tombstonePrefix}k`), '20-0 orders');
    assert.deepEqual(await sink.write([upsert('k', '15-0', { a: 2 })]), { written: 0, skipped: 1 });
    assert.equal(await redis.exists(`${sink.keyPrefix}k`), 0);
    // Equal position: idempotent, not applied twice.
    assert.deepEqual(await sink.write([remove('k', '20-0')]), { written: 0, skipped: 1 });
    // Same offset, later stream name wins; a newer upsert clears the tombstone.
    assert.deepEqual(await sink.write([upsert('k', '20-0', { a: 3 }, 'orders.eu')]), {
      written: 1,
      skipped: 0,
    });
    assert.deepEqual(await redis.hgetall(`${sink.keyPrefix}k`), {
      _offset: '20-0',
      _stream: 'orders.eu',
      a: '3',
    });
    assert.equal(await redis.exists(`${sink.tombstonePrefix}k`), 0);
    await sink.drop();
  });

  it('purges only tombstones older than the bound; the rest keep guarding, records stay', async () => {
    const sink = fresh({ format: 'hash' });
    await sink.write([
      upsert('a', '10-0', { v: 1 }),
      upsert('b', '10-0', { v: 1 }),
      upsert('live', '10-0', { v: 1 }),
    ]);
    await sink.write([remove('a', '100-0'), remove('b', '300-0'), remove('revived', '50-0')]);
    // A newer upsert takes its key's tombstone and index entry with it.
    await sink.write([upsert('revived', '60-0', { v: 2 })]);
    const index = sink.tombstonePrefix;
    assert.deepEqual(await redis.zrange(index, '0', '-1', 'WITHSCORES'), [
      `${index}a`,
      '100',
      `${index}b`,
      '300',
    ]);

    assert.equal(await sink.purgeTombstones('100'), 0, 'a bound is exclusive');
    assert.equal(await sink.purgeTombstones('200'), 1);
    assert.equal(await redis.exists(`${index}a`), 0);
    assert.equal(await redis.get(`${index}b`), '300-0 orders');
    assert.deepEqual(await redis.zrange(index, '0', '-1'), [`${index}b`]);
    // b's tombstone still turns an older upsert away; a and the live records are untouched.
    assert.deepEqual(await sink.write([upsert('b', '200-0', { v: 9 })]), { written: 0, skipped: 1 });
    assert.equal(await redis.hget(`${sink.keyPrefix}live`, 'v'), '1');
    assert.equal(await redis.hget(`${sink.keyPrefix}revived`, 'v'), '2');
    // A key deleted again after its purge gets a new tombstone and index entry.
    await sink.write([remove('a', '400-0')]);
    assert.deepEqual(await redis.zrange(index, '0', '-1'), [`${index}b`, `${index}a`]);
    await sink.drop();
    assert.equal(await redis.exists(index), 0);
  });

  it('purges in runs past the batch size, and index entries of expired tombstones', async () => {
    const sink = fresh({ format: 'json', ttlSeconds: 3600 });
    const keys = Array.from({ length: 2500 }, (_, i) => `k${i}`);
    await sink.write(keys.map((k, i) => remove(k, `${1000 + i}-0`)));
    // One tombstone gone on its own (as a TTL would): its index entry is dropped, not counted.
    await redis.del(`${sink.tombstonePrefix}k0`);
    assert.equal(await sink.purgeTombstones('3000'), 1999);
    assert.equal(await redis.zcard(sink.tombstonePrefix), 500);
    assert.equal(await sink.purgeTombstones('9999'), 500);
    assert.equal(await redis.exists(sink.tombstonePrefix), 0);
    await sink.drop();
  });

  it('turns the tombstone marker of an earlier version into the index', async () => {
    const sink = fresh({ format: 'hash' });
    await sink.write([remove('old', '5-0')]);
    // What an earlier version left: a plain marker string.
    await redis.set(sink.tombstonePrefix, '1');
    assert.equal(await sink.purgeTombstones('10'), 0);
    assert.deepEqual(await sink.write([upsert('old', '4-0', { v: 1 })]), { written: 0, skipped: 1 });
    await sink.write([remove('new', '20-0')]);
    assert.equal(await redis.type(sink.tombstonePrefix), 'zset');
    assert.equal(await sink.purgeTombstones('30'), 1);
    assert.equal(await redis.exists(`${sink.tombstonePrefix}new`), 0);
    await sink.drop();
  });

  it('compares offsets as numbers over the whole 64-bit range', async () => {
    const sink = fresh({ format: 'json' });
    const big = '18446744073709551615';
    await sink.write([upsert('k', `${big}-9`, { v: 'newest' })]);
    await sink.write([upsert('k', `${big}-10`, { v: 'newer seq' })]);
    await sink.write([upsert('k', `9${'9'.repeat(18)}-0`, { v: 'older ms' })]);
    await sink.write([upsert('k', '9-0', { v: 'shorter' })]);
    assert.deepEqual(JSON.parse((await redis.get(`${sink.keyPrefix}k`))!), {
      _offset: `${big}-10`,
      _stream: 'orders',
      v: 'newer seq',
    });
    await sink.drop();
  });

  it('within a batch the newest record of a key wins, whatever its place', async () => {
    const sink = fresh({ format: 'hash' });
    const result = await sink.write([
      upsert('k', '5-0', { v: 'b' }),
      upsert('k', '7-0', { v: 'c' }),
      remove('k', '6-0'),
      upsert('k', '3-0', { v: 'a' }),
    ]);
    assert.deepEqual(result, { written: 1, skipped: 3 });
    assert.equal(await redis.hget(`${sink.keyPrefix}k`, 'v'), 'c');
    await sink.drop();
  });

  it('stores values as the format says: hash text (nulls omitted) or one JSON document', async () => {
    const fields = {
      s: 'x',
      n: 1.5,
      i: 12345678901234567890n,
      b: false,
      o: { a: [1, null] },
      z: null,
      t: new Date(0),
    };
    const hash = fresh({ format: 'hash' });
    await hash.write([upsert('k', '1-0', fields)]);
    assert.deepEqual(await redis.hgetall(`${hash.keyPrefix}k`), {
      _offset: '1-0',
      _stream: 'orders',
      s: 'x',
      n: '1.5',
      i: '12345678901234567890',
      b: 'false',
      o: '{"a":[1,null]}',
      t: '1970-01-01T00:00:00.000Z',
    });
    const json = fresh({ format: 'json' });
    await json.write([upsert('k', '1-0', fields)]);
    assert.equal(
      await redis.get(`${json.keyPrefix}k`),
      '{"_offset":"1-0","_stream":"orders","s":"x","n":1.5,"i":12345678901234567890,"b":false,"o":{"a":[1,null]},"z":null,"t":"1970-01-01T00:00:00.000Z"}',
    );
    // A record without fields still carries its guard.
    await hash.write([upsert('empty', '1-0', {})]);
    assert.deepEqual(await redis.hgetall(`${hash.keyPrefix}empty`), { _offset: '1-0', _stream: 'orders' });
    await hash.drop();
    await json.drop();
  });

  it('expires records and tombstones after the TTL', async () => {
    const sink = fresh({ format: 'hash', ttlSeconds: 300 });
    await sink.write([upsert('a', '1-0', { v: 1 }), remove('b', '1-0')]);
    const ttlA = await redis.ttl(`${sink.keyPrefix}a`);
    const ttlB = await redis.ttl(`${sink.tombstonePrefix}b`);
    assert.ok(ttlA > 0 && ttlA <= 300, `record TTL ${ttlA}`);
    assert.ok(ttlB > 0 && ttlB <= 300, `tombstone TTL ${ttlB}`);
    await sink.drop();
  });

  it('takes any key string, byte for byte, and rejects over-long keys per record', async () => {
    const sink = fresh({ format: 'hash' });
    const keys = ['*', '[a-z]?', 'a\u0000b', 'line\nbreak', '{tag}', '😀', 'x'.repeat(1024)];
    await sink.write(keys.map((k, i) => upsert(k, `${i + 1}-0`, { i })));
    for (const [i, k] of keys.entries())
      assert.equal(await redis.hget(`${sink.keyPrefix}${k}`, 'i'), String(i));

    const tooLong = upsert('é'.repeat(513), '9-0', { i: 1 });
    assert.match(validateRedisRecord(tooLong)!, /1026 bytes long; at most 1024/);
    assert.match(validateRedisRecord(upsert('\ud800', '9-0', {}))!, /unpaired/);
    assert.match(validateRedisRecord(upsert('', '9-0', {}))!, /empty/);
    assert.match(validateRedisRecord(upsert('k', '9-0', { _offset: 1 }))!, /reserved/);
    assert.match(validateRedisRecord(upsert('k', 'nine', {}))!, /offset/);
    assert.match(validateRedisRecord({ ...upsert('k', '9-0', {}), stream: 'no:colons' })!, /stream/);
    assert.match(validateRedisRecord(upsert('k', '9-0', { n: Number.NaN }))!, /finite/);
    assert.equal(validateRedisRecord(upsert('k', '9-0', { n: 1 })), undefined);

    const err = await sink.write([upsert('ok', '10-0', { i: 1 }), tooLong]).catch((e: unknown) => e);
    assert.ok(err instanceof SinkRecordError);
    assert.equal(err.index, 1);
    assert.equal(await redis.exists(`${sink.keyPrefix}ok`), 0, 'nothing of the batch was written');
    await sink.drop();
  });

  it('writes the checkpoint in the same script as the records', async () => {
    const sink = fresh({ format: 'hash' });
    assert.equal(await sink.readCheckpoint('seed'), null);
    await sink.write([upsert('a', '5-0', { v: 1 })], { name: 'seed', position: { orders: '0005-0' } });
    assert.deepEqual(await sink.readCheckpoint('seed'), { orders: '5-0' });
    // A checkpoint alone (an empty batch) is fine too.
    await sink.write([], { name: 'tail', position: { orders: '6-0' } });
    assert.deepEqual(await sink.readCheckpoint('tail'), { orders: '6-0' });
    await sink.drop();
  });

  it('leaves neither records nor checkpoint when the script fails', async () => {
    // A key of the wrong type makes the guard read fail: nothing of the batch may be written.
    const sink = fresh({ format: 'hash' });
    await sink.write([upsert('a', '1-0', { v: 1 })], { name: 'seed', position: { orders: '1-0' } });
    await redis.rpush(`${sink.keyPrefix}c`, 'not a hash');
    const batch = [upsert('a', '2-0', { v: 2 }), upsert('b', '2-1', { v: 2 }), upsert('c', '2-2', { v: 2 })];
    await assert.rejects(sink.write(batch, { name: 'seed', position: { orders: '2-2' } }), /WRONGTYPE/);
    assert.equal(await redis.hget(`${sink.keyPrefix}a`, 'v'), '1');
    assert.equal(await redis.exists(`${sink.keyPrefix}b`), 0);
    assert.deepEqual(await sink.readCheckpoint('seed'), { orders: '1-0' });

    // The checkpoint key of the wrong type: checked before anything is written.
    await redis.del(`${sink.keyPrefix}c`);
    const broken = new RedisSink(redis, {
      keyPrefix: sink.keyPrefix,
      format: 'hash',
      checkpointKey: `${prefix}:broken-checkpoint`,
      tombstonePrefix: sink.tombstonePrefix,
    });
    await redis.set(`${prefix}:broken-checkpoint`, 'a string');
    await assert.rejects(broken.write(batch, { name: 'seed', position: { orders: '2-2' } }), /WRONGTYPE/);
    assert.equal(await redis.hget(`${sink.keyPrefix}a`, 'v'), '1');
    assert.equal(await redis.exists(`${sink.keyPrefix}b`), 0);

    // A closed connection: nothing reaches Redis.
    const closed = testRedis();
    await closed.quit();
    await assert.rejects(new RedisSink(closed, { keyPrefix: sink.keyPrefix, format: 'hash' }).write(batch));
    assert.equal(await redis.exists(`${sink.keyPrefix}b`), 0);

    // And the same batch goes through once the obstacle is gone.
    await sink.write(batch, { name: 'seed', position: { orders: '2-2' } });
    assert.deepEqual(await sink.readCheckpoint('seed'), { orders: '2-2' });
    assert.equal(await redis.hget(`${sink.keyPrefix}c`, 'v'), '2');
    await sink.drop();
  });

  it('runs again after Redis forgot the script (EVALSHA falls back to EVAL)', async () => {
    const sink = fresh({ format: 'json' });
    await redis.script('FLUSH');
    await sink.write([upsert('a', '1-0', { v: 1 })]);
    assert.ok(await redis.exists(`${sink.keyPrefix}a`));
    await sink.drop();
  });

  it('drop removes records, tombstones and checkpoints, and nothing else', async () => {
    const sink = fresh({ format: 'hash' });
    const neighbour = fresh({ format: 'hash' });
    await neighbour.write([upsert('a', '1-0', { v: 1 })]);
    await sink.write([upsert('a', '1-0', { v: 1 }), remove('b', '1-0'), upsert('*', '1-0', { v: 1 })], {
      name: 'seed',
      position: { orders: '1-0' },
    });
    await sink.drop();
    for (const p of [sink.keyPrefix, sink.tombstonePrefix]) {
      const [, left] = await redis.scan(
        '0',
        'MATCH',
        `${p.replace(/[\\*?[\]]/g, (c) => `\\${c}`)}*`,
        'COUNT',
        10000,
      );
      assert.deepEqual(left, []);
    }
    assert.equal(await redis.exists(sink.checkpointKey), 0);
    assert.equal(await redis.hget(`${neighbour.keyPrefix}a`, 'v'), '1');
    await neighbour.drop();
  });

  it('refuses options that would let record keys collide with its own keys', () => {
    assert.throws(() => new RedisSink(redis, { keyPrefix: 'p', format: 'hash' }), /explicit checkpointKey/);
    assert.throws(
      () =>
        new RedisSink(redis, {
          keyPrefix: 'p:',
          format: 'hash',
          checkpointKey: 'p:cp',
          tombstonePrefix: 't:',
        }),
      /outside/,
    );
    assert.throws(
      () =>
        new RedisSink(redis, {
          keyPrefix: 'p:',
          format: 'hash',
          checkpointKey: 'cp',
          tombstonePrefix: 'p:t:',
        }),
      /outside/,
    );
    assert.throws(() => new RedisSink(redis, { keyPrefix: 'p:', format: 'hash', ttlSeconds: 0 }), /TTL/);
    assert.throws(() => new RedisSink(redis, { keyPrefix: 'p:', format: 'xml' as 'hash' }), /format/);
  });

  it('the naive one-by-one writer reaches the same state', async () => {
    const sink = fresh({ format: 'hash' });
    const slice = DATA.slice(0, 600);
    await writeOneByOne(sink, [...slice].reverse(), { name: 'seed', position: checkpointOf(slice) });
    const expected = expectedState(slice);
    const state = await redisState(redis, sink);
    assert.deepEqual(new Set(state.keys()), new Set(expected.keys()));
    for (const [key, r] of expected) assert.equal(state.get(key)!._offset, r.offset);
    assert.deepEqual(await sink.readCheckpoint('seed'), checkpointOf(slice));
    await sink.drop();
  });
});

// ---------------------------------------------------------------------------------------------
// COPY text encoding (pure; the round trip through Postgres is in the PostgresSink suite)

describe('COPY text encoding', () => {
  it('escapes backslash, tab, newline and carriage return, and nothing else', () => {
    const cases: [ColumnValue, string][] = [
      [null, '\\N'],
      ['\\N', '\\\\N'],
      ['', ''],
      ['plain', 'plain'],
      ['\\', '\\\\'],
      ['a\tb\nc\rd\\e', 'a\\tb\\nc\\rd\\\\e'],
      ['\\.', '\\\\.'],
      ['\\x41\\101', '\\\\x41\\\\101'],
      ['"quoted", \'single\'', '"quoted", \'single\''],
      ['\b\f\v\u0001\u007f', '\b\f\v\u0001\u007f'],
      ['ключ 😀 e\u0301 \u2028', 'ключ 😀 e\u0301 \u2028'],
      [true, 't'],
      [false, 'f'],
      [0, '0'],
      [-1.5, '-1.5'],
      [5e-324, '5e-324'],
      [1e21, '1e+21'],
      [2 ** 53 + 2, '9007199254740994'],
    ];
    for (const [value, text] of cases) assert.equal(copyTextValue(value), text, JSON.stringify(value));
    assert.equal(COPY_NULL, '\\N');
    assert.equal(copyTextRow(['a\tb', null, 1, true, '\\N']), 'a\\tb\t\\N\t1\tt\t\\\\N\n');
    assert.throws(() => copyTextValue('a\u0000b'), /U\+0000/);
    assert.throws(() => copyTextValue(Number.NaN), /not finite/);
    assert.throws(() => copyTextValue(Number.POSITIVE_INFINITY), /not finite/);
  });

  it('decodes back to exactly the values, one field per column, for hostile strings', () => {
    const columns: ColumnValue[][] = [
      HOSTILE_STRINGS,
      HOSTILE_STRINGS.map((s, i) => (i % 3 === 0 ? null : s.split('').reverse().join(''))),
      HOSTILE_STRINGS.map(() => COPY_NULL),
    ];
    const text = [...copyTextChunks(columns, 1000)].join('');
    const rows = decodeCopyText(text);
    assert.equal(rows.length, HOSTILE_STRINGS.length);
    rows.forEach((row, i) => assert.deepEqual(row, [columns[0][i], columns[1][i], '\\N'], `row ${i}`));
  });

  it('yields pieces of at most the chunk size at row boundaries, lazily', () => {
    const values = Array.from({ length: 1000 }, (_, i) => `${i}`.padEnd(100, 'x'));
    const chunks = [...copyTextChunks([values, values.map(() => null)], 1000)];
    assert.ok(chunks.length > 50, `${chunks.length} pieces`);
    for (const chunk of chunks) {
      assert.ok(chunk.endsWith('\n'), 'a piece ends at a row boundary');
      assert.ok(chunk.length <= 1000, `a piece of ${chunk.length} characters`);
    }
    assert.equal(chunks.join(''), values.map((v) => `${v}\t\\N\n`).join(''));
    // A row longer than the chunk size is a piece of its own.
    const long = 'y'.repeat(100_000);
    assert.deepEqual([...copyTextChunks([['a', long, 'b']], 1000)], ['a\n', `${long}\n`, 'b\n']);
    // Lazy: the first piece comes before the encoder reaches the value it refuses.
    const refusing = copyTextChunks([[...values, 'bad\u0000']], 1000);
    assert.equal(refusing.next().done, false);
    assert.throws(() => [...refusing], /U\+0000/);
    assert.throws(() => [...copyTextChunks([['a'], ['b', 'c']])], /differ in length/);
  });
});

// ---------------------------------------------------------------------------------------------
// Postgres

describe('PostgresSink', () => {
  let pool: pg.Pool;
  let schema: string;
  let n = 0;
  const fresh = (opts: { bulkThreshold?: number; columns?: Record<string, PostgresColumnType> } = {}) =>
    new PostgresSink(pool, {
      schema,
      table: `t${n++}`,
      columns: opts.columns ?? COLUMNS,
      bulkThreshold: opts.bulkThreshold,
    });

  before(() => {
    pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 8 });
    // Killed sessions (one test terminates its own backend) surface here when idle.
    pool.on('error', () => undefined);
    schema = `test_sinks_${randomBytes(4).toString('hex')}`;
  });
  after(async () => {
    await pool.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`);
    await pool.end();
  });

  for (const [scenario, apply] of Object.entries(SCENARIOS)) {
    it(`${scenario} ends in the sequential state`, async () => {
      const sink = fresh();
      await sink.prepare();
      await apply(sink);
      assertSameState(await postgresState(pool, sink), expectedPostgres());
      await sink.drop();
    });
    // A batch holds at most a few hundred keys, under the default threshold: force the COPY path.
    it(`${scenario} through COPY and the staging table ends in the sequential state`, async () => {
      const sink = fresh({ bulkThreshold: 1 });
      await sink.prepare();
      await apply(sink);
      assertSameState(await postgresState(pool, sink), expectedPostgres());
      await sink.drop();
    });
  }

  it('prepare is idempotent, concurrent-safe, and refuses a table with other columns', async () => {
    const sink = fresh();
    await Promise.all([sink.prepare(), sink.prepare(), sink.prepare()]);
    await sink.prepare();
    const changed = new PostgresSink(pool, { schema, table: sink.table, columns: { name: 'integer' } });
    await assert.rejects(changed.prepare(), /already exists with other columns/);
    await sink.drop();
  });

  it('purges deleted rows older than the bound, in runs; newer ones keep guarding', async () => {
    const sink = fresh({ columns: { v: 'text' } });
    await sink.prepare();
    const storage = `${quoteIdent(schema)}.${quoteIdent(sink.storageTable)}`;
    const keys = Array.from({ length: 12_000 }, (_, i) => `k${i}`);
    await sink.write(keys.map((k, i) => remove(k, `${1000 + i}-0`)));
    await sink.write([
      upsert('live', '5-0', { v: 'a' }),
      remove('late', '50000-0'),
      upsert('k7', '60000-0', { v: 'back' }),
    ]);
    assert.equal(await sink.purgeTombstones('1000'), 0, 'a bound is exclusive');
    // 11,999 old tombstones (k7 came back), more than one statement's run.
    assert.equal(await sink.purgeTombstones('20000'), 11_999);
    const { rows } = await pool.query<{ _key: string; _deleted: boolean }>(
      `SELECT _key, _deleted FROM ${storage} ORDER BY _key COLLATE "C"`,
    );
    assert.deepEqual(rows, [
      { _key: 'k7', _deleted: false },
      { _key: 'late', _deleted: true },
      { _key: 'live', _deleted: false },
    ]);
    assert.deepEqual(await sink.write([upsert('late', '40000-0', { v: 'old' })]), { written: 0, skipped: 1 });
    const index = await pool.query<{ indexdef: string }>(
      'SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = $2 AND indexdef LIKE $3',
      [schema, sink.storageTable, '%WHERE _deleted%'],
    );
    assert.equal(index.rowCount, 1, 'a partial index serves the purge');
    await sink.drop();
  });

  it('keeps deleted rows out of the view and their guard in the storage table', async () => {
    const sink = fresh({ columns: { v: 'text' } });
    await sink.prepare();
    await sink.write([upsert('k', '10-0', { v: 'a' }), upsert('other', '1-0', { v: 'b' })]);
    assert.deepEqual(await sink.write([remove('k', '20-0')]), { written: 1, skipped: 0 });
    assert.deepEqual(await sink.write([upsert('k', '15-0', { v: 'old' })]), { written: 0, skipped: 1 });
    assert.deepEqual(await sink.write([remove('k', '20-0')]), { written: 0, skipped: 1 });
    const view = await pool.query<{ _key: string }>(
      `SELECT _key FROM ${quoteIdent(schema)}.${quoteIdent(sink.table)}`,
    );
    assert.deepEqual(
      view.rows.map((r) => r._key),
      ['other'],
    );
    const storage = await pool.query(
      `SELECT _key, v, _offset_ms::text AS ms, _deleted FROM ${quoteIdent(schema)}.${quoteIdent(storageTableName(sink.table))} WHERE _key = 'k'`,
    );
    assert.deepEqual(storage.rows, [{ _key: 'k', v: null, ms: '20', _deleted: true }]);
    // A later upsert brings the key back; the same offset in a later-named stream beats the delete.
    await sink.write([upsert('k', '20-0', { v: 'back' }, 'orders.eu')]);
    const back = await pool.query(
      `SELECT v, _offset, _stream FROM ${quoteIdent(schema)}.${quoteIdent(sink.table)} WHERE _key = 'k'`,
    );
    assert.deepEqual(back.rows, [{ v: 'back', _offset: '20-0', _stream: 'orders.eu' }]);
    await sink.drop();
  });

  it('compares offsets as numbers, not as "ms-seq" strings', async () => {
    const sink = fresh({ columns: { v: 'text' } });
    await sink.prepare();
    await sink.write([upsert('k', '18446744073709551615-10', { v: 'newest' })]);
    await sink.write([
      upsert('k', '18446744073709551615-9', { v: 'older seq' }),
      upsert('j', '10-0', { v: 'ten' }),
    ]);
    await sink.write([upsert('k', '9-0', { v: 'nine' }), upsert('j', '9-0', { v: 'nine' })]);
    const { rows } = await pool.query(
      `SELECT _key, v FROM ${quoteIdent(schema)}.${quoteIdent(sink.table)} ORDER BY _key`,
    );
    assert.deepEqual(rows, [
      { _key: 'j', v: 'ten' },
      { _key: 'k', v: 'newest' },
    ]);
    await sink.drop();
  });

  for (const [path, size, bulkThreshold] of [
    ['single statement', 20, 500],
    ['staging table', 600, 500],
  ] as const) {
    it(`${path}: a failing batch leaves neither rows nor checkpoint`, async () => {
      const sink = fresh({ bulkThreshold });
      await sink.prepare();
      await sink.write([upsert('before', '1-0', { qty: 1 })], { name: 'seed', position: { orders: '1-0' } });
      // A constraint only the database knows about, violated by one record of the batch.
      await pool.query(
        `ALTER TABLE ${quoteIdent(schema)}.${quoteIdent(storageTableName(sink.table))} ADD CONSTRAINT no_minus_one CHECK (qty IS NULL OR qty <> -1)`,
      );
      const batch = Array.from({ length: size }, (_, i) =>
        upsert(`k${i}`, `2-${i}`, { qty: i === size - 3 ? -1 : i }),
      );
      await assert.rejects(
        sink.write(batch, { name: 'seed', position: { orders: `2-${size - 1}` } }),
        /no_minus_one/,
      );
      const { rows } = await pool.query(
        `SELECT count(*)::int AS n FROM ${quoteIdent(schema)}.${quoteIdent(sink.table)}`,
      );
      assert.equal(rows[0].n, 1);
      assert.deepEqual(await sink.readCheckpoint('seed'), { orders: '1-0' });
      await sink.drop();
    });
  }

  it('a connection killed before the commit leaves neither rows nor checkpoint', async () => {
    const sink = fresh({ columns: { v: 'integer' } });
    await sink.prepare();
    await sink.write([], { name: 'seed', position: { orders: '1-0' } });
    // The session kills itself when it writes the checkpoint, i.e. after the rows, before commit.
    const s = quoteIdent(schema);
    await pool.query(`CREATE FUNCTION ${s}.die() RETURNS trigger LANGUAGE plpgsql AS
      $$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NEW; END $$`);
    await pool.query(
      `CREATE TRIGGER die BEFORE UPDATE ON ${s}._offtake_checkpoints FOR EACH ROW EXECUTE FUNCTION ${s}.die()`,
    );
    for (const size of [5, 700]) {
      const batch = Array.from({ length: size }, (_, i) => upsert(`k${i}`, `2-${i}`, { v: i }));
      await assert.rejects(sink.write(batch, { name: 'seed', position: { orders: '2-0' } }), /terminat/);
      const { rows } = await pool.query(`SELECT count(*)::int AS n FROM ${s}.${quoteIdent(sink.table)}`);
      assert.equal(rows[0].n, 0);
      assert.deepEqual(await sink.readCheckpoint('seed'), { orders: '1-0' });
    }
    await pool.query(`DROP TRIGGER die ON ${s}._offtake_checkpoints`);
    await sink.write([upsert('k0', '2-0', { v: 0 })], { name: 'seed', position: { orders: '2-0' } });
    assert.deepEqual(await sink.readCheckpoint('seed'), { orders: '2-0' });
    await sink.drop();
  });

  it('maps values onto column types and reads them back exactly', async () => {
    const columns: Record<string, PostgresColumnType> = {
      t: 'text',
      i: 'integer',
      b: 'bigint',
      n: 'numeric',
      d: 'double precision',
      f: 'boolean',
      ts: 'timestamptz',
      day: 'date',
      j: 'jsonb',
    };
    const sink = fresh({ columns });
    await sink.prepare();
    const rows: Record<string, unknown>[] = [
      {
        t: 12.5,
        i: 2147483647,
        b: -9223372036854775808n,
        n: 1e21,
        d: 5e-324,
        f: 'true',
        ts: '2024-06-30T23:59:60Z',
        day: '2024-02-29',
        j: { big: 12345678901234567890n, s: 'ü' },
      },
      {
        t: true,
        i: '-2147483648',
        b: '9223372036854775807',
        n: '-0.000150',
        d: '1e-7',
        f: false,
        ts: '0001-01-01T00:00:00+15:59',
        day: new Date('2024-03-01T23:00:00Z'),
        j: [1, 'two', null],
      },
      {
        t: 'plain',
        i: 7n,
        b: 2 ** 60,
        n: 12345678901234567890n,
        d: 12345678901234567890n,
        f: true,
        ts: new Date('2024-01-01T00:00:00.123Z'),
        day: '9999-12-31',
        j: 'just a string',
      },
    ];
    await sink.write(rows.map((fields, i) => upsert(`r${i}`, `${i + 1}-0`, fields)));
    const { rows: back } = await pool.query(
      `SELECT _key, t, i, b::text AS b, n::text AS n, d, f, to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS BC') AS ts,
              day::text AS day, j::text AS j
         FROM ${quoteIdent(schema)}.${quoteIdent(sink.table)} ORDER BY _key`,
    );
    assert.deepEqual(back, [
      {
        _key: 'r0',
        t: '12.5',
        i: 2147483647,
        b: '-9223372036854775808',
        n: '1000000000000000000000',
        d: 5e-324,
        f: true,
        ts: '2024-07-01T00:00:00.000 AD',
        day: '2024-02-29',
        j: '{"s": "ü", "big": 12345678901234567890}',
      },
      {
        _key: 'r1',
        t: 'true',
        i: -2147483648,
        b: '9223372036854775807',
        n: '-0.000150',
        d: 1e-7,
        f: false,
        ts: '0001-12-31T08:01:00.000 BC',
        day: '2024-03-01',
        j: '[1, "two", null]',
      },
      {
        _key: 'r2',
        t: 'plain',
        i: 7,
        b: '1152921504606846976',
        n: '12345678901234567890',
        d: 12345678901234567000,
        f: true,
        ts: '2024-01-01T00:00:00.123 AD',
        day: '9999-12-31',
        j: '"just a string"',
      },
    ]);
    await sink.drop();
  });

  it('reports values that do not fit their column per record, before any SQL', async () => {
    const bad: [PostgresColumnType, unknown, RegExp][] = [
      ['integer', 'twelve', /not a whole number/],
      ['integer', 1.5, /not a whole number/],
      ['integer', 2147483648, /outside the range/],
      ['bigint', '9223372036854775808', /outside the range/],
      ['bigint', true, /whole numbers/],
      ['numeric', 'NaN', /not a number/],
      ['numeric', '1e99999', /not a number/],
      ['numeric', { a: 1 }, /numeric column takes numbers/],
      ['double precision', '1e400', /outside the range/],
      ['boolean', 1, /true or false/],
      ['boolean', 'yes', /true or false/],
      ['timestamptz', 1718000000000, /RFC 3339/],
      ['timestamptz', '2024-02-30T00:00:00Z', /not an RFC 3339/],
      ['timestamptz', '0000-01-01T00:00:00Z', /not an RFC 3339/],
      ['timestamptz', '2024-01-01T00:00:00+16:00', /not an RFC 3339/],
      ['timestamptz', '2024-01-01', /not an RFC 3339/],
      ['date', '2023-02-29', /YYYY-MM-DD/],
      ['date', '2024-01-01T00:00:00Z', /YYYY-MM-DD/],
      ['text', { a: 1 }, /use jsonb/],
      ['text', [1], /use jsonb/],
    ];
    for (const [type, value, message] of bad) {
      const converted = toColumnValue(type, value);
      assert.ok(isMismatch(converted), `${type} ${JSON.stringify(String(value))} should not fit`);
      assert.match(converted.mismatch, message, `${type} ${String(value)}`);
    }
    assert.equal(toColumnValue('integer', '-42'), -42);
    assert.equal(toColumnValue('bigint', '9007199254740993'), '9007199254740993');
    assert.equal(toColumnValue('jsonb', null), null);

    const sink = fresh({ columns: { qty: 'integer', note: 'text', doc: 'jsonb' } });
    await sink.prepare();
    assert.match(
      sink.validateRecord(upsert('k', '1-0', { qty: 'twelve' }))!,
      /field "qty" is text that is not a whole number/,
    );
    assert.match(sink.validateRecord(upsert('k', '1-0', { nope: 1 }))!, /"nope" has no column/);
    assert.match(sink.validateRecord(upsert('k', '1-0', { note: 'a\u0000b' }))!, /U\+0000/);
    assert.match(sink.validateRecord(upsert('k', '1-0', { doc: { deep: ['\u0000'] } }))!, /U\+0000/);
    assert.match(sink.validateRecord(upsert('a\u0000b', '1-0', {}))!, /key contains the character U\+0000/);
    assert.match(sink.validateRecord(upsert('k', '1-0', { doc: { s: '\udc00' } }))!, /unpaired/);
    assert.equal(sink.validateRecord(remove('k', '1-0')), undefined);
    assert.equal(sink.validateRecord(upsert('k', '1-0', { qty: '12', note: null })), undefined);

    const err = await sink
      .write(
        [upsert('a', '1-0', { qty: 1 }), upsert('b', '1-1', { qty: 2 }), upsert('c', '1-2', { qty: 'x' })],
        {
          name: 'seed',
          position: { orders: '1-2' },
        },
      )
      .catch((e: unknown) => e);
    assert.ok(err instanceof SinkRecordError);
    assert.equal(err.index, 2);
    assert.doesNotMatch(err.message, /"x"/, 'the value itself is not quoted');
    const { rows } = await pool.query(
      `SELECT count(*)::int AS n FROM ${quoteIdent(schema)}.${quoteIdent(sink.table)}`,
    );
    assert.equal(rows[0].n, 0);
    assert.equal(await sink.readCheckpoint('seed'), null);
    await sink.drop();
  });

  it('rejects identifiers that could inject SQL, and quotes the ones it takes', () => {
    const make = (
      opts: Partial<{
        schema: string;
        table: string;
        columns: Record<string, string>;
        checkpointTable: string;
      }>,
    ) =>
      new PostgresSink(pool, {
        schema: 'ok_schema',
        table: 'ok_table',
        columns: { a: 'text' },
        ...opts,
      } as ConstructorParameters<typeof PostgresSink>[1]);
    assert.throws(() => make({ schema: 'public; DROP TABLE x; --' }), /schema/);
    assert.throws(() => make({ schema: 'a"b' }), /schema/);
    assert.throws(() => make({ table: "Robert'); DROP TABLE students;--" }), /table/);
    assert.throws(() => make({ table: 'Upper' }), /table/);
    assert.throws(() => make({ table: 'pg_catalog' }), /pg_/);
    assert.throws(() => make({ table: 'select' }), /reserved word/);
    assert.throws(() => make({ table: 'x'.repeat(64) }), /at most 63/);
    assert.throws(() => make({ table: '_offtake_rows' }), /may not start/);
    assert.throws(() => make({ columns: { 'a b': 'text' } }), /column/);
    assert.throws(() => make({ columns: { 'a"); drop table x; --': 'text' } }), /column/);
    assert.throws(() => make({ columns: { _key: 'text' } }), /reserved/);
    assert.throws(() => make({ columns: { a: 'text); DROP TABLE x; --' } }), /unknown type/);
    assert.throws(() => make({ columns: {} }), /at least one column/);
    assert.throws(() => make({ checkpointTable: 'cp;' }), /checkpoint table/);
    assert.equal(quoteIdent('a"b'), '"a""b"');
    assert.throws(() => quoteIdent('a\u0000'));
    assert.equal(storageTableName('orders'), '_offtake_orders');
    assert.equal(storageTableName('x'.repeat(63)).length, 63);
    assert.notEqual(storageTableName(`${'x'.repeat(62)}a`), storageTableName(`${'x'.repeat(62)}b`));
  });

  it('drop removes view, storage and its checkpoints, and nothing of its neighbours', async () => {
    const sink = fresh({ columns: { v: 'text' } });
    const neighbour = fresh({ columns: { v: 'text' } });
    await sink.prepare();
    await neighbour.prepare();
    await sink.write([upsert('a', '1-0', { v: 'x' })], { name: 'seed', position: { orders: '1-0' } });
    await neighbour.write([upsert('a', '1-0', { v: 'y' })], { name: 'seed', position: { orders: '1-0' } });
    await sink.drop();
    const { rows } = await pool.query(
      `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relname IN ($2, $3)`,
      [schema, sink.table, storageTableName(sink.table)],
    );
    assert.deepEqual(rows, []);
    assert.equal(await sink.readCheckpoint('seed'), null);
    assert.deepEqual(await neighbour.readCheckpoint('seed'), { orders: '1-0' });
    await neighbour.drop();
    assert.equal(
      (await pool.query('SELECT to_regclass($1) AS t', [`${schema}._offtake_checkpoints`])).rows[0].t,
      null,
    );
  });

  it('COPY carries hostile values byte for byte: the same rows as the single-statement path', async () => {
    const columns: Record<string, PostgresColumnType> = {
      t: 'text',
      i: 'integer',
      b: 'bigint',
      n: 'numeric',
      d: 'double precision',
      f: 'boolean',
      ts: 'timestamptz',
      day: 'date',
      j: 'jsonb',
    };
    const numerics = [
      '-0.000150',
      1e21,
      '+5',
      '.5',
      '123456789012345678901234567890.123456789',
      12345678901234567890n,
    ];
    const doubles = [
      5e-324,
      1.7976931348623157e308,
      -2.2250738585072014e-308,
      0.1 + 0.2,
      -0,
      123456789.12345679,
    ];
    const stamps = [
      '2024-06-30T23:59:60Z',
      '0001-01-01T00:00:00+15:59',
      '9999-12-31T23:59:59.999999Z',
      '2024-01-01 12:00:00-03:30',
      new Date(1_718_000_000_123),
    ];
    const records: SinkRecord[] = HOSTILE_STRINGS.map((s, i) => {
      const key = s.length > 0 && Buffer.byteLength(s) <= 1024 ? s : `long or empty ${i}`;
      return upsert(key, `${i + 1}-0`, {
        t: s,
        i: i % 2 === 0 ? -2147483648 : String(i),
        b: i % 2 === 0 ? -9223372036854775808n : '9223372036854775807',
        n: numerics[i % numerics.length],
        d: doubles[i % doubles.length],
        f: i % 2 === 0 ? 'true' : false,
        ts: stamps[i % stamps.length],
        day: i % 2 === 0 ? '2024-02-29' : new Date('0500-03-01T00:00:00Z'),
        j:
          i % 4 === 3
            ? s
            : { [s.slice(0, 40)]: [s, null, { '\\N': '\\N', '': i }], n: 12345678901234567890n, z: 'ü' },
      });
    });
    records.push(upsert('all null', '100-0', {}), remove('deleted \\N\t', '101-0'));
    const viaCopy = fresh({ columns, bulkThreshold: 1 });
    const viaArrays = fresh({ columns, bulkThreshold: 10_000 });
    for (const sink of [viaCopy, viaArrays]) {
      await sink.prepare();
      assert.deepEqual(await sink.write(records), { written: records.length, skipped: 0 });
    }
    const read = async (sink: PostgresSink) =>
      (
        await pool.query<{ _key: string; t: string | null; j: string | null; row: string }>(
          `SELECT _key, t, j::text AS j, row_to_json(s)::text AS row
             FROM ${quoteIdent(schema)}.${quoteIdent(storageTableName(sink.table))} s ORDER BY _key COLLATE "C"`,
        )
      ).rows;
    const copied = await read(viaCopy);
    assert.deepEqual(copied, await read(viaArrays), 'both paths store the same rows');
    const byKey = new Map(copied.map((r) => [r._key, r]));
    assert.equal(byKey.size, records.length);
    HOSTILE_STRINGS.forEach((s, i) => {
      const row = byKey.get(records[i].key)!;
      assert.equal(row.t, s, `text ${i} reads back identical`);
      const j = records[i].fields!.j;
      assert.deepEqual(
        JSON.parse(row.j!),
        typeof j === 'string'
          ? j
          : JSON.parse(JSON.stringify(j, (_, v: unknown) => (typeof v === 'bigint' ? Number(v) : v))),
        `jsonb ${i} reads back identical`,
      );
    });
    assert.equal(byKey.get('all null')!.t, null);
    assert.match(byKey.get('deleted \\N\t')!.row, /"_deleted":true/);
    await viaCopy.drop();
    await viaArrays.drop();
  });

  it('a failure in the middle of the COPY leaves neither rows nor checkpoint', async () => {
    const sink = fresh({ columns: { v: 'text', n: 'integer' }, bulkThreshold: 500 });
    await sink.prepare();
    await sink.write([upsert('before', '1-0', { v: 'kept', n: 1 })], {
      name: 'seed',
      position: { orders: '1-0' },
    });
    // The staging table is made LIKE the storage table, NOT NULL included: the server refuses
    // row 51 of the COPY while the rest of the batch is still on its way.
    const storage = `${quoteIdent(schema)}.${quoteIdent(storageTableName(sink.table))}`;
    await pool.query(`ALTER TABLE ${storage} ALTER COLUMN n SET NOT NULL`);
    const size = 30_000;
    const batch = Array.from({ length: size }, (_, i) =>
      upsert(`k${i}`, `2-${i}`, {
        v: `row ${i} with\ttab and \\ backslash`.padEnd(100, '.'),
        n: i === 50 ? null : i,
      }),
    );
    const err = await sink
      .write(batch, { name: 'seed', position: { orders: `2-${size - 1}` } })
      .catch((e: unknown) => e);
    assert.ok(err instanceof Error);
    assert.match(err.message, /null value in column "n"/);
    assert.match((err as { where?: string }).where ?? '', /^COPY _offtake_stage_\w+, line 51\b/);
    const count = async () =>
      (await pool.query(`SELECT count(*)::int AS n FROM ${quoteIdent(schema)}.${quoteIdent(sink.table)}`))
        .rows[0].n as number;
    assert.equal(await count(), 1);
    assert.deepEqual(await sink.readCheckpoint('seed'), { orders: '1-0' });
    // The connections are fine and nothing lingers in a staging table: the fixed batch goes in.
    await pool.query(`ALTER TABLE ${storage} ALTER COLUMN n DROP NOT NULL`);
    await Promise.all([sink.write(batch.slice(0, 600)), sink.write(batch.slice(600, 1200))]);
    await sink.write(batch, { name: 'seed', position: { orders: `2-${size - 1}` } });
    assert.equal(await count(), size + 1);
    assert.deepEqual(await sink.readCheckpoint('seed'), { orders: `2-${size - 1}` });
    await sink.drop();
  });

  it('copyIn stops soon after the server refuses a row, and aborts the COPY when its source fails', async () => {
    const client = await pool.connect();
    const table = `${quoteIdent(schema)}.copy_in_${n++}`;
    try {
      await client.query(`CREATE SCHEMA IF NOT EXISTS ${quoteIdent(schema)}`);
      await client.query(`CREATE TABLE ${table} (a text NOT NULL, b integer)`);
      const sql = `COPY ${table} (a, b) FROM STDIN`;
      const rows = async () =>
        (await client.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n as number;

      // The server refuses the first row of about 100 MB. The writer yields to the event loop
      // as it goes, so it notices long before it has sent everything.
      const chunk = `${'x'.repeat(99)}\t1\n`.repeat(640);
      const pieces = 1600;
      let taken = 0;
      const refused = function* () {
        yield '\\N\t0\n';
        for (taken = 0; taken < pieces; taken++) yield chunk;
      };
      await client.query('BEGIN');
      await assert.rejects(copyIn(client, sql, refused()), /null value in column "a"/);
      await client.query('ROLLBACK');
      assert.ok(taken < pieces, `stopped after ${taken} of ${pieces} pieces`);

      // A source that fails mid-stream, at once, or on a value the encoder refuses: CopyFail.
      const failing: [string, Iterable<string>, RegExp][] = [
        [
          'mid-stream',
          (function* () {
            for (let i = 0; i < 50; i++) yield chunk;
            throw new Error('the source broke');
          })(),
          /the source broke/,
        ],
        [
          'at once',
          {
            [Symbol.iterator]: () => ({
              next: (): IteratorResult<string> => {
                throw new Error('nothing to read');
              },
            }),
          },
          /nothing to read/,
        ],
        [
          'encoder',
          copyTextChunks([
            Array.from({ length: 50_000 }, (_, i) => (i === 49_999 ? 'a\u0000b' : `value ${i}`)),
            Array.from({ length: 50_000 }, (_, i) => i),
          ]),
          /U\+0000/,
        ],
      ];
      for (const [what, source, message] of failing) {
        await client.query('BEGIN');
        await assert.rejects(copyIn(client, sql, source), message, what);
        await client.query('ROLLBACK');
        assert.equal(await rows(), 0, what);
      }

      // And the same connection copies fine afterwards.
      await client.query('BEGIN');
      assert.equal(
        await copyIn(
          client,
          sql,
          copyTextChunks([
            ['a', '\\N', 'c\td'],
            [1, null, 3],
          ]),
        ),
        3,
      );
      await client.query('COMMIT');
      const { rows: back } = await client.query(`SELECT a, b FROM ${table} ORDER BY a COLLATE "C"`);
      assert.deepEqual(back, [
        { a: '\\N', b: null },
        { a: 'a', b: 1 },
        { a: 'c\td', b: 3 },
      ]);
    } finally {
      // A failed assertion can leave a transaction open: close it, so the schema can be dropped.
      const cleanup = await client
        .query('ROLLBACK')
        .then(() => client.query(`DROP TABLE IF EXISTS ${table}`))
        .then(
          () => undefined,
          (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
        );
      client.release(cleanup);
    }
  });

  it('the naive one-by-one writer reaches the same state', async () => {
    const sink = fresh();
    await sink.prepare();
    const slice = DATA.slice(0, 400);
    await writeOneByOne(sink, [...slice].reverse(), { name: 'seed', position: checkpointOf(slice) });
    const expected = expectedState(slice);
    const state = await postgresState(pool, sink);
    assert.deepEqual(new Set(state.keys()), new Set(expected.keys()));
    for (const [key, r] of expected) assert.equal(state.get(key)!._offset, r.offset);
    assert.deepEqual(await sink.readCheckpoint('seed'), checkpointOf(slice));
    await sink.drop();
  });
});

// ---------------------------------------------------------------------------------------------
// Topic

describe('TopicSink', () => {
  let redis: Redis;
  let prefix: string;
  let log: RedisEventLog;
  let n = 0;
  const fresh = () =>
    new TopicSink(log, redis, {
      stream: `derived-${n}`,
      product: 'checkout/eu-big-orders',
      checkpointKey: `${prefix}:cp:${n++}`,
    });

  before(async () => {
    redis = testRedis();
    prefix = uniquePrefix('sinks-topic');
    log = await RedisEventLog.create({ redis, prefix: `${prefix}:log`, durability: { mode: 'none' } });
  });
  after(async () => {
    await log.close();
    await dropPrefix(redis, prefix);
    await redis.quit();
  });

  for (const [scenario, apply] of Object.entries(SCENARIOS)) {
    it(`${scenario}: every source event exactly once, and the guard rule gives the sequential state`, async () => {
      const sink = fresh();
      await sink.prepare();
      await apply(sink);
      const events = await topicEvents(log, sink.stream);
      const ids = events.map((e) => e.id);
      assert.equal(new Set(ids).size, ids.length, 'no duplicates');
      assert.deepEqual(new Set(ids), new Set(DATA.map((r) => `${r.stream}/${r.offset}`)));
      assert.ok(events.every((e) => e.source === 'offtake://checkout/eu-big-orders'));
      assertSameState(topicState(events), expectedTopic());
      await sink.drop();
    });
  }

  it('points each event back at its source and appends before the checkpoint', async () => {
    const sink = fresh();
    const result = await sink.write(
      [upsert('k', '5-1', { v: 1n, at: new Date(0) }), remove('k', '6-0', 'orders.eu')],
      {
        name: 'seed',
        position: { orders: '5-1', 'orders.eu': '6-0' },
      },
    );
    assert.deepEqual(result, { written: 2, skipped: 0 });
    const [a, b] = await topicEvents(log, sink.stream);
    assert.deepEqual(
      {
        id: a.id,
        type: a.type,
        subject: a.subject,
        data: a.data,
        sourcestream: a.sourcestream,
        sourceoffset: a.sourceoffset,
      },
      {
        id: 'orders/5-1',
        type: 'upsert',
        subject: 'k',
        data: { v: 1, at: '1970-01-01T00:00:00.000Z' },
        sourcestream: 'orders',
        sourceoffset: '5-1',
      },
    );
    assert.equal(b.type, 'delete');
    assert.equal(b.data, undefined);
    assert.deepEqual(await sink.readCheckpoint('seed'), { orders: '5-1', 'orders.eu': '6-0' });
    // A replay is absorbed by the log's dedup.
    assert.deepEqual(await sink.write([upsert('k', '5-1', { v: 1 })]), { written: 0, skipped: 1 });

    // When the append fails, the checkpoint does not move.
    const err = await sink
      .write([upsert('k', '7-0', { v: 2 }), upsert('big', '8-0', { blob: 'x'.repeat(300_000) })], {
        name: 'seed',
        position: { orders: '8-0' },
      })
      .catch((e: unknown) => e);
    assert.ok(err instanceof SinkRecordError);
    assert.equal(err.index, 1);
    assert.match(err.reason, /bytes; the log takes at most/);
    assert.deepEqual(await sink.readCheckpoint('seed'), { orders: '5-1', 'orders.eu': '6-0' });
    assert.equal((await topicEvents(log, sink.stream)).length, 2);
    await sink.drop();
    assert.equal(await redis.exists(sink.checkpointKey), 0);
  });

  it('rejects bad names and types', () => {
    assert.throws(
      () => new TopicSink(log, redis, { stream: 'a:b', product: 'p', checkpointKey: 'k' }),
      /stream name/,
    );
    assert.throws(
      () => new TopicSink(log, redis, { stream: 'ok', product: 'p q', checkpointKey: 'k' }),
      /product/,
    );
    assert.throws(
      () =>
        new TopicSink(log, redis, { stream: 'ok', product: 'p', checkpointKey: 'k', upsertType: 'bad type' }),
      /CloudEvents type/,
    );
  });
});
