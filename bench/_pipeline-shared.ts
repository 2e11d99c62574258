/**
 * What the pipeline benchmark and its worker processes share: the benchmark products, their
 * sinks, and the generated order events.
 */
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { DataProductSpec } from '../crds/generated/types.ts';
import type { EventInput, EventLog } from '../lib/eventlog/event-log.ts';
import { pipelineId } from '../worker/pipeline-keys.ts';
import type { PipelineProduct } from '../worker/pipeline-state-store.ts';
import { PostgresSink } from '../worker/sinks/postgres-sink.ts';
import { RedisSink } from '../worker/sinks/redis-sink.ts';
import type { Sink } from '../worker/sinks/sink.ts';
import { TopicSink } from '../worker/sinks/topic-sink.ts';

/** The source stream of the benchmark. */
export const BENCH_STREAM = 'orders';

/** The benchmark's target types. */
export type BenchTarget = 'redis' | 'postgres' | 'topic';

/** The DESIGN.md example spec: big EU orders keyed by customer. */
export function benchSpec(type: BenchTarget, table: string, stream = BENCH_STREAM): DataProductSpec {
  return {
    source: { streams: [stream], types: ['OrderPlaced', 'OrderCancelled'], startFrom: 'earliest' },
    filter: "event.data.region == 'EU' && event.data.amount > 100",
    transform: {
      key: 'event.data.customerId',
      fields: {
        customer: 'event.data.customerId',
        amount: 'event.data.amount',
        status: "event.type == 'OrderCancelled' ? 'cancelled' : 'open'",
      },
    },
    target:
      type === 'postgres'
        ? { type, postgres: { table, columns: { customer: 'text', amount: 'numeric', status: 'text' } } }
        : type === 'redis'
          ? { type, redis: { format: 'hash' } }
          : { type },
  };
}

/** A benchmark product. */
export function benchProduct(name: string, type: BenchTarget, stream = BENCH_STREAM): PipelineProduct {
  return { namespace: 'bench', name, spec: benchSpec(type, name.replaceAll('-', '_'), stream) };
}

/** Where the benchmark's targets live. */
export interface BenchLayout {
  prefix: string;
  schema: string;
  redis: Redis;
  pool: pg.Pool;
  eventLog: EventLog;
}

/** The sink of a benchmark product. */
export function benchSink(layout: BenchLayout, product: PipelineProduct): Sink {
  const target = product.spec.target;
  const id = pipelineId(product);
  if (target.type === 'redis') {
    return new RedisSink(layout.redis, { keyPrefix: `${layout.prefix}:data:${id}:`, format: 'hash' });
  }
  if (target.type === 'postgres') {
    return new PostgresSink(layout.pool, {
      schema: layout.schema,
      table: target.postgres!.table,
      columns: target.postgres!.columns,
    });
  }
  return new TopicSink(layout.eventLog, layout.redis, {
    stream: `${id}.topic`,
    product: `${product.namespace}/${product.name}`,
    checkpointKey: `${layout.prefix}:topic-checkpoints:${id}`,
  });
}

/** A realistic order event (about 400 bytes stored): most pass the type list, about a third the filter. */
export function orderEvent(i: number, idPrefix = 'b'): EventInput {
  const customer = (i * 7919) % 50_000;
  const amount = ((i * 104_729) % 40_000) / 100;
  const r = (i * 2_654_435_761) % 100;
  const type = r < 70 ? 'OrderPlaced' : r < 85 ? 'OrderCancelled' : 'OrderShipped';
  return {
    id: `${idPrefix}-${i}`,
    source: 'urn:bench:checkout',
    type,
    subject: `c-${customer}`,
    data: {
      orderId: `o-${i}`,
      customerId: `c-${customer}`,
      region: ['EU', 'US', 'APAC'][customer % 3],
      amount,
      currency: 'EUR',
      channel: i % 2 === 0 ? 'web' : 'app',
      items: [
        { sku: `sku-${i % 977}`, qty: 1 + (i % 3), price: Math.round(amount * 40) / 100 },
        { sku: `sku-${i % 331}`, qty: 1, price: Math.round(amount * 60) / 100 },
      ],
      note: 'leave at the door',
    },
  };
}
