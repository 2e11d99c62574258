import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  COST_LIMIT_LARGEST,
  LINEAR_REGEXP_AVAILABLE,
  MAX_NESTING,
  compileExpression,
  type CelEvent,
  type CompileResult,
  type CompiledExpression,
  type ExpectedResult,
  type ExpressionProblem,
} from '../lib/validation/cel.ts';
import { CelEvaluationError } from '../lib/validation/cel-evaluation-error.ts';

const EVENT: CelEvent = {
  id: 'evt-1',
  source: 'shop',
  type: 'OrderCancelled',
  offset: '1714557600000-3',
  time: '2024-05-01T10:00:00Z',
  subject: 'order-17',
  datacontenttype: 'application/json',
  data: {
    region: 'EU',
    amount: 150.5,
    customerId: 'c-42',
    count: 3,
    items: [
      { sku: 'a', qty: 1 },
      { sku: 'b', qty: 5 },
    ],
  },
};

function compiled(source: string, expected: ExpectedResult): CompiledExpression {
  const result = compileExpression(source, expected);
  assert.ok(result.ok, `expected ${JSON.stringify(source)} to compile: ${result.ok ? '' : result.message}`);
  return result;
}

function rejected(result: CompileResult): ExpressionProblem {
  if (result.ok) assert.fail('expected the expression to be rejected');
  return result;
}

describe('compileExpression: evaluation', () => {
  it('evaluates the DESIGN.md filter, key and fields on a sample event', () => {
    const filter = compiled("event.data.region == 'EU' && event.data.amount > 100", 'bool');
    assert.equal(filter.type, 'bool');
    assert.equal(filter.evaluate(EVENT), true);
    assert.equal(filter.evaluate({ ...EVENT, data: { region: 'US', amount: 500 } }), false);
    assert.equal(filter.evaluate({ ...EVENT, data: { region: 'EU', amount: 50 } }), false);

    const key = compiled('event.data.customerId', 'string');
    assert.equal(key.evaluate(EVENT), 'c-42');

    const status = compiled("event.type == 'OrderCancelled' ? 'cancelled' : 'open'", 'value');
    assert.equal(status.type, 'string');
    assert.equal(status.evaluate(EVENT), 'cancelled');
    assert.equal(status.evaluate({ ...EVENT, type: 'OrderPlaced' }), 'open');

    assert.equal(compiled('event.data.amount', 'value').evaluate(EVENT), 150.5);
  });

  it('returns plain JS values', () => {
    assert.equal(compiled('int(event.data.count) + 1', 'value').evaluate(EVENT), 4);
    assert.equal(compiled('9223372036854775807', 'value').evaluate(EVENT), '9223372036854775807');
    assert.equal(compiled('event.time', 'value').evaluate(EVENT), '2024-05-01T10:00:00.000Z');
    assert.equal(compiled('duration("90m")', 'value').evaluate(EVENT), '5400s');
    assert.equal(compiled('b"hi"', 'value').evaluate(EVENT), 'aGk=');
    assert.equal(compiled('2u', 'value').evaluate(EVENT), 2);
    assert.deepEqual(compiled('{"a": [1, 2]}', 'value').evaluate(EVENT), { a: [1, 2] });
    assert.deepEqual(compiled('event.data.items.map(i, i.sku)', 'value').evaluate(EVENT), ['a', 'b']);
    assert.deepEqual(compiled('event.data.items.filter(i, i.qty > 2.0)', 'value').evaluate(EVENT), [
      { sku: 'b', qty: 5 },
    ]);
    const envelope = compiled('event', 'value').evaluate(EVENT) as Record<string, unknown>;
    assert.equal(envelope.subject, 'order-17');
    assert.equal(envelope.time, '2024-05-01T10:00:00.000Z');
  });

  it('types event.time as a timestamp', () => {
    const recent = compiled("event.time > timestamp('2024-01-01T00:00:00Z')", 'bool');
    assert.equal(recent.evaluate(EVENT), true);
    assert.equal(recent.evaluate({ ...EVENT, time: '2023-06-01T00:00:00Z' }), false);
    assert.equal(compiled('event.time.getFullYear()', 'value').evaluate(EVENT), 2024);
    assert.equal(rejected(compileExpression("event.time > '2024'", 'bool')).kind, 'cel-type');
  });

  it('writes integer keys in decimal', () => {
    assert.equal(compiled('event.data.count', 'string').evaluate(EVENT), '3');
    assert.equal(compiled('int(event.data.count) * 2', 'string').evaluate(EVENT), '6');
  });

  it('treats absent optional envelope fields as absent', () => {
    const has = compiled('has(event.subject)', 'bool');
    assert.equal(has.evaluate(EVENT), true);
    assert.equal(has.evaluate({ ...EVENT, subject: undefined }), false);
  });

  it('throws CelEvaluationError for events that do not fit', () => {
    const missing = compiled('event.data.nope', 'value');
    assert.throws(
      () => missing.evaluate(EVENT),
      (err: unknown) =>
        err instanceof CelEvaluationError && /nope/.test(err.message) && err.expressionColumn === 12,
    );
    assert.throws(() => compiled('event.data.region', 'bool').evaluate(EVENT), CelEvaluationError);
    assert.throws(() => compiled('event.data.items', 'string').evaluate(EVENT), CelEvaluationError);
    assert.throws(() => compiled('int(event.data.count) / 0', 'value').evaluate(EVENT), CelEvaluationError);
  });

  it('keeps a payload key "__proto__" a plain key', () => {
    const data = JSON.parse('{"__proto__": {"polluted": true}}') as unknown;
    const result = compiled('event.data', 'value').evaluate({ ...EVENT, data }) as Record<string, unknown>;
    assert.ok(Object.hasOwn(result, '__proto__'));
    assert.equal(Object.getPrototypeOf(result), Object.prototype);
  });
});

