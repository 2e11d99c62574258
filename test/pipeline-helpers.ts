/**
 * Shared helpers of the pipeline tests and the pipeline worker fixture: the test products (one
 * per target type), the sink factory that builds their real sinks, a generated event log with
 * repeated keys, cancellations, tombstones and poison events, the state the spec must produce
 * computed independently (plain TypeScript, no CEL), and readers of each target's actual state.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { DataProductSpec } from '../crds/generated/types.ts';
import { compareOffsets, type EventInput, type EventLog, type LogEvent } from '../lib/eventlog/event-log.ts';
import { pipelineId, type ProductRef } from '../worker/pipeline-keys.ts';
import type { PipelineProduct } from '../worker/pipeline-state-store.ts';
import type { SinkFactory } from '../worker/pipeline-worker.ts';
import { PostgresSink } from '../worker/sinks/postgres-sink.ts';
import { RedisSink } from '../worker/sinks/redis-sink.ts';
import type { Checkpoint, Sink, SinkRecord, SinkWriteResult } from '../worker/sinks/sink.ts';
import { TopicSink } from '../worker/sinks/topic-sink.ts';

/** The test Postgres. */
export const POSTGRES_URL =
  process.env.OFFTAKE_TEST_POSTGRES_URL ?? 'postgres://postgres:postgres@127.0.0.1:5432/postgres';

/** The source streams of the test products. */
export const STREAMS = ['orders', 'orders.returns'] as const;

/** The event types the products keep; `Heartbeat` events are in the log but not in the list. */
export const TYPES = ['OrderPlaced', 'OrderUpdated', 'OrderCancelled', 'OrderDeleted'];

/** The test spec for a target type: EU orders keyed by order id, deleted by OrderDeleted. */
export function testSpec(
  type: 'redis' | 'postgres' | 'topic',
  streams: readonly string[] = STREAMS,
  table = 'eu_orders',
): DataProductSpec {
  const target: DataProductSpec['target'] =
    type === 'postgres'
      ? {
          type,
          postgres: { table, columns: { customer: 'text', amount: 'numeric', status: 'text' } },
        }
      : type === 'redis'
        ? { type, redis: { format: 'hash' } }
        : { type };
  return {
    source: { streams: [...streams], types: TYPES, startFrom: 'earliest' },
    filter: "event.data.region == 'EU'",
    transform: {
      key: 'event.data.orderId',
      fields: {
        customer: 'event.data.customerId',
        amount: 'event.data.amount',
        status: "event.type == 'OrderCancelled' ? 'cancelled' : 'open'",
      },
      tombstone: "event.type == 'OrderDeleted'",
    },
    target,
  };
}

/** A product of the test spec (a postgres product's table is named after it). */
export function testProduct(
  namespace: string,
  name: string,
  type: 'redis' | 'postgres' | 'topic',
  streams: readonly string[] = STREAMS,
): PipelineProduct {
  return { namespace, name, spec: testSpec(type, streams, `t_${name.replaceAll('-', '_')}`) };
}

/** A small seeded PRNG (mulberry32), so a failing run can be repeated. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Generates order events: `orders` orders, each with a fixed region and customer, placed,
 * updated, cancelled, deleted (a tombstone) and placed again in random order; 3 % heartbeats
 * (a type the products do not keep) and `poisonRate` updates without an amount (the transform
 * fails on them: dead letters).
 */
export class OrderEvents {
  private readonly random: () => number;
  private readonly orders: number;
  private readonly poisonRate: number;
  private readonly idPrefix: string;
  private n = 0;

  constructor(options: { seed: number; orders: number; poisonRate?: number; idPrefix?: string }) {
    this.random = prng(options.seed);
    this.orders = options.orders;
    this.poisonRate = options.poisonRate ?? 0.001;
    this.idPrefix = options.idPrefix ?? 'e';
  }

