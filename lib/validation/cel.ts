/**
 * The CEL layer: every filter and transform expression is compiled here, once, when the spec is
 * validated (syntax, types, the expected result type, a worst-case cost), and the compiled form
 * evaluates events in the pipeline. Built on `@marcbachmann/cel-js`.
 *
 * The `event` variable is the CloudEvents envelope of a log entry:
 *
 * | field             | CEL type                  | notes                                         |
 * | ----------------- | ------------------------- | --------------------------------------------- |
 * | `id`, `source`, `type`, `offset` | string     | always present                                |
 * | `subject`         | string                    | the event's key; may be absent (`has(event.subject)`) |
 * | `datacontenttype` | string                    | may be absent                                 |
 * | `time`            | timestamp                 | may be absent; compare with `timestamp('2024-01-01T00:00:00Z')` |
 * | `data`            | `map<string, dyn>`        | the JSON payload; JSON numbers are CEL doubles |
 *
 * `time` is declared as `google.protobuf.Timestamp`, the full name of CEL's `timestamp`: cel-js
 * 8.0.0 crashes in `registerVariable` when a schema field says `'timestamp'` (it looks the alias
 * up as a message type, finds nothing and reads `.convert` of undefined). Events carry `time` as
 * an RFC 3339 string; {@link CompiledExpression.evaluate} turns it into a timestamp.
 *
 * Because JSON numbers are doubles, `event.data.amount > 100` works (comparisons mix numeric
 * types) but arithmetic needs a double literal or a conversion: `event.data.amount * 1.0`,
 * `int(event.data.count) + 1`.
 *
 * `matches()` is CEL's regular-expression test. cel-js runs it on JavaScript's backtracking
 * engine, where a pattern like `(a+)+$` takes exponential time. Offtake therefore requires the
 * pattern to be a string literal, checks it when the spec is submitted, and evaluates it on V8's
 * linear-time engine (the `l` flag, enabled here with `--enable-experimental-regexp-engine`),
 * which rejects the non-regular features RE2 (CEL's reference engine) lacks too: backreferences
 * and lookaround.
 */
import v8 from 'node:v8';
import { Environment, EvaluationError, ParseError, TypeError as CelTypeError } from '@marcbachmann/cel-js';
import type { ASTNode, Limits } from '@marcbachmann/cel-js';
import { MAX_EXPRESSION_LENGTH } from '../../crds/dataproduct.schema.ts';
import { estimateCost } from './cel-cost.ts';
import { CelEvaluationError } from './cel-evaluation-error.ts';

/**
 * The structural limits given to cel-js's parser, each measured against hostile input
 * (see `test/validation-cel.test.ts`):
 * - `maxDepth: 64` — nesting of calls, selects, indexes, lists and maps. cel-js's default of 250
 *   is safe from stack overflow, but no real filter nests beyond ~10 and a lower bound keeps the
 *   type checker and evaluator (both recursive) far from the stack limit.
 * - `maxAstNodes: 2048` — a 4096-character expression has at most ~2 characters per node; this
 *   rejects only pathological density (`1+1+1+…`, `!!!!…`) and caps the work of the checker,
 *   the cost estimator and the evaluator's recursion on long `&&` / `+` chains.
 * - `maxListElements`, `maxMapEntries: 1000` and `maxCallArguments: 32`: cel-js's defaults,
 *   already bounded by the length limit.
 * cel-js does not count unary operators (`!!!!…x`, `----1`) towards `maxDepth` and overflows the
 * stack on a few thousand of them, so {@link MAX_NESTING} is enforced by a scan before parsing.
 */
export const CEL_LIMITS: Readonly<Limits> = Object.freeze({
  maxAstNodes: 2048,
  maxDepth: 64,
  maxListElements: 1000,
  maxMapEntries: 1000,
  maxCallArguments: 32,
});

/** Most brackets plus consecutive unary operators (`!`, `-`) open at any point of an expression. */
export const MAX_NESTING = CEL_LIMITS.maxDepth;

/**
 * The size (bytes) assumed for a typical event: an expression whose worst case on such an event
 * exceeds {@link COST_LIMIT_TYPICAL} is rejected. This catches work that does not depend on the
 * event at all, such as `[1,…,1000].map(x, [1,…,1000].map(y, …))`.
 */