describe('compileExpression: rejections', () => {
  it('reports a syntax error with its column and no source snippet', () => {
    const problem = rejected(compileExpression("event.data.region = 'EU'", 'bool'));
    assert.equal(problem.kind, 'cel-syntax');
    assert.equal(problem.column, 19);
    assert.match(problem.message, /==/);
    assert.doesNotMatch(problem.message, /\n/);
  });

  it('reports an unfinished expression at its end', () => {
    const problem = rejected(compileExpression("event.type == 'a' &&", 'bool'));
    assert.equal(problem.kind, 'cel-syntax');
    assert.equal(problem.column, 21);
  });

  it('reports unknown fields of event and unknown variables', () => {
    const field = rejected(compileExpression('event.nope == 1', 'bool'));
    assert.equal(field.kind, 'cel-type');
    assert.equal(field.column, 7);
    assert.match(field.message, /event has no field "nope"/);
    const variable = rejected(compileExpression('order.id', 'value'));
    assert.match(variable.message, /unknown name "order"/);
    assert.equal(variable.column, 1);
  });

  it('reports type errors', () => {
    const problem = rejected(compileExpression('event.type + 1', 'value'));
    assert.equal(problem.kind, 'cel-type');
    assert.match(problem.message, /string \+ int/);
  });

  it('checks the result type: filters and tombstones are bool, keys string-like', () => {
    assert.match(
      rejected(compileExpression('event.type', 'bool')).message,
      /must evaluate to a bool.*gives string/,
    );
    assert.match(rejected(compileExpression('1 + 2', 'bool')).message, /gives int/);
    assert.match(rejected(compileExpression('event.time', 'string')).message, /gives timestamp/);
    assert.match(rejected(compileExpression('1.5', 'string')).message, /gives double/);
    assert.equal(rejected(compileExpression('[event.id]', 'string')).kind, 'cel-type');
    // dyn is accepted: data is dynamic, so its type is only known per event.
    assert.equal(compiled('event.data.flag', 'bool').type, 'dyn');
    assert.equal(compiled('event.data.id', 'string').type, 'dyn');
    assert.equal(compiled('7u', 'string').type, 'uint');
    assert.equal(compiled('[1, 2]', 'value').type, 'list<int>');
  });

  it('rejects empty and over-long expressions', () => {
    assert.equal(rejected(compileExpression('   ', 'bool')).kind, 'cel-syntax');
    const long = rejected(compileExpression(`event.id == '${'x'.repeat(5000)}'`, 'bool'));
    assert.match(long.message, /at most 4096/);
  });
});

