/**
 * A product's dead-letter stream: events whose filter or transform failed at run time, each
 * with its source stream and offset, the failing expression and the error. Appending is
 * idempotent (the event id is derived from the source position), so a replayed batch does not
 * add a letter twice.
 */
import type { EventInput, EventLog, LogEvent, Offset } from '../lib/eventlog/event-log.ts';

/** One event that could not be processed. */
export interface DeadLetter {
  /** The source stream and offset of the event. */
  stream: string;
  offset: Offset;
  /** The source text of the failing expression (absent when the target refused the record). */
  expression?: string;
  /** Where the problem is in the spec: the expression, or the target that refused the record. */
  pointer: string;
  error: string;
  column?: number;
  /** The event itself; read back from its stream when not given. Left out of the letter when too large. */
  event?: LogEvent;
}

/** The CloudEvents type of a dead letter. */
export const DEAD_LETTER_TYPE = 'dev.offtake.pipeline.DeadLetter';

/** Writes dead letters to a product's dead-letter stream. */
export class DeadLetterQueue {
  /** The dead-letter stream's name. */
  readonly stream: string;
  private readonly eventLog: EventLog;
  private readonly source: string;

  /**
   * @param eventLog where the dead-letter stream lives.
   * @param stream the dead-letter stream (see `deadLetterStream`).
   * @param productId the product's pipeline id, `<namespace>.<name>`, used in the letters' `source`.
   */
  constructor(eventLog: EventLog, stream: string, productId: string) {
    this.eventLog = eventLog;
    this.stream = stream;
    this.source = `urn:offtake:pipeline:${productId}`;
  }

  /** Appends letters (in batches the log accepts); a letter already in the stream is not added again. */
  async append(letters: readonly DeadLetter[]): Promise<void> {
    if (letters.length === 0) return;
    const { maxBatchEvents, maxEventBytes } = this.eventLog.limits;
    // Room for the letter's own envelope and fields around the copied event.
    const eventBudget = Math.max(0, maxEventBytes - 8192 - 4 * 4096);
    const inputs: EventInput[] = [];
    for (const letter of letters) inputs.push(this.toEvent(letter, await this.eventOf(letter), eventBudget));
    for (let i = 0; i < inputs.length; i += maxBatchEvents) {
      await this.eventLog.append(this.stream, inputs.slice(i, i + maxBatchEvents));
    }
  }

  private async eventOf(letter: DeadLetter): Promise<LogEvent | undefined> {
    if (letter.event !== undefined) return letter.event;
    const page = await this.eventLog.read(letter.stream, {
      from: letter.offset,
      to: letter.offset,
      limit: 1,
    });
    return page.events[0];
  }

  private toEvent(letter: DeadLetter, event: LogEvent | undefined, eventBudget: number): EventInput {
    const copy = event === undefined ? '' : JSON.stringify(event);
    const data: Record<string, unknown> = {
      stream: letter.stream,
      offset: letter.offset,
      pointer: letter.pointer,
      error: letter.error,
    };
    if (letter.expression !== undefined) data.expression = letter.expression;
    if (letter.column !== undefined) data.column = letter.column;
    // Bytes, not characters: the log measures the stored envelope.
    if (event === undefined) data.eventOmitted = 'the event is no longer in its stream';
    else if (Buffer.byteLength(copy) <= eventBudget) data.event = event;
    else data.eventOmitted = 'the event is too large to copy; read it from its stream at this offset';
    return {
      id: `${letter.stream}/${letter.offset}`,
      source: this.source,
      type: DEAD_LETTER_TYPE,
      subject: `${letter.stream}/${letter.offset}`,
      data,
    };
  }
}