export const TYPICAL_EVENT_BYTES = 4096;

/** Most estimated evaluation steps on a typical event: a few milliseconds of cel-js evaluation (~30 ns a step). */
export const COST_LIMIT_TYPICAL = 1_000_000;

/**
 * The size (bytes) assumed for the largest event, matching the API's default body limit: every
 * string, list or map read from `event` is assumed to be this large.
 */
export const MAX_EVENT_BYTES = 1024 * 1024;

/**
 * Most estimated evaluation steps on the largest event: 100 per byte. Linear work over the event
 * fits; anything super-linear (a loop over event data inside another, a string doubled by
 * `cel.bind` at each level) exceeds it by orders of magnitude.
 */
export const COST_LIMIT_LARGEST = 100 * MAX_EVENT_BYTES;

/** The kinds of result an expression must have: `bool` (filter, tombstone), `string` (key), any `value` (fields). */
export type ExpectedResult = 'bool' | 'string' | 'value';

/** Why an expression was rejected: syntax (incl. nesting limits), types, or estimated cost. */
export type ExpressionErrorKind = 'cel-syntax' | 'cel-type' | 'cel-cost';

/** An event as the pipeline hands it to an expression (a CloudEvents envelope plus its offset). */
export interface CelEvent {
  id: string;
  source: string;
  type: string;
  offset: string;
  subject?: string;
  /** RFC 3339 text (as stored in the log) or a Date. */
  time?: string | Date;
  datacontenttype?: string;
  /** The JSON payload: an object. */
  data?: unknown;
}

/** A compiled expression, ready to evaluate events. */
export interface CompiledExpression {
  ok: true;
  /** The CEL type the checker inferred (`bool`, `string`, `dyn`, `list<int>`, `timestamp`, …). */
  type: string;
  /** The estimated worst-case evaluation steps on a typical and on the largest event. */
  cost: { typical: number; largest: number };
  /**
   * Evaluates the expression for one event and returns a plain JS value: CEL ints become numbers
   * (strings beyond 2^53), timestamps ISO strings, durations `"90s"`, bytes base64, maps objects.
   * For `bool` the result is a boolean; for `string` (the key) always a string (ints and
   * integral numbers are written in decimal).
   *
   * @throws CelEvaluationError when the event does not fit (missing key, wrong kind of value).
   */
  evaluate(this: void, event: CelEvent): unknown;
  /**
   * The same, for an event already turned into an activation by {@link celContext}: a product
   * evaluating several expressions per event builds it once.
   */
  evaluateIn(this: void, context: CelContext): unknown;
}

/** The activation expressions are evaluated in: `event` with its fields (absent ones left out). */
export interface CelContext {
  event: Record<string, unknown>;
}

/** A rejected expression: what is wrong and where. */
export interface ExpressionProblem {
  ok: false;
  kind: ExpressionErrorKind;
  /** One line a user can act on (no source snippet; the caller shows the position). */
  message: string;
  /** 1-based column inside the expression (a character index; lines are not split). */
  column: number;
}

/** The outcome of {@link compileExpression}. */
export type CompileResult = CompiledExpression | ExpressionProblem;

/** The fields of `event`, in the order they are listed to users. */
export const EVENT_FIELDS = [
  'id',
  'source',
  'type',
  'subject',
  'time',
  'offset',
  'datacontenttype',
  'data',
] as const;

const EVENT_SCHEMA = {
  id: 'string',
  source: 'string',
  type: 'string',
  subject: 'string',
  time: 'google.protobuf.Timestamp',
  offset: 'string',
  datacontenttype: 'string',
  data: 'map<string, dyn>',
} satisfies Record<(typeof EVENT_FIELDS)[number], string>;

/**
 * The name `matches` is rewritten to before evaluation: the same length, so the columns of
 * run-time errors stay right. Users may not call it themselves.
 */
const LINEAR_MATCHES = 'rematch';

/** V8's flag for its linear-time (non-backtracking) regular-expression engine. */
const LINEAR_FLAG = 'l';

