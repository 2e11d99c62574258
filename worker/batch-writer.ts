/**
 * One batch through the pipeline: events → records and dead letters (the product's compiled
 * spec), then dead letters to the dead-letter stream and records to the sink. Shared by the
 * seed chunks and the live tail.
 */
import type { LogEvent } from '../lib/eventlog/event-log.ts';
import type { CompiledProduct } from './compiled-product.ts';
import type { DeadLetter, DeadLetterQueue } from './dead-letter-queue.ts';
import type { Checkpoint, Sink, SinkRecord } from './sinks/sink.ts';
import { SinkRecordError } from './sinks/sink-record-error.ts';

/** A sink that can say in advance why it would refuse a record (every built-in sink can). */
export interface RecordValidator {
  validateRecord(record: SinkRecord): string | undefined;
}

/**
 * The records a batch of events became, and its dead letters. The events themselves are not
 * kept: a batch lives while it is written, and holding every parsed event that long would move
 * them all into the old generation of the heap (the dead-letter queue reads an event back in
 * the rare case the sink refuses its record).
 */
export interface ProcessedBatch {
  records: SinkRecord[];
  letters: DeadLetter[];
}

/** What writing a batch did. */
export interface BatchWriteResult {
  written: number;
  deadLettered: number;
}

/** Runs a product's filter and transform over a batch of events read from `stream`. */
export function processBatch(
  product: CompiledProduct,
  events: readonly LogEvent[],
  stream: string,
): ProcessedBatch {
  const out: ProcessedBatch = { records: [], letters: [] };
  for (const event of events) {
    const result = product.process(event, stream);
    if (result.kind === 'record') {
      out.records.push(result.record);
    } else if (result.kind === 'dead') {
      const letter: DeadLetter = {
        stream,
        offset: event.offset,
        expression: result.expression,
        pointer: result.pointer,
        error: result.error,
        event,
      };
      if (result.column !== undefined) letter.column = result.column;
      out.letters.push(letter);
    }
  }
  return out;
}

function canValidate(sink: Sink): sink is Sink & RecordValidator {
  return typeof (sink as Partial<RecordValidator>).validateRecord === 'function';
}

/**
 * Writes a processed batch: its dead letters first, then its records (with `checkpoint`, in the
 * same atomic step of the sink). Letters go first so that a crash between the two replays the
 * batch instead of losing a letter behind a committed checkpoint; the dead-letter stream absorbs
 * the replay. A record the sink refuses ({@link SinkRecordError}: a key too long, a value that
 * does not fit its column) becomes a dead letter pointing at the target, and the rest of the
 * batch is written.
 */
export async function writeBatch(
  sink: Sink,
  deadLetters: DeadLetterQueue,
  batch: ProcessedBatch,
  checkpoint?: { name: string; position: Checkpoint },
  targetPointer = '/spec/target',
): Promise<BatchWriteResult> {
  const letters = [...batch.letters];
  let records = batch.records;
  let appended = 0;
  for (;;) {
    if (letters.length > appended) {
      await deadLetters.append(letters.slice(appended));
      appended = letters.length;
    }
    try {
      const result = await sink.write(records, checkpoint);
      return { written: result.written, deadLettered: letters.length };
    } catch (err) {
      if (!(err instanceof SinkRecordError) || err.index < 0 || err.index >= records.length) throw err;
      // One refusal usually means more (a column type that does not fit): check them all at once.
      const refused = new Map<number, string>([[err.index, err.reason]]);
      if (canValidate(sink)) {
        for (let i = 0; i < records.length; i++) {
          const why = sink.validateRecord(records[i]);
          if (why !== undefined) refused.set(i, why);
        }
      }
      const kept: SinkRecord[] = [];
      for (let i = 0; i < records.length; i++) {
        const why = refused.get(i);
        if (why === undefined) kept.push(records[i]);
        else {
          letters.push({
            stream: records[i].stream,
            offset: records[i].offset,
            pointer: targetPointer,
            error: `the target refused the record: ${why}`,
          });
        }
      }
      records = kept;
    }
  }
}
