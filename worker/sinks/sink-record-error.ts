/**
 * A record a sink cannot write, whatever the state of the target: a key that is too long, a
 * value that does not fit its column, an event larger than the log accepts. `write` throws it
 * before anything is written, so the batch can be retried without the record at `index` (which
 * goes to the dead-letter stream). Callers that check each record first with the sink's
 * `validateRecord` never see it.
 */
export class SinkRecordError extends Error {
  /** The position of the offending record in the batch passed to `write`. */
  readonly index: number;
  /** What is wrong with it, without quoting its data. */
  readonly reason: string;

  constructor(index: number, reason: string) {
    super(`Record ${index} of the batch cannot be written: ${reason}.`);
    this.name = 'SinkRecordError';
    this.index = index;
    this.reason = reason;
  }
}