function enableLinearRegExp(): boolean {
  const probe = (): boolean => {
    try {
      new RegExp('a', LINEAR_FLAG);
      return true;
    } catch {
      return false;
    }
  };
  if (probe()) return true;
  // Only makes the `l` flag available; regular expressions without it behave as before.
  v8.setFlagsFromString('--enable-experimental-regexp-engine');
  return probe();
}

/** True when V8's linear-time regular-expression engine is available (then `matches()` is allowed). */
export const LINEAR_REGEXP_AVAILABLE = enableLinearRegExp();

const patternCache = new Map<string, RegExp>();

function linearRegExp(pattern: string): RegExp {
  let re = patternCache.get(pattern);
  if (re === undefined) {
    // Patterns come from validated specs, so the cache stays small; the bound is a backstop.
    if (patternCache.size >= 1024) patternCache.clear();
    re = new RegExp(pattern, LINEAR_FLAG);
    patternCache.set(pattern, re);
  }
  return re;
}

/** The one environment every expression is compiled in; building it is the expensive part. */
const environment = new Environment({ limits: CEL_LIMITS })
  .registerVariable({ name: 'event', schema: EVENT_SCHEMA })
  .registerFunction(`string.${LINEAR_MATCHES}(string): bool`, (text: string, pattern: string) =>
    linearRegExp(pattern).test(text),
  );

/** Shows a CEL type the way users write it. */
function typeName(type: string): string {
  return type
    .replaceAll('google.protobuf.Timestamp', 'timestamp')
    .replaceAll('google.protobuf.Duration', 'duration')
    .replaceAll('$event', 'event');
}

function problem(kind: ExpressionErrorKind, message: string, column: number): ExpressionProblem {
  return { ok: false, kind, message, column: Math.max(1, column) };
}

function isCelError(err: unknown): err is ParseError | CelTypeError | EvaluationError {
  return err instanceof ParseError || err instanceof CelTypeError || err instanceof EvaluationError;
}

/** Turns cel-js's one-line summaries into messages that say what to do. */
function explain(err: ParseError | CelTypeError | EvaluationError): string {
  const summary = typeName(err.summary);
  let m: RegExpExecArray | null;
  if ((m = /^Exceeded maxDepth \((\d+)\)/.exec(summary))) {
    return `the expression is nested too deeply (at most ${m[1]} levels)`;
  }
  if ((m = /^Exceeded maxAstNodes \((\d+)\)/.exec(summary))) {
    return `the expression is too large (at most ${m[1]} operators, names and values)`;
  }
  if (summary === 'Unexpected token: EOF')
    return 'the expression ends too early: something is missing at the end';
  if (summary === 'Unexpected character: =') return "unexpected '=': use == to compare";
  if ((m = /^Unknown variable: (.*)$/.exec(summary))) {
    return `unknown name "${m[1]}": an expression can use the variable "event" (${EVENT_FIELDS.join(', ')})`;
  }
  if ((m = /^No such key: (.*)$/.exec(summary))) {
    const node = err.node as { op?: string; args?: unknown } | undefined;
    const target = Array.isArray(node?.args) ? (node.args[0] as { op?: string; args?: unknown }) : undefined;
    if (node?.op === '.' && target?.op === 'id' && target.args === 'event') {
      return `event has no field "${m[1]}"; its fields are ${EVENT_FIELDS.join(', ')} (payload fields are under event.data)`;
    }
  }
  return summary;
}

function columnOf(err: { range?: { start: number } }): number {
  return (err.range?.start ?? 0) + 1;
}

/** Skips whitespace and `//` comments from `i`; returns the next significant index. */
function skipTrivia(src: string, i: number): number {
  while (i < src.length) {
    if (/\s/.test(src[i])) i++;
    else if (src.startsWith('//', i)) {
      const nl = src.indexOf('\n', i);
      i = nl === -1 ? src.length : nl + 1;
    } else break;
  }
  return i;
}

/** The index after a string literal starting (at its quote) at `i`, or the end of the source. */
function skipString(src: string, i: number): number {
  const quote = src[i];
  const prefix = src.slice(Math.max(0, i - 2), i).toLowerCase();
  const raw = prefix.endsWith('r') || prefix === 'rb' || prefix === 'br';
  const triple = src.startsWith(quote.repeat(3), i);
  let j = i + (triple ? 3 : 1);
  while (j < src.length) {
    if (!raw && src[j] === '\\') j += 2;
    else if (triple ? src.startsWith(quote.repeat(3), j) : src[j] === quote) return j + (triple ? 3 : 1);
    else if (!triple && src[j] === '\n') return j;
    else j++;
  }
  return j;
}