  /** The next event. */
  next(): EventInput {
    const i = this.n++;
    const r = this.random();
    const order = Math.floor(this.random() * this.orders);
    const amount = Math.round(this.random() * 100_000) / 100;
    const region = order % 3 === 0 ? 'US' : 'EU';
    const base = { id: `${this.idPrefix}-${i}`, source: 'urn:test:orders', subject: `o-${order}` };
    if (r < 0.03) return { ...base, type: 'Heartbeat', data: { region: 'EU' } };
    const type =
      r < 0.4 ? 'OrderPlaced' : r < 0.72 ? 'OrderUpdated' : r < 0.88 ? 'OrderCancelled' : 'OrderDeleted';
    const data: Record<string, unknown> = { orderId: `o-${order}`, customerId: `c-${order % 997}`, region };
    if (!(type === 'OrderUpdated' && this.random() < this.poisonRate / 0.32)) data.amount = amount;
    return { ...base, type, data };
  }

  /** The next `n` events. */
  take(n: number): EventInput[] {
    return Array.from({ length: n }, () => this.next());
  }
}

/** Appends `count` generated events across `streams` (90 % to the first), in batches; returns how many went where. */
export async function appendEvents(
  log: EventLog,
  events: OrderEvents,
  count: number,
  streams: readonly string[] = STREAMS,
  batch = 1000,
): Promise<void> {
  for (let done = 0; done < count; done += batch) {
    const n = Math.min(batch, count - done);
    const main: EventInput[] = [];
    const other: EventInput[] = [];
    for (const event of events.take(n)) {
      (streams.length > 1 && Number(event.id.split('-').pop()) % 10 === 9 ? other : main).push(event);
    }
    if (main.length > 0) await log.append(streams[0], main);
    if (other.length > 0) await log.append(streams[1], other);
  }
}

/** A record as the tests compare them. */
export interface Row {
  customer: string;
  amount: number;
  status: string;
}

/** What the spec must produce from a log: the rows by key, and the events that are dead letters. */
export interface Expected {
  rows: Map<string, Row>;
  dead: Set<string>;
}

/** Every event of `streams`, each with its stream, in the sinks' order (offset, then stream name). */
export async function readAll(
  log: EventLog,
  streams: readonly string[],
): Promise<{ stream: string; event: LogEvent }[]> {
  const all: { stream: string; event: LogEvent }[] = [];
  for (const stream of streams) {
    for await (const batch of log.scan(stream, { batchSize: 5000 })) {
      for (const event of batch) all.push({ stream, event });
    }
  }
  all.sort(
    (a, b) =>
      compareOffsets(a.event.offset, b.event.offset) ||
      (a.stream < b.stream ? -1 : a.stream > b.stream ? 1 : 0),
  );
  return all;
}

/** The events of the products' types: what the seed and the tail read. */
export function kept<T extends { event: LogEvent }>(events: readonly T[]): T[] {
  return events.filter(({ event }) => TYPES.includes(event.type));
}

/**
 * Per stream, the offset the tail's checkpoint reaches once everything is applied: the last
 * event of the products' types (the tail follows only those).
 */
export function finalPositions(
  events: readonly { stream: string; event: LogEvent }[],
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const { stream, event } of kept(events)) {
    if (out[stream] === undefined || compareOffsets(event.offset, out[stream]) > 0)
      out[stream] = event.offset;
  }
  return out;
}

/** The state the test spec must produce, computed without CEL. */
export function expectedState(events: readonly { stream: string; event: LogEvent }[]): Expected {
  const rows = new Map<string, Row>();
  const dead = new Set<string>();
  for (const { stream, event } of events) {
    if (!TYPES.includes(event.type)) continue;
    const data = event.data as Record<string, unknown>;
    if (data.region !== 'EU') continue;
    const key = data.orderId as string;
    if (event.type === 'OrderDeleted') {
      rows.delete(key);
      continue;
    }
    if (data.amount === undefined) {
      dead.add(`${stream}/${event.offset}`);
      continue;
    }
    rows.set(key, {
      customer: data.customerId as string,
      amount: data.amount as number,
      status: event.type === 'OrderCancelled' ? 'cancelled' : 'open',
    });
  }
  return { rows, dead };
}

