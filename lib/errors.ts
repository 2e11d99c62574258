/**
 * The catalogue of Offtake's coded errors. Every failure a user can see has a stable `code`
 * (the last segment of the problem `type` URI), an HTTP status and a title; one error
 * middleware turns an {@link OfftakeError} into `application/problem+json` (RFC 9457).
 */

/** Where a problem is: a JSON pointer into the submitted document, and for YAML its line and column. */
export interface FieldError {
  /** JSON pointer (RFC 6901) to the offending value, e.g. `/spec/target/postgres/table`. */
  pointer: string;
  /** What is wrong, in words a user can act on. */
  message: string;
  /** 1-based line in the submitted YAML or JSON text, when the input was text. */
  line?: number;
  /** 1-based column in the submitted text. */
  column?: number;
  /** For CEL expressions: 1-based column inside the expression where the problem starts. */
  expressionColumn?: number;
  /** A short machine-readable kind, e.g. `schema`, `cel-syntax`, `cel-type`, `name`. */
  kind?: string;
}

/** The kinds of failure, each with its HTTP status and title. Codes are stable API. */
export const ERRORS = {
  'invalid-spec': { status: 400, title: 'The DataProduct is invalid' },
  'invalid-yaml': { status: 400, title: 'The body is not valid YAML' },
  'invalid-json': { status: 400, title: 'The body is not valid JSON' },
  'multiple-documents': { status: 400, title: 'The body holds more than one document' },
  'invalid-parameter': { status: 400, title: 'A request parameter is invalid' },
  'invalid-name': { status: 400, title: 'A name in the request path is invalid' },
  'invalid-event': { status: 400, title: 'An event is invalid' },
  'invalid-offset': { status: 400, title: 'An offset does not parse' },
  'invalid-range': { status: 400, title: 'The requested range is empty or reversed' },
  unauthorized: { status: 401, title: 'Authentication is required' },
  'not-found': { status: 404, title: 'The resource does not exist' },
  'stream-not-found': { status: 404, title: 'The stream does not exist' },
  'method-not-allowed': { status: 405, title: 'The method is not allowed on this resource' },
  'not-acceptable': { status: 406, title: 'No acceptable representation' },
  'already-exists': { status: 409, title: 'The resource already exists' },
  conflict: { status: 409, title: 'The resource was changed by someone else' },
  'watch-expired': { status: 410, title: 'The requested resourceVersion is too old' },
  'too-large': { status: 413, title: 'The body is too large' },
  'batch-too-large': { status: 413, title: 'The batch has too many events' },
  'unsupported-media-type': { status: 415, title: 'The body has a media type this endpoint does not accept' },
  unavailable: { status: 503, title: 'A backing service is unavailable' },
  internal: { status: 500, title: 'Internal error' },
} as const satisfies Record<string, { status: number; title: string }>;

/** A stable error code from {@link ERRORS}. */
export type ErrorCode = keyof typeof ERRORS;

/** Base URI of problem types; `${PROBLEM_TYPE_BASE}${code}` is each problem's `type`. */
export const PROBLEM_TYPE_BASE = 'https://offtake.dev/problems/';

/** An RFC 9457 problem details object as Offtake sends it. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: ErrorCode;
  instance?: string;
  errors?: FieldError[];
  [extension: string]: unknown;
}

/** An error a user can read: carries its code, a detail message and any field errors. */
export class OfftakeError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly errors: FieldError[];
  readonly extensions: Record<string, unknown>;

  constructor(
    code: ErrorCode,
    detail: string,
    opts: { errors?: FieldError[]; cause?: unknown; extensions?: Record<string, unknown> } = {},
  ) {
    super(detail, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'OfftakeError';
    this.code = code;
    this.status = ERRORS[code].status;
    this.errors = opts.errors ?? [];
    this.extensions = opts.extensions ?? {};
  }

  /** The problem+json body for this error. */
  toProblem(instance?: string): Problem {
    const problem: Problem = {
      type: PROBLEM_TYPE_BASE + this.code,
      title: ERRORS[this.code].title,
      status: this.status,
      detail: this.message,
      code: this.code,
      ...this.extensions,
    };
    if (instance !== undefined) problem.instance = instance;
    if (this.errors.length > 0) problem.errors = this.errors;
    return problem;
  }
}

/** True when `err` is an {@link OfftakeError}, optionally of the given code. */
export function isOfftakeError(err: unknown, code?: ErrorCode): err is OfftakeError {
  return err instanceof OfftakeError && (code === undefined || err.code === code);
}
