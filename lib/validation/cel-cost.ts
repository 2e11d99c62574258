/**
 * A static, worst-case cost estimate for a parsed CEL expression, so that an expression which
 * would take seconds or gigabytes per event is rejected when the spec is submitted rather than
 * stalling every pipeline worker at run time. cel-js has no run-time budget, so this is the
 * only guard.
 *
 * The model: every value has a `size` (an upper bound on its characters/bytes/elements,
 * flattened) and every node a `cost` (an upper bound on evaluation steps, copying a value of
 * size n counting n). Inputs (`event.*`) are assumed as large as the largest event. What is
 * linear in the event's size is fine (parsing the event is already linear); what is
 * super-linear shows up as a huge number:
 * - a comprehension (`all`, `exists`, `exists_one`, `map`, `filter`) costs
 *   `n · cost(body with an empty element) + (cost(body with the whole range as its element) −
 *   cost(body with an empty element))`: the sizes of the elements add up to the size of the
 *   range, so work proportional to an element's size is counted once in total, while work
 *   independent of it (such as a nested loop over the whole event) is counted n times;
 * - `cel.bind` lets a value be used many times, so `a + a` doubles its size at every level;
 * - `matches` runs on V8's linear-time engine: text size times pattern length.
 */

/** What the estimator assumes about the input. */
export interface CostAssumptions {
  /** Largest size (bytes, characters or elements) of anything read from `event`. */
  eventSize: number;
}

/** The estimate for one expression at one assumed event size. */
export interface CostEstimate {
  /** Upper bound on evaluation steps. */
  cost: number;
  /** Upper bound on the size of the result. */
  size: number;
  /** Set when the estimator gave up (cost is then Infinity): why. */
  reason?: string;
}

/** The comprehension macros: a receiver list or map, an iteration variable and a body. */
const COMPREHENSIONS = new Set(['all', 'exists', 'exists_one', 'map', 'filter']);

/** Functions whose result is at most as large as their receiver or first argument. */
const SAME_SIZE = new Set([
  'lowerAscii',
  'upperAscii',
  'trim',
  'substring',
  'string',
  'bytes',
  'dyn',
  'json',
  'value',
  'orValue',
]);

/** Functions whose result is a number, bool, timestamp or duration: constant size. */
const SCALAR_RESULT = new Set([
  'size',
  'contains',
  'startsWith',
  'endsWith',
  'indexOf',
  'lastIndexOf',
  'int',
  'uint',
  'double',
  'bool',
  'type',
  'timestamp',
  'duration',
  'at',
  'hasValue',
  'has',
]);

/** The slice of cel-js's AST node this module reads. */
interface Node {
  readonly op: string;
  readonly args: unknown;
}

interface Value {
  cost: number;
  size: number;
}

type Scope = ReadonlyMap<string, number>;

/** Most comprehensions nested in each other; each level doubles the estimator's own work. */
export const MAX_COMPREHENSION_NESTING = 6;

const SMALL = 1;

function isNode(value: unknown): value is Node {
  return typeof value === 'object' && value !== null && typeof (value as Node).op === 'string';
}

function literalSize(value: unknown): number {
  if (typeof value === 'string') return Math.max(value.length, SMALL);
  if (value instanceof Uint8Array) return Math.max(value.length, SMALL);
  return SMALL;
}

class Estimator {
  readonly #eventSize: number;
  #nesting = 0;
  /** Why the estimate was abandoned, if it was. */
  gaveUp: string | undefined;

  constructor(assumptions: CostAssumptions) {
    this.#eventSize = assumptions.eventSize;
  }

  run(node: Node, scope: Scope): Value {
    const value = this.#run(node, scope);
    // Where the checker proved a number, bool, timestamp or duration, its size is constant.
    if (hasScalarType(node)) value.size = SMALL;
    return value;
  }

