/**
 * The checks on a DataProduct that JSON Schema cannot express: which target options go with
 * which target type, what placement this server supports, names that must be safe as SQL
 * identifiers and Redis key parts beyond what a pattern says, columns that must match the
 * transform's fields, and every CEL expression compiled and type-checked.
 *
 * They run on the raw document even when schema validation failed, so each check guards its
 * own input and a user sees every problem at once.
 */
import type { FieldError } from '../errors.ts';
import { compileExpression, type ExpectedResult } from './cel.ts';
import {
  NAME_RULES,
  explainLabelKey,
  explainLabelValue,
  explainName,
  explainSqlIdentifier,
  type NameRule,
} from './names.ts';
import { escapePointerToken } from './parse-document.ts';

/**
 * The column of a Postgres target that holds each record's key (its primary key), and the name
 * the Redis sink uses for the same. Field names starting with "_" are reserved, so no transform
 * field can collide with it.
 */
export const KEY_COLUMN = '_key';

/** The column (and Redis hash field) holding the offset of the event that last wrote a record. */
export const OFFSET_COLUMN = '_offset';

/** Offtake's own columns and hash fields, in table order after the user's columns. */
export const INTERNAL_COLUMNS: readonly string[] = [KEY_COLUMN, OFFSET_COLUMN];

/** Field names starting with this are reserved for Offtake's own columns (and `__proto__`). */
export const RESERVED_FIELD_PREFIX = '_';

/** Options of the semantic checks. */
export interface SemanticOptions {
  /** Whether `placement: dedicated` is possible (Kubernetes mode). */
  allowDedicated: boolean;
  /** Pointers already reported by schema validation; checks at or below them are skipped. */
  skip?: (pointer: string) => boolean;
}

/** One CEL expression of a spec: where it is, its text and the result it must have. */
export interface SpecExpression {
  pointer: string;
  source: string;
  expected: ExpectedResult;
  /** `filter`, `key`, `tombstone`, or `field` (then `field` is the output field's name). */
  role: 'filter' | 'key' | 'tombstone' | 'field';
  field?: string;
}

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function objectAt(root: unknown, ...path: string[]): Json | undefined {
  let node: unknown = root;
  for (const key of path) {
    if (!isObject(node)) return undefined;
    node = node[key];
  }
  return isObject(node) ? node : undefined;
}

/** Every CEL expression in a spec (the `spec` object), with its pointer from the document root. */
export function specExpressions(spec: unknown): SpecExpression[] {
  const out: SpecExpression[] = [];
  if (!isObject(spec)) return out;
  if (typeof spec.filter === 'string') {
    out.push({ pointer: '/spec/filter', source: spec.filter, expected: 'bool', role: 'filter' });
  }
  const transform = objectAt(spec, 'transform');
  if (transform !== undefined) {
    if (typeof transform.key === 'string') {
      out.push({ pointer: '/spec/transform/key', source: transform.key, expected: 'string', role: 'key' });
    }
    const fields = objectAt(transform, 'fields');
    for (const [name, source] of Object.entries(fields ?? {})) {
      if (typeof source !== 'string') continue;
      const pointer = `/spec/transform/fields/${escapePointerToken(name)}`;
      out.push({ pointer, source, expected: 'value', role: 'field', field: name });
    }
    if (typeof transform.tombstone === 'string') {
      out.push({
        pointer: '/spec/transform/tombstone',
        source: transform.tombstone,
        expected: 'bool',
        role: 'tombstone',
      });
    }
  }
  return out;
}

class Collector {
  readonly errors: FieldError[] = [];
  readonly #skip: (pointer: string) => boolean;

  constructor(skip: ((pointer: string) => boolean) | undefined) {
    this.#skip = skip ?? (() => false);
  }

  skipped(pointer: string): boolean {
    return this.#skip(pointer);
  }