/** Where each test product's target lives. */
export interface TargetLayout {
  /** Key prefix of the test (Redis). */
  prefix: string;
  /** Postgres schema of the test. */
  schema: string;
}

/** The Redis key prefix of a product's records. */
export function redisRecordPrefix(layout: TargetLayout, ref: ProductRef): string {
  return `${layout.prefix}:data:${pipelineId(ref)}:`;
}

/** The topic stream of a product. */
export function topicStream(ref: ProductRef): string {
  return `${pipelineId(ref)}.topic`;
}

/** Options of {@link testSinkFactory}. */
export interface TestSinkOptions {
  layout: TargetLayout;
  redis: Redis;
  pool: pg.Pool;
  eventLog: EventLog;
  /** Sleep this long before each write (makes the seed slow enough to kill a worker inside it). */
  writeDelayMs?: number;
  /** Deliver every batch twice. */
  twice?: boolean;
  /** Called with every batch before it is written. */
  onWrite?: (product: PipelineProduct, records: readonly SinkRecord[]) => void;
}

/** A sink that delivers every batch twice and/or slowly: the at-least-once delivery a pipeline must absorb. */
export class TestDeliverySink implements Sink {
  private readonly inner: Sink & { validateRecord?(record: SinkRecord): string | undefined };
  private readonly delayMs: number;
  private readonly twice: boolean;

  private readonly onWrite: ((records: readonly SinkRecord[]) => void) | undefined;

  constructor(
    inner: Sink,
    options: { delayMs?: number; twice?: boolean; onWrite?: (records: readonly SinkRecord[]) => void },
  ) {
    this.onWrite = options.onWrite;
    this.inner = inner;
    this.delayMs = options.delayMs ?? 0;
    this.twice = options.twice ?? false;
  }

  validateRecord(record: SinkRecord): string | undefined {
    return this.inner.validateRecord?.(record);
  }

  prepare(): Promise<void> {
    return this.inner.prepare();
  }

  async write(
    records: readonly SinkRecord[],
    checkpoint?: { name: string; position: Checkpoint },
  ): Promise<SinkWriteResult> {
    this.onWrite?.(records);
    if (this.delayMs > 0) await delay(this.delayMs);
    const first = await this.inner.write(records, checkpoint);
    if (!this.twice) return first;
    await this.inner.write(records, checkpoint);
    return first;
  }

  purgeTombstones(beforeMs: string): Promise<number> {
    return this.inner.purgeTombstones?.(beforeMs) ?? Promise.resolve(0);
  }

  readCheckpoint(name: string): Promise<Checkpoint | null> {
    return this.inner.readCheckpoint(name);
  }