  #run(node: Node, scope: Scope): Value {
    const args = node.args;
    switch (node.op) {
      case 'value':
        return { cost: 1, size: literalSize(args) };
      case 'id':
        return { cost: 1, size: scope.get(args as string) ?? (args === 'event' ? this.#eventSize : SMALL) };
      case '.':
      case '.?': {
        const [target] = args as [Node, string];
        const t = this.run(target, scope);
        return { cost: t.cost + 1, size: t.size };
      }
      case '[]':
      case '[?]': {
        const [target, index] = args as [Node, Node];
        const t = this.run(target, scope);
        const i = this.run(index, scope);
        return { cost: t.cost + i.cost + 1, size: t.size };
      }
      case 'list': {
        const items = (args as Node[]).map((n) => this.run(n, scope));
        return { cost: sum(items, 'cost') + items.length + 1, size: sum(items, 'size') + items.length + 1 };
      }
      case 'map': {
        const entries = (args as [Node, Node][]).flatMap(([k, v]) => [
          this.run(k, scope),
          this.run(v, scope),
        ]);
        return {
          cost: sum(entries, 'cost') + entries.length + 1,
          size: sum(entries, 'size') + entries.length + 1,
        };
      }
      case '!_':
      case '-_': {
        const v = this.run(args as Node, scope);
        return { cost: v.cost + 1, size: v.size };
      }
      case '&&':
      case '||': {
        const [a, b] = (args as [Node, Node]).map((n) => this.run(n, scope));
        return { cost: a.cost + b.cost + 1, size: SMALL };
      }
      case '?:': {
        const [c, t, f] = (args as [Node, Node, Node]).map((n) => this.run(n, scope));
        return { cost: c.cost + Math.max(t.cost, f.cost) + 1, size: Math.max(t.size, f.size) };
      }
      case '+': {
        // Lists are copied on concatenation (strings are not: V8 builds ropes, but they are
        // flattened later, so their size still counts). Numbers add in one step.
        const [a, b] = (args as [Node, Node]).map((n) => this.run(n, scope));
        if (hasScalarType(node)) return { cost: a.cost + b.cost + 1, size: SMALL };
        return { cost: a.cost + b.cost + a.size + b.size, size: a.size + b.size };
      }
      case '==':
      case '!=':
      case '<':
      case '<=':
      case '>':
      case '>=': {
        // Comparisons stop at the shorter side (different lengths are unequal at once).
        const [a, b] = (args as [Node, Node]).map((n) => this.run(n, scope));
        return { cost: a.cost + b.cost + Math.min(a.size, b.size) + 1, size: SMALL };
      }
      case 'in': {
        // Membership compares the needle with each element: at most the whole haystack once.
        const [a, b] = (args as [Node, Node]).map((n) => this.run(n, scope));
        return { cost: a.cost + b.cost + b.size + 1, size: SMALL };
      }
      case '-':
      case '*':
      case '/':
      case '%': {
        const [a, b] = (args as [Node, Node]).map((n) => this.run(n, scope));
        return { cost: a.cost + b.cost + 1, size: SMALL };
      }
      case 'call': {
        const [name, callArgs] = args as [string, Node[]];
        if (name === 'has') return { cost: this.run(callArgs[0], scope).cost + 1, size: SMALL };
        return this.#call(name, undefined, callArgs, scope);
      }
      case 'rcall': {
        const [name, receiver, callArgs] = args as [string, Node, Node[]];
        if (
          COMPREHENSIONS.has(name) &&
          callArgs.length >= 2 &&
          isNode(callArgs[0]) &&
          callArgs[0].op === 'id'
        ) {
          return this.#comprehension(name, receiver, callArgs, scope);
        }
        if (name === 'bind' && isNode(receiver) && receiver.op === 'id' && receiver.args === 'cel') {
          const [variable, init, body] = callArgs;
          const i = this.run(init, scope);
          const b = this.run(body, new Map(scope).set(variable.args as string, i.size));
          return { cost: i.cost + b.cost + 1, size: b.size };
        }
        return this.#call(name, receiver, callArgs, scope);
      }
      default:
        // An operator this model does not know: count its operands as if it copied them all.
        return this.#unknown(args, scope);
    }
  }

  #unknown(args: unknown, scope: Scope): Value {
    const children = (Array.isArray(args) ? args.flat() : [args])
      .filter(isNode)
      .map((n) => this.run(n, scope));
    const size = sum(children, 'size');
    return { cost: sum(children, 'cost') + size + 1, size: size + 32 };
  }