describe('compileExpression: hostile expressions', () => {
  // Each must be rejected (or bounded) without a RangeError escaping and without hanging.
  const nested = (open: string, inner: string, close: string, n: number) =>
    open.repeat(n) + inner + close.repeat(n);

  it('rejects 10,000 nested parentheses clearly', () => {
    const problem = rejected(compileExpression(nested('(', 'true', ')', 10_000), 'bool'));
    assert.equal(problem.kind, 'cel-syntax');
  });

  it('rejects nesting beyond the limit within the length limit, at the first level too deep', () => {
    for (const [open, inner, close] of [
      ['(', 'true', ')'],
      ['[', '', ']'],
      ['{1: ', '1', '}'],
      ['size(', '"a"', ')'],
    ]) {
      const problem = rejected(compileExpression(nested(open, inner, close, 300), 'value'));
      assert.equal(problem.kind, 'cel-syntax');
      assert.match(problem.message, /nested too deeply/);
    }
    const problem = rejected(compileExpression(nested('(', '1', ')', MAX_NESTING + 1), 'value'));
    assert.equal(problem.column, MAX_NESTING + 1);
    assert.equal(compiled(nested('(', '1', ')', MAX_NESTING - 1), 'value').evaluate(EVENT), 1);
  });

  it('rejects long runs of unary operators, which cel-js does not count as depth', () => {
    for (const source of [
      '!'.repeat(4000) + 'true',
      '!'.repeat(10_000) + 'true',
      '-'.repeat(4000) + '1',
      '! '.repeat(2000) + 'true',
    ]) {
      const problem = rejected(compileExpression(source, 'value'));
      assert.equal(problem.kind, 'cel-syntax');
    }
    assert.equal(compiled('!!!!true', 'bool').evaluate(EVENT), true);
  });

  it('rejects deep member and index chains', () => {
    assert.equal(rejected(compileExpression('event.data' + '.a'.repeat(1500), 'value')).kind, 'cel-syntax');
    assert.equal(rejected(compileExpression('event.data' + '["a"]'.repeat(700), 'value')).kind, 'cel-syntax');
  });

  it('rejects expressions with too many nodes, accepts long flat chains', () => {
    assert.match(rejected(compileExpression(Array(2000).fill('1').join('+'), 'value')).message, /too large/);
    const chain = Array(400)
      .fill("event.type == 'x'")
      .join(' || ')
      .slice(0, 4096)
      .replace(/ \|\| [^|]*$/, '');
    assert.equal(compiled(chain, 'bool').evaluate(EVENT), false);
  });

  it('ignores brackets inside string literals and comments when counting nesting', () => {
    const brackets = '('.repeat(200);
    assert.equal(
      compiled(`event.id == "${brackets}" // ${brackets}\n|| event.id == '''${brackets}'''`, 'bool').evaluate(
        EVENT,
      ),
      false,
    );
  });

  it('rejects nested loops whose cost explodes', () => {
    const inner = '[1,2,3,4,5,6,7,8,9,10]';
    const deep = `${inner}.map(a, ${inner}.map(b, ${inner}.map(c, ${inner}.map(d, ${inner}.map(e, ${inner}.map(f, a))))))`;
    assert.equal(rejected(compileExpression(deep, 'value')).kind, 'cel-cost');
    const bigList = `[${Array(1000).fill('1').join(',')}]`;
    assert.equal(
      rejected(compileExpression(`${bigList}.map(a, ${bigList}.map(b, a + b))`, 'value')).kind,
      'cel-cost',
    );
    assert.equal(
      rejected(compileExpression('event.data.items.map(x, event.data.items.map(y, y))', 'value')).kind,
      'cel-cost',
    );
    assert.equal(
      rejected(compileExpression('event.data.items.map(x, event.data.text).join()', 'value')).kind,
      'cel-cost',
    );
    // A small nested literal loop and a loop over a sub-list of each element are fine.
    assert.deepEqual(compiled('[1,2,3].map(x, [1,2,3].map(y, x * y))', 'value').evaluate(EVENT), [
      [1, 2, 3],
      [2, 4, 6],
      [3, 6, 9],
    ]);
    assert.equal(
      compiled("event.data.items.exists(i, i.tags.exists(t, t == 'x'))", 'bool').cost.largest <
        COST_LIMIT_LARGEST,
      true,
    );
  });

  it('rejects strings that double with cel.bind', () => {
    const bomb =
      'cel.bind(a, "aaaaaaaaaa", cel.bind(b, a+a+a+a+a+a+a+a+a+a, cel.bind(c, b+b+b+b+b+b+b+b+b+b, ' +
      'cel.bind(d, c+c+c+c+c+c+c+c+c+c, cel.bind(e, d+d+d+d+d+d+d+d+d+d, e+e+e+e+e+e+e+e+e+e)))))';
    assert.equal(rejected(compileExpression(bomb, 'value')).kind, 'cel-cost');
    assert.equal(compiled('cel.bind(r, event.data.region, r + "-" + r)', 'value').evaluate(EVENT), 'EU-EU');
  });

  it(
    'runs matches() in linear time and rejects patterns it cannot check',
    { skip: !LINEAR_REGEXP_AVAILABLE },
    () => {
      const redos = compiled('event.data.text.matches("(a+)+$")', 'bool');
      assert.equal(redos.evaluate({ ...EVENT, data: { text: 'a'.repeat(5000) + '!' } }), false);
      assert.equal(redos.evaluate({ ...EVENT, data: { text: 'aaa' } }), true);
      // The rewrite keeps run-time error columns in place.
      const source = 'event.data.text.matches("^a") && event.data.nope';
      assert.throws(
        () => compiled(source, 'bool').evaluate({ ...EVENT, data: { text: 'a' } }),
        (err: unknown) =>
          err instanceof CelEvaluationError && err.expressionColumn === source.indexOf('nope') + 1,
      );
      assert.equal(compiled("event.type.matches('^Order(Placed|Cancelled)$')", 'bool').evaluate(EVENT), true);
      assert.equal(
        rejected(compileExpression('event.data.text.matches(event.data.pattern)', 'bool')).kind,
        'cel-cost',
      );
      assert.equal(
        rejected(compileExpression('event.data.text.matches("(a)\\\\1")', 'bool')).kind,
        'cel-cost',
      );
      assert.equal(rejected(compileExpression('event.data.text.matches("[")', 'bool')).kind, 'cel-type');
      assert.equal(rejected(compileExpression('event.type.rematch("a")', 'bool')).kind, 'cel-type');
    },
  );

  it('never throws, whatever the input', () => {
    const inputs = [
      '"unterminated',
      "'''",
      '\u0000',
      ')'.repeat(5000).slice(0, 4096),
      '[' + '1,'.repeat(1500) + '1]',
      '{' + Array.from({ length: 1100 }, (_, i) => `${i}: 1`).join(', ') + '}',
      'a'.repeat(4096),
      'f(' + Array(40).fill('1').join(',') + ')',
    ];
    for (const source of inputs) assert.doesNotThrow(() => compileExpression(source, 'value'));
  });
});
