/**
 * Turns ajv's errors into {@link FieldError}s a user can act on: the pointer names the field
 * that is wrong (an unknown field itself, a missing field itself), the message says what is
 * allowed, and the noise a `oneOf` produces (one error per branch) becomes one clear message.
 */
import type { ErrorObject } from 'ajv';
import {
  DNS1123_LABEL,
  EVENT_TYPE,
  SQL_IDENTIFIER,
  STREAM_NAME,
  type SchemaNode,
} from '../../crds/dataproduct.schema.ts';
import type { FieldError } from '../errors.ts';
import { NAME_RULES, explainName, type NameRule } from './names.ts';
import { escapePointerToken, pointerTokens } from './parse-document.ts';

const RULES_BY_PATTERN = new Map<string, NameRule>([
  [DNS1123_LABEL, NAME_RULES.dns1123Label],
  [STREAM_NAME, NAME_RULES.stream],
  [SQL_IDENTIFIER, NAME_RULES.sqlIdentifier],
  [EVENT_TYPE, NAME_RULES.eventType],
]);

const PATTERN_WORDS = new Map<string, string>([
  ['^[0-9]+-[0-9]+$', 'must be an event-log offset such as "1714557600000-0"'],
]);

/** The source schema node a JSON pointer into a document leads to, if any. */
export function schemaNodeAt(root: SchemaNode, pointer: string): SchemaNode | undefined {
  let node: SchemaNode | undefined = root;
  for (const token of pointerTokens(pointer)) {
    if (node === undefined) return undefined;
    if (node.properties?.[token] !== undefined) node = node.properties[token];
    else if (node.items !== undefined && /^\d+$/.test(token)) node = node.items;
    else if (typeof node.additionalProperties === 'object') node = node.additionalProperties;
    else return undefined;
  }
  return node;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string')
    return `the string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)}`;
  if (typeof value === 'number') return `the ${Number.isInteger(value) ? 'integer' : 'number'} ${value}`;
  if (typeof value === 'boolean') return `the value ${value}`;
  return `a ${typeof value}`;
}

const TYPE_WORDS: Record<string, string> = {
  object: 'a mapping',
  array: 'a list',
  string: 'a string',
  integer: 'an integer',
  number: 'a number',
  boolean: 'true or false',
};

