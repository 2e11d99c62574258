/**
 * Turns a request body's text (YAML or JSON) into a plain value plus a way to find where any
 * part of it was written, so that later errors can say "line 12, column 7".
 *
 * YAML is read strictly with the `yaml` package: YAML 1.2 core schema (so `yes` stays a string),
 * duplicate keys are errors, no custom or YAML 1.1 tags (`!!binary`, `!!set`, ...), few aliases
 * (an alias bomb expands a few hundred bytes into gigabytes), and exactly one document.
 */
import {
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  parseAllDocuments,
  type Document,
  type DocumentOptions,
  type Node,
  type ParseOptions,
  type SchemaOptions,
} from 'yaml';
import { OfftakeError, type FieldError } from '../errors.ts';

/** A 1-based position in the submitted text. */
export interface TextPosition {
  line: number;
  column: number;
}

/**
 * Finds where the value at a JSON pointer (RFC 6901) was written. For a property of a mapping
 * that is the position of its key; for a list item, of the item; for a property that is missing,
 * of the nearest enclosing value that exists. Undefined when the document has no position data.
 */
export type Locator = (pointer: string) => TextPosition | undefined;

/** A parsed body: the plain value (always an object) and its {@link Locator}. */
export interface ParsedDocument {
  value: Record<string, unknown>;
  locate: Locator;
}

/** The text formats a DataProduct body may come in. */
export type DocumentMediaType = 'yaml' | 'json';

/**
 * Most aliases (`*name`) one document may use. Real specs need none or a handful; the limit
 * stops "billion laughs" documents, whose size grows exponentially with each aliased level.
 */
export const MAX_ALIAS_COUNT = 16;

/** Most syntax errors reported for one body; after the first few they are mostly echoes. */
const MAX_SYNTAX_ERRORS = 10;

const YAML_OPTIONS: ParseOptions & DocumentOptions & SchemaOptions = {
  version: '1.2',
  schema: 'core',
  customTags: [],
  resolveKnownTags: false,
  merge: false,
  strict: true,
  uniqueKeys: true,
  prettyErrors: false,
};

/** Splits a JSON pointer into its unescaped reference tokens. */
export function pointerTokens(pointer: string): string[] {
  if (pointer === '') return [];
  return pointer
    .slice(1)
    .split('/')
    .map((t) => t.replaceAll('~1', '/').replaceAll('~0', '~'));
}

/** Escapes one reference token for a JSON pointer (RFC 6901: `~` → `~0`, `/` → `~1`). */
export function escapePointerToken(token: string): string {
  return token.replaceAll('~', '~0').replaceAll('/', '~1');
}

function describeType(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  return `a ${typeof value}`;
}

function locatorFor(doc: Document.Parsed, lines: LineCounter): Locator {
  const position = (offset: number): TextPosition => {
    const { line, col } = lines.linePos(offset);
    return { line, column: col };
  };
  return (pointer) => {
    let node: unknown = doc.contents;
    if (node === null || node === undefined) return undefined;
    let at = (node as Node).range?.[0] ?? 0;
    for (const token of pointerTokens(pointer)) {
      if (isAlias(node)) node = node.resolve(doc);
      if (isMap(node)) {
        const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === token);
        if (pair === undefined) break;
        at = (isScalar(pair.key) ? pair.key.range?.[0] : undefined) ?? at;
        node = pair.value;
      } else if (isSeq(node)) {
        const index = /^(0|[1-9][0-9]*)$/.test(token) ? Number(token) : -1;
        const item: unknown = node.items[index];
        if (item === undefined) break;
        at = (item as Node).range?.[0] ?? at;
        node = item;
      } else {
        break;
      }
    }
    return position(at);
  };
}

function yamlErrors(doc: Document.Parsed, lines: LineCounter): FieldError[] {
  return [...doc.errors, ...doc.warnings].slice(0, MAX_SYNTAX_ERRORS).map((err) => {
    const { line, col } = lines.linePos(err.pos[0]);
    // The library appends " at line L, column C:" itself; the position goes into line/column.
    const message = err.message.replace(/ at line \d+, column \d+:?\s*$/s, '').replace(/:$/, '');
    return { pointer: '', message, line, column: col, kind: 'yaml' };
  });
}

function isEmptyDocument(doc: Document.Parsed): boolean {
  const contents = doc.contents;
  if (contents === null) return true;
  return isScalar(contents) && contents.source === '' && contents.range[0] === contents.range[1];
}

function requireObject(value: unknown, locate: Locator): Record<string, unknown> {
  if (value !== null && typeof value === 'object' && !Array.isArray(value))
    return value as Record<string, unknown>;
  const message =
    value === undefined || value === null
      ? 'the body is empty; send one DataProduct (apiVersion, kind, metadata, spec)'
      : `the document must be a mapping with apiVersion, kind, metadata and spec, not ${describeType(value)}`;
  throw new OfftakeError('invalid-spec', message, {
    errors: [{ pointer: '', message, ...locate(''), kind: 'schema' }],
  });
}