/**
 * Rejects nesting cel-js's parser would recurse on without a limit: brackets plus runs of
 * unary operators. A run counts every `!` and `-` in a row, so `a - -b` counts 2 (harmless).
 */
function checkNesting(src: string): ExpressionProblem | undefined {
  let depth = 0;
  let unary = 0;
  for (let i = 0; i < src.length;) {
    const c = src[i];
    if (c === '"' || c === "'") {
      unary = 0;
      i = skipString(src, i);
      continue;
    }
    if (c === '/' && src[i + 1] === '/') {
      i = skipTrivia(src, i);
      continue;
    }
    if (c === '!' || c === '-') unary++;
    else if (!/\s/.test(c)) unary = 0;
    if (c === '(' || c === '[' || c === '{') depth++;
    else if (c === ')' || c === ']' || c === '}') depth = Math.max(0, depth - 1);
    if (depth + unary > MAX_NESTING) {
      return problem(
        'cel-syntax',
        `the expression is nested too deeply: more than ${MAX_NESTING} levels of brackets and ! or - operators`,
        i + 1,
      );
    }
    i++;
  }
  return undefined;
}

interface AnyNode {
  op: string;
  args: unknown;
  start: number;
  end: number;
}

function isAstNode(value: unknown): value is AnyNode {
  return typeof value === 'object' && value !== null && typeof (value as AnyNode).op === 'string';
}

/** Every node of an AST, without recursion (its depth is bounded, but the stack is not ours). */
function allNodes(root: ASTNode): AnyNode[] {
  const out: AnyNode[] = [];
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const item = stack.pop();
    if (Array.isArray(item)) stack.push(...(item as unknown[]));
    else if (isAstNode(item)) {
      out.push(item);
      if (typeof item.args === 'object' && item.args !== null) stack.push(item.args);
    }
  }
  return out;
}

/**
 * Checks every `matches()` call and returns the source with each rewritten to the linear-time
 * implementation, or a problem.
 */
function prepareMatches(source: string, ast: ASTNode): string | ExpressionProblem {
  let rewritten = source;
  for (const node of allNodes(ast)) {
    if (node.op !== 'rcall' && node.op !== 'call') continue;
    const name = (node.args as [string])[0];
    if (name === LINEAR_MATCHES) {
      return problem('cel-type', `unknown function "${LINEAR_MATCHES}"`, node.start + 1);
    }
    if (name !== 'matches' || node.op !== 'rcall') continue;
    const [, receiver, callArgs] = node.args as [string, AnyNode, AnyNode[]];
    const pattern = callArgs[0];
    if (pattern?.op !== 'value' || typeof pattern.args !== 'string') {
      return problem(
        'cel-cost',
        'the pattern of matches() must be a string literal, so that it can be checked when the spec is submitted',
        (pattern?.start ?? node.start) + 1,
      );
    }
    if (!LINEAR_REGEXP_AVAILABLE) {
      return problem('cel-cost', 'matches() is not available on this server', node.start + 1);
    }
    try {
      new RegExp(pattern.args);
    } catch {
      return problem(
        'cel-type',
        `invalid regular expression ${JSON.stringify(pattern.args)}`,
        pattern.start + 1,
      );
    }
    try {
      linearRegExp(pattern.args);
    } catch {
      return problem(
        'cel-cost',
        'this pattern needs backtracking (backreferences or lookaround), which can take exponential time; ' +
          'use RE2 syntax',
        pattern.start + 1,
      );
    }
    // The method name follows the receiver: closing parentheses, trivia, ".", trivia, "matches".
    let i = receiver.end;
    for (i = skipTrivia(source, i); source[i] === ')'; i = skipTrivia(source, i + 1));
    if (source[i] === '.') i = skipTrivia(source, i + 1);
    if (!source.startsWith('matches', i)) {
      return problem(
        'cel-syntax',
        'could not read this matches() call; write it as text.matches("pattern")',
        node.start + 1,
      );
    }
    rewritten = rewritten.slice(0, i) + LINEAR_MATCHES + rewritten.slice(i + 'matches'.length);
  }
  return rewritten;
}

