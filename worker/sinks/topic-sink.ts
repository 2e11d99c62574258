/**
 * The topic target: a derived stream in the event log. Each record becomes one event —
 * `source` `offtake://<product>`, `id` `<source stream>/<source offset>`, `subject` the key, type
 * `upsert` or `delete` (configurable), `data` the transformed fields, and the extensions
 * `sourcestream` and `sourceoffset` pointing back at the event it came from.
 *
 * Idempotence comes from the log: an event whose `source` + `id` was appended within the log's
 * dedup window is not stored again, so retries and replays never duplicate (beyond the window —
 * a day by default — a replay would). Order: a topic is a changelog, not a table, so nothing is
 * overwritten and every source event appears exactly once, in the order its batch was written
 * (which differs from source order when batches are retried or seeded in parallel). A consumer
 * that needs the latest state per key applies the same guard as every sink: keep, per subject,
 * the event with the greatest (`sourceoffset`, `sourcestream`). The records of a batch are not
 * reduced to the newest per key, so the set of events does not depend on how the seed was cut
 * into batches.
 *
 * Checkpoints. The log's append script cannot also write a checkpoint, so the order is fixed:
 * append the batch first, then store the checkpoint (a hash field in Redis). A crash between the
 * two leaves the checkpoint behind the data — never ahead — and the replay that follows is
 * absorbed by the dedup.
 */
import type { Redis } from 'ioredis';
import { EVENT_TYPE } from '../../crds/dataproduct.schema.ts';
import {
  checkStreamName,
  parseOffset,
  type EventInput,
  type EventLog,
} from '../../lib/eventlog/event-log.ts';
import { checkRecord, checkpointJson, jsonReady, parseCheckpoint, toJsonText } from './records.ts';
import type { Checkpoint, Sink, SinkRecord, SinkWriteResult } from './sink.ts';
import { SinkRecordError } from './sink-record-error.ts';

/** Options of a {@link TopicSink}. */
export interface TopicSinkOptions {
  /** The derived stream. */
  stream: string;
  /** Names the product in each event's source, `offtake://<product>` (e.g. `checkout/eu-big-orders`). */
  product: string;
  /** The Redis hash holding this sink's checkpoints (name -> JSON). */
  checkpointKey: string;
  /** CloudEvents type of an upsert (default `upsert`). */
  upsertType?: string;
  /** CloudEvents type of a delete (default `delete`). */
  deleteType?: string;
}

const PRODUCT_NAME = /^[a-z0-9]([-a-z0-9_./]{0,250}[a-z0-9])?$/;
const EVENT_TYPE_PATTERN = new RegExp(EVENT_TYPE);
/** A stand-in for the `time` the log fills in, of the same length, for the size check. */
const TIME_PLACEHOLDER = new Date(0).toISOString();

/** The sink of a topic target. The log and the Redis connection belong to the caller. */
export class TopicSink implements Sink {
  readonly stream: string;
  readonly source: string;
  readonly checkpointKey: string;
  readonly upsertType: string;
  readonly deleteType: string;
  private readonly log: EventLog;
  private readonly redis: Redis;

  constructor(log: EventLog, redis: Redis, opts: TopicSinkOptions) {
    this.stream = checkStreamName(opts.stream);
    if (typeof opts.product !== 'string' || !PRODUCT_NAME.test(opts.product)) {
      throw new Error('A topic sink product name is lower-case letters, digits and - _ . /.');
    }
    if (typeof opts.checkpointKey !== 'string' || opts.checkpointKey.length === 0) {
      throw new Error('A topic sink needs a checkpointKey.');
    }
    this.upsertType = opts.upsertType ?? 'upsert';
    this.deleteType = opts.deleteType ?? 'delete';
    for (const type of [this.upsertType, this.deleteType]) {
      if (!EVENT_TYPE_PATTERN.test(type) || type.length > 256)
        throw new Error(`${JSON.stringify(type)} is not a CloudEvents type.`);
    }
    this.source = `offtake://${opts.product}`;
    this.checkpointKey = opts.checkpointKey;
    this.log = log;
    this.redis = redis;
  }

  /** The event a record becomes. */
  toEvent(record: SinkRecord): EventInput {
    const offset = parseOffset(record.offset);
    const event: EventInput = {
      id: `${record.stream}/${offset}`,
      source: this.source,
      type: record.op === 'delete' ? this.deleteType : this.upsertType,
      subject: record.key,
      sourcestream: record.stream,
      sourceoffset: offset,
    };
    if (record.op === 'upsert') event.data = jsonReady(record.fields ?? {});
    return event;
  }

  /**
   * Why `record` cannot be written to the topic, or undefined: the checks of `checkRecord`, and
   * the event it becomes must fit the log's size limit.
   */
  validateRecord(record: SinkRecord): string | undefined {
    const why = checkRecord(record, { allowNul: true });
    if (why !== undefined) return why;
    const envelope = {
      specversion: '1.0',
      time: TIME_PLACEHOLDER,
      datacontenttype: 'application/json',
      ...this.toEvent(record),
    };
    const limit = this.log.limits.maxEventBytes;
    const text = toJsonText(envelope);
    if (text.length * 3 > limit) {
      const bytes = Buffer.byteLength(text);
      if (bytes > limit) return `the event it becomes is ${bytes} bytes; the log takes at most ${limit}`;
    }
    return undefined;
  }

  /** Nothing to create: the log creates the stream on first append. */
  prepare(): Promise<void> {
    return Promise.resolve();
  }

  /**
   * Appends the batch, then stores the checkpoint. Throws {@link SinkRecordError} (nothing
   * written) when a record is invalid. A batch larger than the log's `maxBatchEvents` goes in
   * several appends, each atomic: a failure part-way leaves the earlier ones in the topic (the
   * checkpoint is not written; the retry is deduplicated). `skipped` counts events the log
   * already held.
   */
  async write(
    records: readonly SinkRecord[],
    checkpoint?: { name: string; position: Checkpoint },
  ): Promise<SinkWriteResult> {
    const events = new Array<EventInput>(records.length);
    for (let i = 0; i < records.length; i++) {
      const why = this.validateRecord(records[i]);
      if (why !== undefined) throw new SinkRecordError(i, why);
      events[i] = this.toEvent(records[i]);
    }
    const checkpointText =
      checkpoint === undefined ? undefined : checkpointJson(checkpoint.name, checkpoint.position);
    let written = 0;
    const chunk = this.log.limits.maxBatchEvents;
    for (let i = 0; i < events.length; i += chunk) {
      const { duplicates } = await this.log.append(this.stream, events.slice(i, i + chunk));
      for (const duplicate of duplicates) if (!duplicate) written++;
    }
    if (checkpoint !== undefined) await this.redis.hset(this.checkpointKey, checkpoint.name, checkpointText!);
    return { written, skipped: records.length - written };
  }

  async readCheckpoint(name: string): Promise<Checkpoint | null> {
    const json = await this.redis.hget(this.checkpointKey, name);
    return json === null ? null : parseCheckpoint(json);
  }

  /** Deletes the derived stream and the checkpoints. */
  async drop(): Promise<void> {
    await this.log.deleteStream(this.stream);
    await this.redis.unlink(this.checkpointKey);
  }

  /** Nothing to release: the log and the connection belong to the caller. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}
