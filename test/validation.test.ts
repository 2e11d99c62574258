import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parse as parseYaml } from 'yaml';
import type { DataProduct } from '../crds/generated/types.ts';
import { isOfftakeError, type ErrorCode, type OfftakeError } from '../lib/errors.ts';
import { escapePointerToken } from '../lib/validation/parse-document.ts';
import { KEY_COLUMN, OFFSET_COLUMN, checkSemantics, specExpressions } from '../lib/validation/semantic.ts';
import { DataProductValidator, MAX_REPORTED_ERRORS, validateName } from '../lib/validation/validator.ts';

/** The DataProduct from DESIGN.md, metadata and spec exactly as written there (no status). */
const DESIGN_YAML = `apiVersion: offtake.dev/v1alpha1
kind: DataProduct
metadata: {name: eu-big-orders, namespace: checkout}
spec:
  source:
    streams: [orders]
    types: [OrderPlaced, OrderCancelled]        # optional
    startFrom: earliest                         # earliest | latest | {time: ...} | {offset: ...}
  filter: "event.data.region == 'EU' && event.data.amount > 100"
  transform:
    key: event.data.customerId
    fields:
      customer: event.data.customerId
      amount: event.data.amount
      status: "event.type == 'OrderCancelled' ? 'cancelled' : 'open'"
  target:
    type: postgres                              # redis | postgres | topic
    placement: shared                           # shared | dedicated
    postgres: {table: eu_big_orders, columns: {customer: text, amount: numeric, status: text}}
  deletionPolicy: Delete                        # Delete | Retain
`;

const validator = new DataProductValidator();

function designProduct(): DataProduct {
  return parseYaml(DESIGN_YAML) as DataProduct;
}

function redisProduct(): DataProduct {
  return {
    apiVersion: 'offtake.dev/v1alpha1',
    kind: 'DataProduct',
    metadata: { name: 'orders-cache', namespace: 'checkout' },
    spec: {
      source: { streams: ['orders'] },
      transform: { key: 'event.data.id', fields: { total: 'event.data.total' } },
      target: { type: 'redis' },
    },
  };
}