function parseYaml(text: string): ParsedDocument {
  const lines = new LineCounter();
  const parsed = parseAllDocuments(text, { ...YAML_OPTIONS, lineCounter: lines });
  // Empty documents (a trailing "---", a file of comments) are what editors and tools leave behind.
  const docs = Array.isArray(parsed) ? parsed.filter((d) => !isEmptyDocument(d) || d.errors.length > 0) : [];
  const broken = docs.find((d) => d.errors.length > 0 || d.warnings.length > 0);
  if (broken !== undefined) {
    const errors = yamlErrors(broken, lines);
    const first = errors[0];
    throw new OfftakeError(
      'invalid-yaml',
      `The body is not valid YAML: ${first.message} (line ${first.line}, column ${first.column})`,
      { errors },
    );
  }
  if (docs.length > 1) {
    const { line, col } = lines.linePos(docs[1].range[0]);
    const message = `a second document starts at line ${line}; send one DataProduct per request`;
    throw new OfftakeError('multiple-documents', `The body holds ${docs.length} documents: ${message}`, {
      errors: [{ pointer: '', message, line, column: col, kind: 'yaml' }],
    });
  }
  if (docs.length === 0) return { value: requireObject(undefined, () => undefined), locate: () => undefined };
  const doc = docs[0];
  const locate = locatorFor(doc, lines);
  let value: unknown;
  try {
    value = doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    const message = `too many aliases: at most ${MAX_ALIAS_COUNT} are allowed, and none that expand into huge documents`;
    throw new OfftakeError('invalid-yaml', `The body is not valid YAML: ${message}`, {
      errors: [{ pointer: '', message, ...locate(''), kind: 'yaml' }],
      cause: err,
    });
  }
  return { value: requireObject(value, locate), locate };
}

function jsonPosition(text: string, message: string): TextPosition {
  const match = /at position (\d+)/.exec(message);
  const offset = Math.min(match === null ? text.length : Number(match[1]), text.length);
  const before = text.slice(0, offset);
  const lineStart = before.lastIndexOf('\n') + 1;
  return { line: before.split('\n').length, column: offset - lineStart + 1 };
}

function parseJson(text: string): ParsedDocument {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    if (text.trim() === '')
      return { value: requireObject(undefined, () => undefined), locate: () => undefined };
    const raw = err instanceof Error ? err.message : String(err);
    const { line, column } = jsonPosition(text, raw);
    // V8 adds the position and sometimes a quote of the input; both are given separately here.
    const message = raw
      .replace(/,? ?".*" is not valid JSON$/s, '')
      .replace(/ in JSON at position \d+( \(line \d+ column \d+\))?/, '')
      .replace(/^Unexpected end of JSON input$/, 'the JSON ends too early');
    throw new OfftakeError(
      'invalid-json',
      `The body is not valid JSON: ${message} (line ${line}, column ${column})`,
      {
        errors: [{ pointer: '', message, line, column, kind: 'json' }],
        cause: err,
      },
    );
  }
  // JSON is YAML 1.2, so the YAML parser gives positions and catches duplicate keys, which
  // JSON.parse silently resolves to the last one.
  const lines = new LineCounter();
  const docs = parseAllDocuments(text, { ...YAML_OPTIONS, lineCounter: lines });
  const doc = Array.isArray(docs) && docs.length === 1 ? docs[0] : undefined;
  const locate: Locator =
    doc === undefined || doc.errors.length > 0 ? () => undefined : locatorFor(doc, lines);
  const duplicate = doc?.errors.find((e) => e.code === 'DUPLICATE_KEY');
  if (duplicate !== undefined) {
    const { line, col } = lines.linePos(duplicate.pos[0]);
    const message = 'duplicate key: every key may appear only once in an object';
    throw new OfftakeError(
      'invalid-json',
      `The body is not valid JSON: ${message} (line ${line}, column ${col})`,
      {
        errors: [{ pointer: '', message, line, column: col, kind: 'json' }],
      },
    );
  }
  return { value: requireObject(value, locate), locate };
}

/**
 * Parses a body's text as YAML or JSON into a plain object and its {@link Locator}.
 *
 * @throws OfftakeError `invalid-yaml` / `invalid-json` (malformed text, duplicate keys, unknown
 *   tags, alias bombs; each FieldError has line and column), `multiple-documents` (says where the
 *   second starts), `invalid-spec` (empty body, or a top-level value that is not a mapping).
 */
export function parseDocument(text: string, mediaType: DocumentMediaType): ParsedDocument {
  return mediaType === 'json' ? parseJson(text) : parseYaml(text);
}
