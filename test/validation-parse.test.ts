import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isOfftakeError, type ErrorCode, type FieldError } from '../lib/errors.ts';
import { escapePointerToken, parseDocument, pointerTokens } from '../lib/validation/parse-document.ts';

/** Runs `fn`, asserts it throws an OfftakeError with `code`, and returns its field errors. */
function rejects(fn: () => unknown, code: ErrorCode): FieldError[] {
  try {
    fn();
  } catch (err) {
    assert.ok(isOfftakeError(err), `expected an OfftakeError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err.errors;
  }
  assert.fail(`expected ${code}, but nothing was thrown`);
}

describe('parseDocument (YAML)', () => {
  it('returns the value and locates keys, list items and missing properties', () => {
    const text = ['a: 1', 'spec:', '  list:', '    - x', '    - {k: v}', '  "we/ird~key": 2', ''].join('\n');
    const { value, locate } = parseDocument(text, 'yaml');
    assert.deepEqual(value, { a: 1, spec: { list: ['x', { k: 'v' }], 'we/ird~key': 2 } });
    assert.deepEqual(locate('/a'), { line: 1, column: 1 });
    assert.deepEqual(locate('/spec/list'), { line: 3, column: 3 });
    assert.deepEqual(locate('/spec/list/1/k'), { line: 5, column: 8 });
    assert.deepEqual(locate('/spec/list/0'), { line: 4, column: 7 });
    assert.deepEqual(locate(`/spec/${escapePointerToken('we/ird~key')}`), { line: 6, column: 3 });
    // A missing property is placed at its parent.
    assert.deepEqual(locate('/spec/list/1/missing'), { line: 5, column: 7 });
    assert.deepEqual(locate('/spec/nothing/deeper'), { line: 2, column: 1 });
    assert.deepEqual(locate(''), { line: 1, column: 1 });
  });

  it('reads YAML 1.2 core scalars (yes stays a string)', () => {
    const { value } = parseDocument('a: yes\nb: on\nc: 0x1F\nd: 2024-01-01\n', 'yaml');
    assert.deepEqual(value, { a: 'yes', b: 'on', c: 31, d: '2024-01-01' });
  });

  it('rejects malformed YAML with its line and column', () => {
    const errors = rejects(() => parseDocument('apiVersion: v1\nkind: x: y\n', 'yaml'), 'invalid-yaml');
    assert.deepEqual([errors[0].line, errors[0].column], [2, 7]);
    assert.equal(errors[0].pointer, '');
    assert.equal(errors[0].kind, 'yaml');
    assert.match(errors[0].message, /Nested mappings/);
    assert.doesNotMatch(errors[0].message, /line \d+, column/);
  });

  it('reports an unclosed flow sequence where the parser finds it', () => {
    const errors = rejects(() => parseDocument('a: 1\nb: [1, 2\nc: 3\n', 'yaml'), 'invalid-yaml');
    assert.deepEqual([errors[0].line, errors[0].column], [3, 1]);
    assert.match(errors[0].message, /end with a \]/);
  });

  it('rejects an unterminated quote at the right place', () => {
    const errors = rejects(() => parseDocument('metadata:\n  name: "abc\n', 'yaml'), 'invalid-yaml');
    assert.equal(errors[0].line, 3);
    assert.equal(errors[0].column, 1);
    assert.match(errors[0].message, /quote/);
  });

  it('rejects duplicate keys', () => {
    const errors = rejects(() => parseDocument('spec:\n  filter: a\n  filter: b\n', 'yaml'), 'invalid-yaml');
    assert.deepEqual([errors[0].line, errors[0].column], [3, 3]);
    assert.match(errors[0].message, /unique/);
  });

  it('rejects custom and YAML 1.1 tags', () => {
    rejects(() => parseDocument('a: !custom x\n', 'yaml'), 'invalid-yaml');
    rejects(() => parseDocument('a: !!binary aGVsbG8=\n', 'yaml'), 'invalid-yaml');
  });

  it('rejects an alias bomb', () => {
    const bomb = [
      'a: &a ["x","x","x","x","x","x","x","x","x"]',
      'b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]',
      'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]',
      'd: [*c,*c,*c,*c,*c,*c,*c,*c,*c]',
    ].join('\n');
    const errors = rejects(() => parseDocument(bomb, 'yaml'), 'invalid-yaml');
    assert.match(errors[0].message, /alias/);
  });

  it('accepts a few aliases', () => {
    const { value } = parseDocument('a: &x [1, 2]\nb: *x\n', 'yaml');
    assert.deepEqual(value, { a: [1, 2], b: [1, 2] });
  });

  it('rejects several documents and says where the second starts', () => {
    const errors = rejects(() => parseDocument('a: 1\nb: 2\n---\nc: 3\n', 'yaml'), 'multiple-documents');
    assert.equal(errors[0].line, 3);
    assert.match(errors[0].message, /line 3/);
  });

  it('ignores empty documents around the one document', () => {
    assert.deepEqual(parseDocument('---\na: 1\n---\n', 'yaml').value, { a: 1 });
    assert.deepEqual(parseDocument('a: 1\n---\n# nothing here\n', 'yaml').value, { a: 1 });
  });

  it('rejects an empty body and non-mapping documents as invalid-spec', () => {
    rejects(() => parseDocument('', 'yaml'), 'invalid-spec');
    rejects(() => parseDocument('# just a comment\n', 'yaml'), 'invalid-spec');
    rejects(() => parseDocument('- a\n- b\n', 'yaml'), 'invalid-spec');
    rejects(() => parseDocument('just text\n', 'yaml'), 'invalid-spec');
    rejects(() => parseDocument('null\n', 'yaml'), 'invalid-spec');
  });

  it('keeps a "__proto__" key as a key', () => {
    const { value } = parseDocument('__proto__: {polluted: true}\n', 'yaml');
    assert.ok(Object.hasOwn(value, '__proto__'));
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal(Object.getPrototypeOf(value), Object.prototype);
  });
});

describe('parseDocument (JSON)', () => {
  it('returns the value and locates nodes', () => {
    const text = '{\n  "spec": {\n    "target": {"type": 1}\n  }\n}';
    const { value, locate } = parseDocument(text, 'json');
    assert.deepEqual(value, { spec: { target: { type: 1 } } });
    assert.deepEqual(locate('/spec/target/type'), { line: 3, column: 16 });
  });

  it('accepts tab-indented JSON', () => {
    const { value, locate } = parseDocument('{\n\t"a": {\n\t\t"b": 1\n\t}\n}', 'json');
    assert.deepEqual(value, { a: { b: 1 } });
    assert.deepEqual(locate('/a/b'), { line: 3, column: 3 });
  });

  it('rejects malformed JSON with line and column', () => {
    const errors = rejects(() => parseDocument('{\n  "a": 1,\n  "b" 2\n}', 'json'), 'invalid-json');
    assert.deepEqual([errors[0].line, errors[0].column], [3, 7]);
    assert.doesNotMatch(errors[0].message, /position/);
  });

  it('rejects truncated JSON at its end', () => {
    const errors = rejects(() => parseDocument('{"a": [1, 2', 'json'), 'invalid-json');
    assert.deepEqual([errors[0].line, errors[0].column], [1, 12]);
  });

  it('rejects YAML sent as JSON', () => {
    rejects(() => parseDocument('a: 1\n', 'json'), 'invalid-json');
  });

  it('rejects duplicate keys, which JSON.parse would hide', () => {
    const errors = rejects(() => parseDocument('{"a": 1,\n "a": 2}', 'json'), 'invalid-json');
    assert.equal(errors[0].line, 2);
  });

  it('rejects empty and non-object JSON as invalid-spec', () => {
    rejects(() => parseDocument('', 'json'), 'invalid-spec');
    rejects(() => parseDocument('[1, 2]', 'json'), 'invalid-spec');
    rejects(() => parseDocument('"text"', 'json'), 'invalid-spec');
  });
});

describe('JSON pointers', () => {
  it('escapes and unescapes tokens per RFC 6901', () => {
    assert.equal(escapePointerToken('a/b~c'), 'a~1b~0c');
    assert.deepEqual(pointerTokens('/a~1b~0c/0'), ['a/b~c', '0']);
    assert.deepEqual(pointerTokens(''), []);
  });
});