function rejection(fn: () => unknown, code: ErrorCode = 'invalid-spec'): OfftakeError {
  try {
    fn();
  } catch (err) {
    assert.ok(isOfftakeError(err), `expected an OfftakeError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected ${code}, but the document was accepted`);
}

function pointers(err: OfftakeError): string[] {
  return err.errors.map((e) => e.pointer);
}

describe('DataProductValidator: valid documents', () => {
  it('accepts the DESIGN.md example exactly as written', () => {
    const product = validator.validateText(DESIGN_YAML, 'yaml');
    assert.deepEqual(product, designProduct());
  });

  it('accepts the same document as JSON', () => {
    const product = validator.validateText(JSON.stringify(designProduct(), null, 2), 'json');
    assert.deepEqual(product, designProduct());
  });

  it('applies schema defaults to a copy and leaves the input alone', () => {
    const input = redisProduct();
    const before = structuredClone(input);
    const product = validator.validateObject(input);
    assert.deepEqual(input, before);
    assert.equal(product.spec.target.placement, 'shared');
    assert.equal(product.spec.deletionPolicy, 'Delete');
    assert.equal(product.spec.source.startFrom, 'earliest');
  });

  it('accepts every startFrom shape and each target type', () => {
    for (const startFrom of [
      'latest',
      { time: '2024-05-01T10:00:00Z' },
      { offset: '1714557600000-0' },
    ] as const) {
      const p = redisProduct();
      p.spec.source.startFrom = startFrom;
      validator.validateObject(p);
    }
    const topic = redisProduct();
    topic.spec.target = { type: 'topic', topic: { stream: 'checkout.big-orders' } };
    validator.validateObject(topic);
    const redis = redisProduct();
    redis.spec.target = { type: 'redis', redis: { format: 'json', ttlSeconds: 3600 } };
    redis.spec.transform.tombstone = "event.type == 'OrderDeleted'";
    validator.validateObject(redis);
  });

  it('accepts dedicated placement when the server allows it', () => {
    const p = designProduct();
    p.spec.target.placement = 'dedicated';
    assert.equal(
      new DataProductValidator({ allowDedicated: true }).validateObject(p).spec.target.placement,
      'dedicated',
    );
    const err = rejection(() => validator.validateObject(p));
    assert.deepEqual(pointers(err), ['/spec/target/placement']);
    assert.match(err.errors[0].message, /Kubernetes mode/);
  });
});

describe('DataProductValidator: reporting', () => {
  it('reports all three problems of a spec, each with pointer, line and column', () => {
    const text = [
      'apiVersion: offtake.dev/v1alpha1',
      'kind: DataProduct',
      'metadata:',
      '  name: Big_Orders',
      'spec:',
      '  source:',
      '    streams: [orders]',
      '  filter: "event.data.amount >"',
      '  transform:',
      '    key: event.data.id',
      '  target:',
      '    type: redis',
      '    ttl: 60',
      '',
    ].join('\n');
    const err = rejection(() => validator.validateText(text, 'yaml'));
    assert.match(err.message, /^3 problems/);
    assert.deepEqual(
      err.errors.map((e) => [e.pointer, e.line, e.column, e.kind]),
      [
        ['/metadata/name', 4, 3, 'name'],
        ['/spec/filter', 8, 3, 'cel-syntax'],
        ['/spec/target/ttl', 13, 5, 'schema'],
      ],
    );
    assert.match(err.errors[0].message, /"B" at position 1 is not allowed/);
    assert.equal(err.errors[1].expressionColumn, 20);
    assert.equal(
      err.errors[2].message,
      'unknown field "ttl"; allowed here: type, placement, redis, postgres, topic',
    );
  });

  it('reports a wrong type deep in a JSON spec with its line and column', () => {
    const text = [
      '{',
      '  "apiVersion": "offtake.dev/v1alpha1",',
      '  "kind": "DataProduct",',
      '  "metadata": {"name": "orders-cache"},',
      '  "spec": {',
      '    "source": {"streams": ["orders"]},',
      '    "transform": {"key": "event.data.id"},',
      '    "target": {"type": "redis", "redis": {"ttlSeconds": "3600"}}',
      '  }',
      '}',
    ].join('\n');
    const err = rejection(() => validator.validateText(text, 'json'));
    assert.equal(err.errors.length, 1);
    assert.deepEqual(err.errors[0], {
      pointer: '/spec/target/redis/ttlSeconds',
      message: 'must be an integer, not the string "3600"',
      kind: 'schema',
      line: 8,
      column: 43,
    });
  });

  it('points at an unknown field itself and suggests the near miss', () => {
    const p = redisProduct() as unknown as { spec: Record<string, unknown> };
    p.spec.filtr = 'true';
    const err = rejection(() => validator.validateObject(p));
    assert.deepEqual(err.errors, [
      { pointer: '/spec/filtr', message: 'unknown field "filtr"; did you mean "filter"?', kind: 'schema' },
    ]);
  });

  it('points at a missing required field and lists allowed enum values', () => {
    const p = redisProduct() as unknown as {
      spec: { transform: Record<string, unknown>; target: Record<string, unknown> };
    };
    delete p.spec.transform.key;
    p.spec.target.type = 'mysql';
    const err = rejection(() => validator.validateObject(p));
    assert.deepEqual(pointers(err), ['/spec/transform/key', '/spec/target/type']);
    assert.equal(err.errors[0].message, 'missing required field "key"');
    assert.match(err.errors[1].message, /must be one of: redis, postgres, topic \(got the string "mysql"\)/);
  });

  it('collapses the startFrom union into one clear message, or the error of the matching shape', () => {
    const p = redisProduct();
    (p.spec.source as { startFrom: unknown }).startFrom = 'yesterday';
    const err = rejection(() => validator.validateObject(p));
    assert.deepEqual(err.errors, [
      {
        pointer: '/spec/source/startFrom',
        message: 'startFrom must be earliest, latest, {time: <RFC 3339>} or {offset: <offset>}',
        kind: 'schema',
      },
    ]);
    p.spec.source.startFrom = { time: 'last tuesday' };
    const timeErr = rejection(() => validator.validateObject(p));
    assert.deepEqual(pointers(timeErr), ['/spec/source/startFrom/time']);
    assert.match(timeErr.errors[0].message, /RFC 3339/);
  });

  it('does not compile CEL that the schema already rejected', () => {
    const p = redisProduct() as unknown as { spec: Record<string, unknown> };
    p.spec.filter = 42;
    const err = rejection(() => validator.validateObject(p));
    assert.deepEqual(
      err.errors.map((e) => [e.pointer, e.kind]),
      [['/spec/filter', 'schema']],
    );
  });

  it('rejects a 10,000-deep expression clearly, through the schema and the CEL layer', () => {
    const p = redisProduct();
    p.spec.filter = '('.repeat(10_000) + 'true' + ')'.repeat(10_000);
    const tooLong = rejection(() => validator.validateObject(p));
    assert.deepEqual(pointers(tooLong), ['/spec/filter']);
    assert.match(tooLong.errors[0].message, /at most 4096 characters/);
    p.spec.filter = '('.repeat(2000) + 'true' + ')'.repeat(2000);
    const tooDeep = rejection(() => validator.validateObject(p));
    assert.equal(tooDeep.errors[0].kind, 'cel-syntax');
    assert.match(tooDeep.errors[0].message, /nested too deeply/);
    p.spec.filter = '!'.repeat(4000) + 'true';
    assert.equal(rejection(() => validator.validateObject(p)).errors[0].kind, 'cel-syntax');
  });

  it('reports CEL syntax and type errors with the expression column', () => {
    const p = redisProduct();
    p.spec.filter = "event.type == 'a' &&& true";
    p.spec.transform.key = 'event.time';
    p.spec.transform.fields = { 'a/b': 'event.nope', total: 'event.data.total * ' };
    p.spec.transform.tombstone = "event.type + 'x'";
    const err = rejection(() => validator.validateObject(p));
    const byPointer = new Map(err.errors.map((e) => [e.pointer, e]));
    assert.equal(byPointer.get('/spec/filter')?.kind, 'cel-syntax');
    assert.equal(byPointer.get('/spec/filter')?.expressionColumn, 21);
    assert.equal(byPointer.get('/spec/transform/key')?.kind, 'cel-type');
    assert.match(byPointer.get('/spec/transform/key')?.message ?? '', /gives timestamp/);
    assert.ok(err.errors.some((e) => e.pointer === '/spec/transform/fields/a~1b' && e.kind === 'name'));
    assert.equal(byPointer.get('/spec/transform/fields/total')?.kind, 'cel-syntax');
    assert.equal(byPointer.get('/spec/transform/tombstone')?.kind, 'cel-type');
    assert.ok(
      err.errors.some(
        (e) =>
          e.pointer === '/spec/transform/fields/a~1b' && e.kind === 'cel-type' && e.expressionColumn === 7,
      ),
    );
  });

  it(`caps the report at ${MAX_REPORTED_ERRORS} problems`, () => {
    const p = redisProduct();
    p.spec.transform.fields = Object.fromEntries(Array.from({ length: 150 }, (_, i) => [`f${i}`, '1 +']));
    const err = rejection(() => validator.validateObject(p));
    assert.equal(err.errors.length, MAX_REPORTED_ERRORS);
    assert.equal(err.extensions.totalErrors, 150);
    assert.match(err.message, /^150 problems/);
  });

  it('rejects values that are not a document', () => {
    for (const value of [null, 'text', [1], 7]) rejection(() => validator.validateObject(value));
    rejection(() => validator.validateText('', 'yaml'));
    rejection(() => validator.validateText('a: [', 'yaml'), 'invalid-yaml');
    rejection(() => validator.validateText('a: 1\n---\nb: 2', 'yaml'), 'multiple-documents');
  });
});

describe('DataProductValidator: names', () => {
  const BAD_NAMES = [
    "'; DROP TABLE x;--",
    'a b',
    'x*',
    '{a}',
    'a:b',
    '"',
    'a\nb',
    '\u043erders', // Cyrillic "о"
    '\uff4frders', // full-width "ｏ"
    'orders\u200b', // zero-width space
    '',
  ];

  type Setter = { field: string; set: (p: DataProduct, bad: string) => string };
  const SETTERS: Setter[] = [
    { field: 'metadata.name', set: (p, bad) => ((p.metadata.name = bad), '/metadata/name') },
    { field: 'metadata.namespace', set: (p, bad) => ((p.metadata.namespace = bad), '/metadata/namespace') },
    {
      field: 'source.streams',
      set: (p, bad) => ((p.spec.source.streams = ['orders', bad]), '/spec/source/streams/1'),
    },
    { field: 'source.types', set: (p, bad) => ((p.spec.source.types = [bad]), '/spec/source/types/0') },
    {
      field: 'postgres.table',
      set: (p, bad) => ((p.spec.target.postgres!.table = bad), '/spec/target/postgres/table'),
    },
    {
      field: 'transform field name',
      set: (p, bad) => {
        p.spec.transform.fields = { ...p.spec.transform.fields, [bad]: 'event.id' };
        p.spec.target.postgres!.columns = { ...p.spec.target.postgres!.columns, [bad]: 'text' };
        return `/spec/transform/fields/${escapePointerToken(bad)}`;
      },
    },
    {
      field: 'postgres column name',
      set: (p, bad) => {
        p.spec.transform.fields = { ...p.spec.transform.fields, [bad]: 'event.id' };
        p.spec.target.postgres!.columns = { ...p.spec.target.postgres!.columns, [bad]: 'text' };
        return `/spec/target/postgres/columns/${escapePointerToken(bad)}`;
      },
    },
    {
      field: 'topic stream',
      set: (p, bad) => {
        p.spec.target = { type: 'topic', topic: { stream: bad } };
        return '/spec/target/topic/stream';
      },
    },
  ];

  for (const { field, set } of SETTERS) {
    it(`rejects SQL and Redis metacharacters in ${field}`, () => {
      for (const bad of BAD_NAMES) {
        const p = designProduct();
        const pointer = set(p, bad);
        const err = rejection(() => validator.validateObject(p));
        assert.ok(
          pointers(err).includes(pointer),
          `${JSON.stringify(bad)} in ${field}: expected an error at ${pointer}, got ${JSON.stringify(err.errors)}`,
        );
      }
    });
  }

  it('rejects reserved and system names for Postgres tables and columns', () => {
    for (const table of ['select', 'user', 'pg_orders', 'table', '_offtake_orders', '_x']) {
      const p = designProduct();
      p.spec.target.postgres!.table = table;
      assert.deepEqual(pointers(rejection(() => validator.validateObject(p))), [
        '/spec/target/postgres/table',
      ]);
    }
    const p = designProduct();
    p.spec.transform.fields = { order: 'event.id' };
    p.spec.target.postgres!.columns = { order: 'text' };
    const err = rejection(() => validator.validateObject(p));
    assert.deepEqual(pointers(err), ['/spec/target/postgres/columns/order']);
    assert.match(err.errors[0].message, /reserved word/);
    const long = designProduct();
    long.spec.target.postgres!.table = 'a'.repeat(64);
    rejection(() => validator.validateObject(long));
  });

  it("keeps transform fields from colliding with Offtake's own columns", () => {
    for (const internal of [KEY_COLUMN, OFFSET_COLUMN, '__proto__']) {
      const p = redisProduct();
      p.spec.transform.fields = { [internal]: 'event.id' };
      const err = rejection(() => validator.validateObject(p));
      assert.deepEqual(pointers(err), [`/spec/transform/fields/${internal}`]);
    }
  });

  it('requires the postgres columns to be exactly the transform fields', () => {
    const p = designProduct();
    p.spec.target.postgres!.columns = { customer: 'text', amount: 'numeric', extra: 'text' };
    const err = rejection(() => validator.validateObject(p));
    assert.deepEqual(pointers(err), ['/spec/target/postgres/columns/extra', '/spec/target/postgres/columns']);
    assert.match(err.errors[0].message, /"extra" has no transform field/);
    assert.match(err.errors[1].message, /no column for transform field "status"/);
  });

  it('checks label keys and values', () => {
    const p = redisProduct();
    p.metadata.labels = { 'team/name': 'checkout', 'bad key': 'x', ok: 'a b' };
    const err = rejection(() => validator.validateObject(p));
    assert.deepEqual(pointers(err), ['/metadata/labels/bad key', '/metadata/labels/ok']);
  });

  it('validateName checks path parameters', () => {
    assert.equal(validateName('namespace', 'checkout'), undefined);
    assert.equal(validateName('name', 'eu-big-orders'), undefined);
    assert.equal(validateName('stream', 'orders.v2'), undefined);
    for (const bad of ['Checkout', 'a_b', '-a', 'a-', 'a'.repeat(64), '', '..', 'a/b', 'a%2Fb']) {
      const error = validateName('name', bad);
      assert.ok(error !== undefined, `expected ${JSON.stringify(bad)} to be rejected`);
      assert.equal(error.pointer, '/metadata/name');
      assert.equal(error.kind, 'name');
    }
    assert.equal(validateName('namespace', 'a:b')?.pointer, '/metadata/namespace');
    assert.match(validateName('stream', 'a:b')?.message ?? '', /":" at position 2/);
  });
});

describe('semantic checks on their own', () => {
  it('checks target option blocks against the target type', () => {
    const p = designProduct() as unknown as { spec: { target: Record<string, unknown> } };
    p.spec.target.redis = { format: 'hash' };
    p.spec.target.topic = {};
    delete p.spec.target.postgres;
    const errors = checkSemantics(p, { allowDedicated: false });
    assert.deepEqual(
      errors.map((e) => e.pointer),
      ['/spec/target/redis', '/spec/target/topic', '/spec/target/postgres'],
    );
  });

  it('survives documents of any shape', () => {
    for (const doc of [null, 1, 'x', [], { spec: 1 }, { spec: { transform: { fields: [] }, target: 'x' } }]) {
      assert.doesNotThrow(() => checkSemantics(doc, { allowDedicated: false }));
    }
  });

  it('lists every expression of a spec with its pointer', () => {
    const spec = designProduct().spec;
    spec.transform.fields = { 'a/b~c': 'event.id' };
    assert.deepEqual(
      specExpressions(spec).map((e) => [e.pointer, e.expected]),
      [
        ['/spec/filter', 'bool'],
        ['/spec/transform/key', 'string'],
        ['/spec/transform/fields/a~1b~0c', 'value'],
      ],
    );
  });
});