const ACCEPTED: Record<ExpectedResult, ReadonlySet<string> | undefined> = {
  bool: new Set(['bool', 'dyn']),
  string: new Set(['string', 'int', 'uint', 'dyn']),
  value: undefined,
};

const EXPECTATION: Record<ExpectedResult, string> = {
  bool: 'a bool (true or false)',
  string: 'a string (or an int, which is written in decimal)',
  value: 'a value',
};

function describeValue(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'bigint') return 'an int';
  if (typeof value === 'number') return 'a double';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') {
    const name = value.constructor?.name;
    if (name === 'UnsignedInt') return 'a uint';
    if (value instanceof Date) return 'a timestamp';
    return 'a map';
  }
  return `a ${typeof value}`;
}

/** Deepest nesting {@link toPlain} follows; event data can be nested deeper than any stack. */
const MAX_PLAIN_DEPTH = 256;

/** Converts a cel-js result into plain JS (see {@link CompiledExpression.evaluate}). */
export function toPlain(value: unknown, depth = 0): unknown {
  if (depth > MAX_PLAIN_DEPTH)
    throw new CelEvaluationError(`the result is nested deeper than ${MAX_PLAIN_DEPTH} levels`);
  if (typeof value === 'bigint')
    return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  if (value === null || typeof value !== 'object') return value;
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? null : value.toISOString();
  if (value instanceof Uint8Array)
    return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
  if (Array.isArray(value)) return value.map((v) => toPlain(v, depth + 1));
  if (value instanceof Map) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of value as Map<unknown, unknown>) {
      Object.defineProperty(out, String(toPlain(k, depth + 1)), {
        value: toPlain(v, depth + 1),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return out;
  }
  const name = value.constructor?.name;
  if (name === 'UnsignedInt') return toPlain(value.valueOf(), depth);
  if (name === 'Type') return (value as { name: string }).name;
  if (name === 'Duration') return (value as { toString(): string }).toString();
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    // defineProperty: a payload key "__proto__" must stay a key, not become the prototype.
    Object.defineProperty(out, k, {
      value: toPlain(v, depth + 1),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  }
  return out;
}

function toKey(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number' && Number.isInteger(value)) return String(value);
  if (typeof value === 'object' && value !== null && value.constructor?.name === 'UnsignedInt') {
    return (value.valueOf() as bigint).toString();
  }
  return undefined;
}

/** The activation of one event: its envelope without absent fields, `time` as a Date (dropped when not RFC 3339). */
export function celContext(event: CelEvent): CelContext {
  const envelope: Record<string, unknown> = {};
  for (const field of EVENT_FIELDS) {
    const value = event[field];
    if (value !== undefined && value !== null) envelope[field] = value;
  }
  if (typeof event.time === 'string') {
    const time = new Date(event.time);
    if (Number.isNaN(time.getTime())) delete envelope.time;
    else envelope.time = time;
  }
  return { event: envelope };
}

type Evaluate = (context: Record<string, unknown>) => unknown;

function evaluator(run: Evaluate, expected: ExpectedResult): (context: CelContext) => unknown {
  return (context) => {
    let raw: unknown;
    try {
      raw = run(context as unknown as Record<string, unknown>);
    } catch (err) {
      if (isCelError(err)) throw new CelEvaluationError(typeName(err.summary), columnOf(err), { cause: err });
      // Stack or memory exhaustion on a pathological payload: an error for this event, not a crash.
      const message = err instanceof Error ? err.message : String(err);
      throw new CelEvaluationError(`evaluation failed: ${message}`, undefined, { cause: err });
    }
    if (expected === 'bool') {
      if (typeof raw !== 'boolean')
        throw new CelEvaluationError(`must evaluate to a bool, got ${describeValue(raw)}`, 1);
      return raw;
    }
    if (expected === 'string') {
      const key = toKey(raw);
      if (key === undefined) {
        throw new CelEvaluationError(`must evaluate to a string or an integer, got ${describeValue(raw)}`, 1);
      }
      return key;
    }
    return toPlain(raw);
  };
}

/**
 * Compiles one CEL expression over `event`: checks its length, nesting, syntax, types, result
 * type against `expected` (`bool`: bool or dyn; `string`: string, int, uint or dyn; `value`:
 * anything) and worst-case cost, and returns an evaluator or the first problem with its column.
 * Never throws; takes well under 50 ms even for hostile input within the length limit.
 */
export function compileExpression(source: string, expected: ExpectedResult): CompileResult {
  if (typeof source !== 'string' || source.trim() === '')
    return problem('cel-syntax', 'the expression is empty', 1);
  if (source.length > MAX_EXPRESSION_LENGTH) {
    return problem(
      'cel-syntax',
      `the expression is ${source.length} characters long; at most ${MAX_EXPRESSION_LENGTH} are allowed`,
      MAX_EXPRESSION_LENGTH + 1,
    );
  }
  const nesting = checkNesting(source);
  if (nesting !== undefined) return nesting;

  let parsed: ReturnType<Environment['parse']>;
  try {
    parsed = environment.parse(source);
  } catch (err) {
    if (isCelError(err)) return problem('cel-syntax', explain(err), columnOf(err));
    return problem('cel-syntax', 'the expression is too complex to parse', 1);
  }
  let checked: ReturnType<typeof parsed.check>;
  try {
    checked = parsed.check();
  } catch {
    return problem('cel-type', 'the expression is too complex to type-check', 1);
  }
  if (!checked.valid || checked.type === undefined) {
    const err = checked.error;
    if (err === undefined) return problem('cel-type', 'the expression does not type-check', 1);
    return problem(err instanceof ParseError ? 'cel-syntax' : 'cel-type', explain(err), columnOf(err));
  }
  const type = typeName(checked.type);
  const accepted = ACCEPTED[expected];
  if (accepted !== undefined && !accepted.has(checked.type)) {
    return problem(
      'cel-type',
      `must evaluate to ${EXPECTATION[expected]}, but this expression gives ${type}`,
      1,
    );
  }

  const rewritten = prepareMatches(source, parsed.ast);
  if (typeof rewritten !== 'string') return rewritten;

  const typical = estimateCost(parsed.ast, { eventSize: TYPICAL_EVENT_BYTES });
  const largest = estimateCost(parsed.ast, { eventSize: MAX_EVENT_BYTES });
  if (typical.reason !== undefined)
    return problem('cel-cost', `too expensive to evaluate: ${typical.reason}`, 1);
  if (typical.cost > COST_LIMIT_TYPICAL) {
    return problem(
      'cel-cost',
      `too expensive to evaluate: about ${formatCount(typical.cost)} steps per event (at most ` +
        `${formatCount(COST_LIMIT_TYPICAL)}); avoid nested loops (map, filter, all, exists) and values ` +
        'repeated with cel.bind',
      1,
    );
  }
  if (largest.cost > COST_LIMIT_LARGEST) {
    return problem(
      'cel-cost',
      `too expensive to evaluate: on a ${MAX_EVENT_BYTES / 1024 / 1024} MiB event it could take about ` +
        `${formatCount(largest.cost)} steps (at most ${formatCount(COST_LIMIT_LARGEST)}); its work grows faster than ` +
        'the event: avoid loops over event data inside other loops and values that double with cel.bind',
      1,
    );
  }

  const runnable = rewritten === source ? parsed : environment.parse(rewritten);
  // Checking once fixes the overloads, so evaluation does not type-check on every call.
  if (runnable !== parsed) runnable.check();
  const evaluateIn = evaluator(runnable as Evaluate, expected);
  return {
    ok: true,
    type,
    cost: { typical: typical.cost, largest: largest.cost },
    evaluate: (event: CelEvent) => evaluateIn(celContext(event)),
    evaluateIn,
  };
}

function formatCount(n: number): string {
  if (!Number.isFinite(n)) return 'unboundedly many';
  if (n >= 1e9) return `${(n / 1e9).toPrecision(3)} billion`;
  if (n >= 1e6) return `${(n / 1e6).toPrecision(3)} million`;
  return String(Math.round(n));
}