  drop(): Promise<void> {
    return this.inner.drop();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/** The real sink of a test product's target. */
export function targetSink(options: TestSinkOptions, product: PipelineProduct): Sink {
  const { layout, redis, pool, eventLog } = options;
  const target = product.spec.target;
  if (target.type === 'redis') {
    return new RedisSink(redis, {
      keyPrefix: redisRecordPrefix(layout, product),
      format: target.redis?.format ?? 'hash',
    });
  }
  if (target.type === 'postgres') {
    return new PostgresSink(pool, {
      schema: layout.schema,
      table: target.postgres!.table,
      columns: target.postgres!.columns,
    });
  }
  return new TopicSink(eventLog, redis, {
    stream: topicStream(product),
    product: `${product.namespace}/${product.name}`,
    checkpointKey: `${layout.prefix}:topic-checkpoints:${pipelineId(product)}`,
  });
}

/** A sink factory for the test products: their real sinks, optionally wrapped in {@link TestDeliverySink}. */
export function testSinkFactory(options: TestSinkOptions): SinkFactory {
  return (product) => {
    const sink = targetSink(options, product);
    if ((options.writeDelayMs ?? 0) === 0 && options.twice !== true && options.onWrite === undefined)
      return sink;
    const onWrite = options.onWrite;
    return new TestDeliverySink(sink, {
      delayMs: options.writeDelayMs,
      twice: options.twice,
      onWrite: onWrite === undefined ? undefined : (records) => onWrite(product, records),
    });
  };
}

/** The rows a product's target holds now. */
export async function actualState(
  options: TestSinkOptions,
  product: PipelineProduct,
): Promise<Map<string, Row>> {
  const { layout, redis, pool, eventLog } = options;
  const rows = new Map<string, Row>();
  const target = product.spec.target;
  if (target.type === 'redis') {
    const prefix = redisRecordPrefix(layout, product);
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
      cursor = next;
      const pipeline = redis.pipeline();
      for (const key of keys) pipeline.hgetall(key);
      const replies = (await pipeline.exec()) ?? [];
      keys.forEach((key, i) => {
        const hash = replies[i][1] as Record<string, string>;
        rows.set(key.slice(prefix.length), {
          customer: hash.customer,
          amount: Number(hash.amount),
          status: hash.status,
        });
      });
    } while (cursor !== '0');
  } else if (target.type === 'postgres') {
    const result = await pool.query<{ _key: string; customer: string; amount: string; status: string }>(
      `SELECT _key, customer, amount::text AS amount, status FROM "${layout.schema}"."${target.postgres!.table}"`,
    );
    for (const row of result.rows) {
      rows.set(row._key, { customer: row.customer, amount: Number(row.amount), status: row.status });
    }
  } else {
    const latest = new Map<string, LogEvent>();
    for (const event of await topicEvents(eventLog, product)) {
      const key = event.subject!;
      const seen = latest.get(key);
      if (seen === undefined || newer(event, seen)) latest.set(key, event);
    }
    for (const [key, event] of latest) {
      if (event.type === 'delete') continue;
      const data = event.data as { customer: string; amount: number; status: string };
      rows.set(key, { customer: data.customer, amount: data.amount, status: data.status });
    }
  }
  return rows;
}

/** Every event of a topic product's derived stream (empty when it does not exist). */
export async function topicEvents(eventLog: EventLog, ref: ProductRef): Promise<LogEvent[]> {
  const out: LogEvent[] = [];
  try {
    for await (const batch of eventLog.scan(topicStream(ref), { batchSize: 5000 })) out.push(...batch);
  } catch (err) {
    if ((err as { code?: string }).code !== 'stream-not-found') throw err;
  }
  return out;
}

/** The sinks' guard order on topic events: (sourceoffset, sourcestream). */
function newer(a: LogEvent, b: LogEvent): boolean {
  const byOffset = compareOffsets(a.sourceoffset as string, b.sourceoffset as string);
  if (byOffset !== 0) return byOffset > 0;
  return (a.sourcestream as string) > (b.sourcestream as string);
}

/** Describes how two row maps differ (first few differences), or undefined when equal. */
export function diffRows(expected: Map<string, Row>, actual: Map<string, Row>): string | undefined {
  const problems: string[] = [];
  for (const [key, row] of expected) {
    const got = actual.get(key);
    if (got === undefined) problems.push(`missing ${key}`);
    else if (got.customer !== row.customer || got.amount !== row.amount || got.status !== row.status) {
      problems.push(`${key}: expected ${JSON.stringify(row)}, got ${JSON.stringify(got)}`);
    }
    if (problems.length >= 5) break;
  }
  for (const key of actual.keys()) {
    if (problems.length >= 5) break;
    if (!expected.has(key)) problems.push(`unexpected ${key}`);
  }
  if (problems.length === 0 && expected.size === actual.size) return undefined;
  return `${expected.size} rows expected, ${actual.size} found; ${problems.join('; ')}`;
}

/** Resolves when `check` returns true, polling; rejects after `timeoutMs` with `what` and the last detail. */
export async function waitFor(
  check: () => Promise<boolean | string> | boolean | string,
  what: string,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const last = await check();
    if (last === true) return;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${typeof last === 'string' ? `: ${last}` : ''}`);
    await delay(100);
  }
}