  add(error: FieldError): void {
    if (!this.#skip(error.pointer)) this.errors.push(error);
  }

  name(pointer: string, value: unknown, rule: NameRule, what: string): void {
    if (typeof value !== 'string') return;
    const why = explainName(value, rule);
    if (why !== undefined)
      this.add({ pointer, message: `${what} ${JSON.stringify(value)}: ${why}`, kind: 'name' });
  }
}

function checkMetadata(doc: Json, out: Collector): void {
  const metadata = objectAt(doc, 'metadata');
  if (metadata === undefined) return;
  out.name('/metadata/name', metadata.name, NAME_RULES.dns1123Label, 'name');
  out.name('/metadata/namespace', metadata.namespace, NAME_RULES.dns1123Label, 'namespace');
  for (const block of ['labels', 'annotations'] as const) {
    for (const [key, value] of Object.entries(objectAt(metadata, block) ?? {})) {
      const pointer = `/metadata/${block}/${escapePointerToken(key)}`;
      const why =
        explainLabelKey(key) ??
        (block === 'labels' && typeof value === 'string' ? explainLabelValue(value) : undefined);
      if (why !== undefined) out.add({ pointer, message: `${block.slice(0, -1)} ${why}`, kind: 'name' });
    }
  }
}

function checkSource(spec: Json, out: Collector): void {
  const source = objectAt(spec, 'source');
  if (source === undefined) return;
  const streams = Array.isArray(source.streams) ? (source.streams as unknown[]) : [];
  streams.forEach((s, i) => out.name(`/spec/source/streams/${i}`, s, NAME_RULES.stream, 'stream'));
  const types = Array.isArray(source.types) ? (source.types as unknown[]) : [];
  types.forEach((t, i) => out.name(`/spec/source/types/${i}`, t, NAME_RULES.eventType, 'event type'));
}

/** Checks the transform's field names; returns the valid ones (for the column comparison). */
function checkFields(spec: Json, out: Collector): string[] {
  const fields = objectAt(spec, 'transform', 'fields');
  if (fields === undefined) return [];
  const valid: string[] = [];
  for (const name of Object.keys(fields)) {
    const pointer = `/spec/transform/fields/${escapePointerToken(name)}`;
    const why = explainName(name, NAME_RULES.sqlIdentifier);
    if (why !== undefined) {
      out.add({ pointer, message: `field name ${JSON.stringify(name)}: ${why}`, kind: 'name' });
    } else if (name.startsWith(RESERVED_FIELD_PREFIX)) {
      out.add({
        pointer,
        message:
          `field name ${JSON.stringify(name)}: names starting with "${RESERVED_FIELD_PREFIX}" are reserved for ` +
          `Offtake's own columns (${INTERNAL_COLUMNS.join(', ')})`,
        kind: 'name',
      });
    } else {
      valid.push(name);
    }
  }
  return valid;
}

const TARGET_BLOCKS = ['redis', 'postgres', 'topic'] as const;

function checkTarget(spec: Json, fieldNames: string[], options: SemanticOptions, out: Collector): void {
  const target = objectAt(spec, 'target');
  if (target === undefined) return;
  const type = target.type;
  if (typeof type === 'string' && (TARGET_BLOCKS as readonly string[]).includes(type)) {
    for (const block of TARGET_BLOCKS) {
      if (block !== type && target[block] !== undefined) {
        out.add({
          pointer: `/spec/target/${block}`,
          message: `"${block}" options do not apply to a ${type} target; remove them or set target.type: ${block}`,
          kind: 'schema',
        });
      }
    }
    if (type === 'postgres' && target.postgres === undefined) {
      out.add({
        pointer: '/spec/target/postgres',
        message: 'a postgres target needs a "postgres" block with the table name and its columns',
        kind: 'schema',
      });
    }
  }
  if (target.placement === 'dedicated' && !options.allowDedicated) {
    out.add({
      pointer: '/spec/target/placement',
      message:
        'dedicated placement needs Offtake in Kubernetes mode; this server runs embedded, so use placement: shared',
      kind: 'schema',
    });
  }
  const topic = objectAt(target, 'topic');
  if (topic !== undefined) out.name('/spec/target/topic/stream', topic.stream, NAME_RULES.stream, 'stream');
  const postgres = objectAt(target, 'postgres');
  if (postgres !== undefined && type === 'postgres') checkPostgres(postgres, fieldNames, out);
}

function checkPostgres(postgres: Json, fieldNames: string[], out: Collector): void {
  if (typeof postgres.table === 'string') {
    const why =
      explainSqlIdentifier(postgres.table) ??
      (postgres.table.startsWith(RESERVED_FIELD_PREFIX)
        ? `names starting with "${RESERVED_FIELD_PREFIX}" are reserved for Offtake's own tables`
        : undefined);
    if (why !== undefined) {
      out.add({
        pointer: '/spec/target/postgres/table',
        message: `table ${JSON.stringify(postgres.table)}: ${why}`,
        kind: 'name',
      });
    }
  }
  const columns = objectAt(postgres, 'columns');
  if (columns === undefined) return;
  const columnNames = Object.keys(columns);
  for (const column of columnNames) {
    const pointer = `/spec/target/postgres/columns/${escapePointerToken(column)}`;
    const why = explainSqlIdentifier(column);
    if (why !== undefined) {
      out.add({ pointer, message: `column ${JSON.stringify(column)}: ${why}`, kind: 'name' });
    } else if (column.startsWith(RESERVED_FIELD_PREFIX)) {
      out.add({
        pointer,
        message: `column ${JSON.stringify(column)}: names starting with "${RESERVED_FIELD_PREFIX}" are reserved for Offtake's own columns (${INTERNAL_COLUMNS.join(', ')})`,
        kind: 'name',
      });
    } else if (!fieldNames.includes(column)) {
      out.add({
        pointer,
        message: `column ${JSON.stringify(column)} has no transform field of that name; columns must be exactly the transform fields`,
        kind: 'schema',
      });
    }
  }
  const missing = fieldNames.filter((f) => !columnNames.includes(f));
  if (missing.length > 0) {
    out.add({
      pointer: '/spec/target/postgres/columns',
      message:
        `no column for transform field${missing.length > 1 ? 's' : ''} ${missing.map((f) => JSON.stringify(f)).join(', ')}; ` +
        'declare each with its Postgres type',
      kind: 'schema',
    });
  }
}

function checkExpressions(spec: Json, out: Collector): void {
  for (const expression of specExpressions(spec)) {
    if (out.skipped(expression.pointer)) continue;
    const result = compileExpression(expression.source, expression.expected);
    if (result.ok) continue;
    out.add({
      pointer: expression.pointer,
      message: result.message,
      expressionColumn: result.column,
      kind: result.kind,
    });
  }
}

/**
 * Runs every semantic check on a DataProduct document (possibly schema-invalid) and returns the
 * problems found, each with its JSON pointer and kind (`name`, `schema`, `cel-syntax`,
 * `cel-type`, `cel-cost`; CEL problems also carry `expressionColumn`).
 */
export function checkSemantics(doc: unknown, options: SemanticOptions): FieldError[] {
  const out = new Collector(options.skip);
  if (!isObject(doc)) return out.errors;
  checkMetadata(doc, out);
  const spec = objectAt(doc, 'spec');
  if (spec !== undefined) {
    checkSource(spec, out);
    const fieldNames = checkFields(spec, out);
    checkTarget(spec, fieldNames, options, out);
    checkExpressions(spec, out);
  }
  return out.errors;
}