  #call(name: string, receiver: Node | undefined, callArgs: Node[], scope: Scope): Value {
    const all = (receiver === undefined ? callArgs : [receiver, ...callArgs]).map((n) => this.run(n, scope));
    const cost = sum(all, 'cost');
    const first = all[0]?.size ?? SMALL;
    const total = sum(all, 'size');
    if (name === 'matches') {
      // Runs on the linear-time engine: each character of the text against each pattern position.
      const pattern = all[1]?.size ?? SMALL;
      return { cost: cost + first * (pattern + 1), size: SMALL };
    }
    if (SCALAR_RESULT.has(name)) return { cost: cost + total, size: SMALL };
    if (SAME_SIZE.has(name)) return { cost: cost + first, size: first + 32 };
    if (name === 'join') {
      const separator = all[1]?.size ?? 0;
      const size = first + first * separator;
      return { cost: cost + size, size };
    }
    if (name === 'split' || name === 'hex' || name === 'base64')
      return { cost: cost + 2 * first, size: 2 * first + 4 };
    return { cost: cost + total + 1, size: total + 32 };
  }

  #comprehension(name: string, receiver: Node, callArgs: Node[], scope: Scope): Value {
    if (this.#nesting >= MAX_COMPREHENSION_NESTING) {
      this.gaveUp = `more than ${MAX_COMPREHENSION_NESTING} comprehensions are nested in each other`;
      return { cost: Infinity, size: Infinity };
    }
    this.#nesting++;
    try {
      const range = this.run(receiver, scope);
      const variable = (callArgs[0] as Node & { args: string }).args;
      const n = range.size;
      const body = callArgs.slice(1);
      const empty = new Map(scope).set(variable, 0);
      const whole = new Map(scope).set(variable, range.size);
      let cost = range.cost + n;
      let size = SMALL;
      body.forEach((part, i) => {
        const e = this.run(part, empty);
        const w = this.run(part, whole);
        cost += n * e.cost + Math.max(w.cost - e.cost, 0);
        const isResult = (name === 'map' && i === body.length - 1) || name === 'filter';
        if (name === 'map' && isResult) size = n * (e.size + 1) + Math.max(w.size - e.size, 0);
      });
      if (name === 'filter') size = range.size;
      return { cost, size };
    } finally {
      this.#nesting--;
    }
  }
}

/** Types whose values have a small, fixed size. */
const SCALAR_TYPES = new Set([
  'int',
  'uint',
  'double',
  'bool',
  'null',
  'google.protobuf.Timestamp',
  'google.protobuf.Duration',
]);

/** True when cel-js's checker annotated the node with a scalar type (it does not for every node). */
function hasScalarType(node: Node): boolean {
  const name = (node as { checkedType?: { name?: unknown } }).checkedType?.name;
  return typeof name === 'string' && SCALAR_TYPES.has(name);
}

function sum(values: Value[], key: keyof Value): number {
  let total = 0;
  for (const v of values) total += v[key];
  return total;
}

/**
 * Estimates the worst-case cost and result size of a parsed expression (cel-js AST) under the
 * given assumptions. Numbers may overflow to Infinity; for more than
 * {@link MAX_COMPREHENSION_NESTING} nested comprehensions the cost is Infinity and `reason` says so.
 */
export function estimateCost(ast: unknown, assumptions: CostAssumptions): CostEstimate {
  if (!isNode(ast)) return { cost: 1, size: SMALL };
  const estimator = new Estimator(assumptions);
  const { cost, size } = estimator.run(ast, new Map());
  if (estimator.gaveUp !== undefined) return { cost: Infinity, size: Infinity, reason: estimator.gaveUp };
  return { cost, size };
}
