/**
 * The error a compiled CEL expression throws when it cannot produce a value for one event
 * (a missing key, a division by zero, a value of the wrong kind). It is about the event, not the
 * spec: the pipeline records it (dead-letter, status message) and goes on with the next event.
 */
export class CelEvaluationError extends Error {
  /** 1-based column inside the expression where the failing part starts, when known. */
  readonly expressionColumn: number | undefined;

  constructor(message: string, expressionColumn?: number, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CelEvaluationError';
    this.expressionColumn = expressionColumn;
  }
}
