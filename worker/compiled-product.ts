/**
 * A DataProduct's filter and transform, compiled once: turns one log event into a sink record,
 * a skip, or a dead letter (an expression failed on this event).
 */
import type { DataProductSpec } from '../crds/generated/types.ts';
import type { LogEvent } from '../lib/eventlog/event-log.ts';
import { OfftakeError } from '../lib/errors.ts';
import { compileExpression, type CelContext, type CompiledExpression } from '../lib/validation/cel.ts';
import { CelEvaluationError } from '../lib/validation/cel-evaluation-error.ts';
import { specExpressions } from '../lib/validation/semantic.ts';
import type { SinkRecord } from './sinks/sink.ts';

/** What one event becomes. */
export type ProcessResult =
  | { kind: 'skip' }
  | { kind: 'record'; record: SinkRecord }
  | {
      kind: 'dead';
      /** The source text of the expression that failed. */
      expression: string;
      /** Where the expression is in the spec, e.g. `/spec/transform/fields/amount`. */
      pointer: string;
      /** Why it failed on this event. */
      error: string;
      /** 1-based column inside the expression, when known. */
      column?: number;
    };

interface Compiled {
  pointer: string;
  source: string;
  evaluate: CompiledExpression['evaluateIn'];
}

type Dead = Extract<ProcessResult, { kind: 'dead' }>;

const SKIP: ProcessResult = Object.freeze({ kind: 'skip' });

function dead(expression: Compiled, err: unknown): Dead {
  if (err instanceof CelEvaluationError) {
    const result: Dead = {
      kind: 'dead',
      expression: expression.source,
      pointer: expression.pointer,
      error: err.message,
    };
    if (err.expressionColumn !== undefined) result.column = err.expressionColumn;
    return result;
  }
  // Only CEL's own failures are about the event; anything else is a bug and must surface.
  throw err;
}

/** A product's filter and transform, compiled once and applied to every event. */
export class CompiledProduct {
  /** The source streams, in spec order. */
  readonly streams: readonly string[];
  /** The event types kept, or null for all. */
  readonly types: ReadonlySet<string> | null;
  private readonly filter: Compiled | undefined;
  private readonly key: Compiled;
  private readonly tombstone: Compiled | undefined;
  private readonly fields: readonly (Compiled & { field: string })[];
  /** Whether any expression may read `event.time` (then it is parsed once per event, not per expression). */
  private readonly needsTime: boolean;

  private constructor(spec: DataProductSpec) {
    this.streams = Object.freeze([...spec.source.streams]);
    this.types = spec.source.types === undefined ? null : new Set(spec.source.types);
    let filter: Compiled | undefined;
    let key: Compiled | undefined;
    let tombstone: Compiled | undefined;
    const fields: (Compiled & { field: string })[] = [];
    for (const expression of specExpressions(spec)) {
      const result = compileExpression(expression.source, expression.expected);
      if (!result.ok) {
        // The API compiles every expression before accepting a spec; reaching this is a bug.
        throw new OfftakeError(
          'invalid-spec',
          `The expression at ${expression.pointer} does not compile: ${result.message}.`,
          {
            errors: [
              {
                pointer: expression.pointer,
                message: result.message,
                expressionColumn: result.column,
                kind: result.kind,
              },
            ],
          },
        );
      }
      const compiled: Compiled = {
        pointer: expression.pointer,
        source: expression.source,
        evaluate: result.evaluateIn,
      };
      if (expression.role === 'filter') filter = compiled;
      else if (expression.role === 'key') key = compiled;
      else if (expression.role === 'tombstone') tombstone = compiled;
      else fields.push({ ...compiled, field: expression.field! });
    }
    if (key === undefined) {
      throw new OfftakeError('invalid-spec', 'The spec has no transform.key.', {
        errors: [{ pointer: '/spec/transform/key', message: 'required', kind: 'schema' }],
      });
    }
    this.filter = filter;
    this.key = key;
    this.tombstone = tombstone;
    this.fields = fields;
    // Conservative: any mention of "time", or `event` used other than as `event.<field>`.
    this.needsTime = [filter, key, tombstone, ...fields].some(
      (e) => e !== undefined && /\btime\b|\bevent\b(?!\s*\.)/.test(e.source),
    );
  }

  /**
   * The event as the expressions see it, built once for all of them (as `celContext` does).
   * Parsing an RFC 3339 `time` is most of the cost of a small expression, so it is done only
   * when an expression may read it.
   */
  private context(event: LogEvent): CelContext {
    const envelope: Record<string, unknown> = { id: event.id, source: event.source, type: event.type };
    if (event.subject !== undefined && event.subject !== null) envelope.subject = event.subject;
    if (this.needsTime && typeof event.time === 'string') {
      const time = new Date(event.time);
      if (!Number.isNaN(time.getTime())) envelope.time = time;
    }
    envelope.offset = event.offset;
    if (event.datacontenttype !== undefined && event.datacontenttype !== null)
      envelope.datacontenttype = event.datacontenttype;
    if (event.data !== undefined && event.data !== null) envelope.data = event.data;
    return { event: envelope };
  }

  /** Compiles every expression of a spec; throws `invalid-spec` if one does not compile. */
  static compile(spec: DataProductSpec): CompiledProduct {
    return new CompiledProduct(spec);
  }

  /**
   * Applies the spec to one event read from `stream`: the type list first, then the filter,
   * the key, the tombstone condition and the fields. A failing expression makes a dead letter.
   */
  process(event: LogEvent, stream: string): ProcessResult {
    if (this.types !== null && !this.types.has(event.type)) return SKIP;
    const cel = this.context(event);
    let current: Compiled | undefined = this.filter;
    try {
      if (current !== undefined && current.evaluate(cel) !== true) return SKIP;
      current = this.key;
      const key = current.evaluate(cel) as string;
      if (key === '') {
        return {
          kind: 'dead',
          expression: current.source,
          pointer: current.pointer,
          error: 'the key is empty',
        };
      }
      current = this.tombstone;
      if (current !== undefined && current.evaluate(cel) === true) {
        return { kind: 'record', record: { key, stream, offset: event.offset, op: 'delete' } };
      }
      const fields: Record<string, unknown> = {};
      for (const field of this.fields) {
        current = field;
        fields[field.field] = field.evaluate(cel);
      }
      return { kind: 'record', record: { key, stream, offset: event.offset, op: 'upsert', fields } };
    } catch (err) {
      return dead(current!, err);
    }
  }
}