/** Edit distance, for "did you mean" hints on unknown fields. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length];
}

function unknownField(name: string, allowed: string[]): string {
  const lower = name.toLowerCase();
  const close = allowed
    .map((a) => ({ a, d: a.toLowerCase() === lower ? 0 : distance(lower, a.toLowerCase()) }))
    .filter(({ d }) => d <= Math.max(1, Math.floor(name.length / 3)))
    .sort((x, y) => x.d - y.d)[0];
  if (close !== undefined) return `unknown field "${name}"; did you mean "${close.a}"?`;
  if (allowed.length > 0 && allowed.length <= 12)
    return `unknown field "${name}"; allowed here: ${allowed.join(', ')}`;
  return `unknown field "${name}"`;
}

function list(values: readonly unknown[]): string {
  return values.map((v) => (typeof v === 'string' ? v : JSON.stringify(v))).join(', ');
}

function convert(error: ErrorObject): FieldError {
  const at = error.instancePath;
  const params = error.params as Record<string, unknown>;
  const data: unknown = error.data;
  const field = (message: string, pointer = at, kind = 'schema'): FieldError => ({ pointer, message, kind });
  switch (error.keyword) {
    case 'additionalProperties': {
      const name = String(params.additionalProperty);
      const parent = error.parentSchema as { properties?: Record<string, unknown> } | undefined;
      return field(
        unknownField(name, Object.keys(parent?.properties ?? {})),
        `${at}/${escapePointerToken(name)}`,
      );
    }
    case 'required': {
      const name = String(params.missingProperty);
      return field(`missing required field "${name}"`, `${at}/${escapePointerToken(name)}`);
    }
    case 'enum': {
      const allowed = params.allowedValues as unknown[];
      return field(
        allowed.length === 1
          ? `must be ${list(allowed)}, not ${describe(data)}`
          : `must be one of: ${list(allowed)} (got ${describe(data)})`,
      );
    }
    case 'type': {
      const wanted = String(params.type)
        .split(',')
        .map((t) => TYPE_WORDS[t] ?? t)
        .join(' or ');
      return field(`must be ${wanted}, not ${describe(data)}`);
    }
    case 'pattern': {
      const pattern = String(params.pattern);
      const rule = RULES_BY_PATTERN.get(pattern);
      if (rule !== undefined && typeof data === 'string') {
        return field(
          `${JSON.stringify(data)}: ${explainName(data, rule) ?? `must be ${rule.description}`}`,
          at,
          'name',
        );
      }
      return field(PATTERN_WORDS.get(pattern) ?? `must match the pattern ${pattern}`);
    }
    case 'format':
      if (params.format === 'date-time')
        return field('must be an RFC 3339 timestamp such as "2024-05-01T10:00:00Z"');
      return field(`must be a valid ${String(params.format)}`);
    case 'minLength':
      return field(
        params.limit === 1 ? 'must not be empty' : `must be at least ${String(params.limit)} characters long`,
      );
    case 'maxLength':
      return field(
        `must be at most ${String(params.limit)} characters long` +
          (typeof data === 'string' ? ` (it has ${data.length})` : ''),
      );
    case 'minItems':
      return field(
        params.limit === 1
          ? 'must list at least one item'
          : `must list at least ${String(params.limit)} items`,
      );
    case 'maxItems':
      return field(`must list at most ${String(params.limit)} items`);
    case 'minProperties':
      return field(
        params.limit === 1 ? 'must not be empty' : `must have at least ${String(params.limit)} entries`,
      );
    case 'maxProperties':
      return field(`must have at most ${String(params.limit)} entries`);
    case 'minimum':
    case 'maximum':
      return field(`must be ${error.keyword === 'minimum' ? 'at least' : 'at most'} ${String(params.limit)}`);
    case 'uniqueItems': {
      const items = Array.isArray(data) ? (data as unknown[]) : [];
      const j = Number(params.j);
      const i = Number(params.i);
      const first = Math.min(i, j);
      return field(
        `duplicate of item ${first}: ${JSON.stringify(items[Math.max(i, j)])} is listed twice`,
        `${at}/${Math.max(i, j)}`,
      );
    }
    default:
      return field(error.message ?? `fails the ${error.keyword} rule`);
  }
}

/**
 * Converts ajv's errors (run with `allErrors` and `verbose`) into field errors. `root` is the
 * source schema (for the messages of `x-offtake-union` nodes); duplicates are dropped.
 */
export function schemaErrors(errors: readonly ErrorObject[], root: SchemaNode): FieldError[] {
  const out: FieldError[] = [];
  const unions = errors.filter((e) => e.keyword === 'oneOf');
  const inUnion = (e: ErrorObject): ErrorObject | undefined =>
    unions.find((u) => u !== e && e.schemaPath.startsWith(`${u.schemaPath}/`));
  for (const error of errors) {
    if (inUnion(error) !== undefined) continue;
    if (error.keyword !== 'oneOf') {
      out.push(convert(error));
      continue;
    }
    // Each branch of the union reported why it failed. When one branch failed only below this
    // node, the value has that branch's shape and its errors are the useful ones; otherwise
    // the value fits no shape and the union's own message says what is allowed.
    const byBranch = new Map<string, ErrorObject[]>();
    for (const e of errors) {
      if (inUnion(e) !== error) continue;
      const branch = e.schemaPath.slice(error.schemaPath.length + 1).split('/')[0];
      byBranch.set(branch, [...(byBranch.get(branch) ?? []), e]);
    }
    const shaped = [...byBranch.values()].find((es) =>
      es.every((e) => e.instancePath.startsWith(`${error.instancePath}/`)),
    );
    if (shaped !== undefined) {
      out.push(...shaped.map(convert));
    } else {
      const union = schemaNodeAt(root, error.instancePath)?.['x-offtake-union'];
      out.push({
        pointer: error.instancePath,
        message: union?.message ?? 'does not have any of the allowed shapes',
        kind: 'schema',
      });
    }
  }
  const seen = new Set<string>();
  return out.filter((e) => {
    const id = `${e.pointer}\u0000${e.message}`;
    if (seen.has(id)) return false;
    seen.add(id);
    return true;
  });
}
