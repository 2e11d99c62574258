/**
 * A sink writes a product's records into its target (redis, postgres or topic). Every sink is
 * idempotent and order-independent: each key remembers the offset of the event that last
 * wrote it and a record carrying an older (or equal) offset changes nothing — so retries,
 * duplicate deliveries, crashes and parallel seeding end in the same state as one clean pass.
 */
import type { Offset } from '../../lib/eventlog/event-log.ts';

/** One change to apply: an upsert of a key's fields, or a tombstone deleting the key. */
export interface SinkRecord {
  key: string;
  /**
   * Where the event that produced this record sits in the log: its stream and offset. The
   * guard orders records by offset (compareOffsets), then by stream name, so records from
   * several streams of one product still have one total order.
   */
  stream: string;
  offset: Offset;
  op: 'upsert' | 'delete';
  /** The transformed fields (upsert only), plain JSON values. */
  fields?: Record<string, unknown>;
}

/**
 * The position a pipeline has durably applied, per source stream. A checkpoint is written in
 * the same transaction (postgres) or script (redis) as the records it stands for, so it never
 * runs ahead of the data.
 */
export type Checkpoint = Record<string, Offset>;

/** What one write did. */
export interface SinkWriteResult {
  /** Records that changed the target. */
  written: number;
  /** Records ignored because the key already holds a newer (or the same) offset. */
  skipped: number;
}

/** The interface every target implements. */
export interface Sink {
  /** Creates what the sink writes into when missing (table, guard structures); idempotent. */
  prepare(): Promise<void>;
  /**
   * Why this record cannot be written (an over-long key, a value that does not fit its column),
   * or undefined. The runtime dead-letters such records instead of failing the batch.
   */
  validateRecord(record: SinkRecord): string | undefined;
  /**
   * Applies a batch atomically and idempotently. With `checkpoint`, stores it under
   * `checkpointName` in the same atomic step, never ahead of the data.
   */
  write(
    records: readonly SinkRecord[],
    checkpoint?: { name: string; position: Checkpoint },
  ): Promise<SinkWriteResult>;
  /**
   * Deletes the tombstones (the guards deleted keys leave behind) of events whose offset's
   * milliseconds are below `beforeMs` (decimal); answers how many. Only safe once no event
   * older than that can be written any more: the live tail calls it with a bound behind its
   * checkpoint on every stream. Absent where a target keeps no tombstones.
   */
  purgeTombstones?(beforeMs: string): Promise<number>;
  /** The checkpoint stored under `name`, or null. */
  readCheckpoint(name: string): Promise<Checkpoint | null>;
  /** Removes everything the sink wrote (records, guard data, checkpoints). */
  drop(): Promise<void>;
  /** Releases connections the sink opened itself. */
  close(): Promise<void>;
}
