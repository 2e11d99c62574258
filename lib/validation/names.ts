/**
 * Name rules: every user-supplied name that ends up in a Kubernetes object, a Redis key, a URL
 * path or an SQL statement is checked here, and a rejection says which character is wrong and
 * what is allowed instead of only quoting a regular expression.
 */
import { DNS1123_LABEL, EVENT_TYPE, SQL_IDENTIFIER, STREAM_NAME } from '../../crds/dataproduct.schema.ts';
import type { FieldError } from '../errors.ts';

/** One kind of name: its pattern, its length limit and how to say what it may contain. */
export interface NameRule {
  /** The anchored pattern a valid name matches (the same string the schema uses). */
  readonly pattern: string;
  /** Most characters allowed. */
  readonly maxLength: number;
  /** A character that may appear somewhere in the name. */
  readonly allowedChar: RegExp;
  /** A character the name may start (and, when `edgesAlike`, end) with. */
  readonly allowedEdge: RegExp;
  /** True when the last character follows the same rule as the first. */
  readonly edgesAlike: boolean;
  /** What a valid name looks like, in words. */
  readonly description: string;
}

/** The name rules Offtake enforces, by what is being named. */
export const NAME_RULES = {
  /** Product and namespace names: Kubernetes DNS-1123 labels. */
  dns1123Label: {
    pattern: DNS1123_LABEL,
    maxLength: 63,
    allowedChar: /^[a-z0-9-]$/,
    allowedEdge: /^[a-z0-9]$/,
    edgesAlike: true,
    description:
      'lower case letters (a-z), digits and "-", starting and ending with a letter or digit, at most 63 characters',
  },
  /**
   * Event-log stream names: they become part of Redis keys and URL paths, so no ":" (the key
   * separator), "*", "?", "[" (glob characters), "{" (cluster hash tags), spaces or quotes.
   */
  stream: {
    pattern: STREAM_NAME,
    maxLength: 100,
    allowedChar: /^[a-z0-9._-]$/,
    allowedEdge: /^[a-z0-9]$/,
    edgesAlike: true,
    description:
      'lower case letters (a-z), digits, "-", "_" and ".", starting and ending with a letter or digit, at most 100 characters',
  },
  /**
   * CloudEvents types listed in `source.types`. The schema's pattern also admits ":" and "/";
   * Offtake rejects ":" as well, because types may be used as parts of Redis keys (per-type
   * indexes) where ":" is the separator.
   */
  eventType: {
    pattern: EVENT_TYPE,
    maxLength: 200,
    allowedChar: /^[A-Za-z0-9._/-]$/,
    allowedEdge: /^[A-Za-z0-9]$/,
    edgesAlike: false,
    description:
      'letters, digits, ".", "_", "/" and "-", starting with a letter or digit, at most 200 characters',
  },
  /** Postgres tables and columns, and transform field names: identifiers that never need quoting. */
  sqlIdentifier: {
    pattern: SQL_IDENTIFIER,
    maxLength: 63,
    allowedChar: /^[a-z0-9_]$/,
    allowedEdge: /^[a-z_]$/,
    edgesAlike: false,
    description: 'lower case letters (a-z), digits and "_", not starting with a digit, at most 63 characters',
  },
} as const satisfies Record<string, NameRule>;

/** The kinds of name {@link NAME_RULES} knows. */
export type NameRuleName = keyof typeof NAME_RULES;

/** Shows one character so that invisible and look-alike characters can be told apart. */
function showChar(ch: string): string {
  const code = ch.codePointAt(0) ?? 0;
  const hex = `U+${code.toString(16).toUpperCase().padStart(4, '0')}`;
  if (code < 0x20 || code === 0x7f) return `${JSON.stringify(ch)} (${hex})`;
  if (code > 0x7e) return `"${ch}" (${hex}, not ASCII)`;
  return JSON.stringify(ch);
}

/**
 * Why `value` breaks `rule`, in words, or undefined when it is a valid name. The first
 * offending character is named with its position (1-based), so `"a:b"` reads
 * `":" at position 2 is not allowed`.
 */
export function explainName(value: string, rule: NameRule): string | undefined {
  if (value.length === 0) return `must not be empty; use ${rule.description}`;
  const chars = Array.from(value);
  for (let i = 0; i < chars.length; i++) {
    if (!rule.allowedChar.test(chars[i])) {
      return `${showChar(chars[i])} at position ${i + 1} is not allowed; use ${rule.description}`;
    }
  }
  if (!rule.allowedEdge.test(chars[0])) {
    return `must not start with ${showChar(chars[0])}; use ${rule.description}`;
  }
  const last = chars[chars.length - 1];
  if (rule.edgesAlike && !rule.allowedEdge.test(last)) {
    return `must not end with ${showChar(last)}; use ${rule.description}`;
  }
  if (chars.length > rule.maxLength) {
    return `is ${chars.length} characters long, at most ${rule.maxLength} are allowed`;
  }
  // The character checks above imply the pattern; this guards against the two drifting apart.
  if (!new RegExp(rule.pattern).test(value)) return `must be ${rule.description}`;
  return undefined;
}

/** Which rule checks a named path parameter, and where it sits in a DataProduct. */
const PARAMETERS = {
  namespace: { rule: NAME_RULES.dns1123Label, pointer: '/metadata/namespace', what: 'namespace' },
  name: { rule: NAME_RULES.dns1123Label, pointer: '/metadata/name', what: 'name' },
  stream: { rule: NAME_RULES.stream, pointer: '/stream', what: 'stream name' },
} as const;

/** The kinds of path parameter {@link validateName} checks. */
export type NameKind = keyof typeof PARAMETERS;

/**
 * Checks a name taken from a request path (`namespace` and `name`: DNS-1123 labels; `stream`:
 * an event-log stream name). Returns a {@link FieldError} (kind `name`, pointer
 * `/metadata/namespace`, `/metadata/name` or `/stream`) or undefined when the name is valid.
 */
export function validateName(kind: NameKind, value: string): FieldError | undefined {
  const param = PARAMETERS[kind];
  const why = explainName(value, param.rule);
  if (why === undefined) return undefined;
  return { pointer: param.pointer, message: `${param.what} ${JSON.stringify(value)}: ${why}`, kind: 'name' };
}

/**
 * PostgreSQL key words that cannot be a table or column name without quoting: those the
 * PostgreSQL 17 manual (Appendix C) lists as "reserved" or "reserved (can be function or type)".
 * Non-reserved words such as `time` or `name` are fine and not listed.
 */
export const POSTGRES_RESERVED_WORDS: ReadonlySet<string> = new Set([
  'all',
  'analyse',
  'analyze',
  'and',
  'any',
  'array',
  'as',
  'asc',
  'asymmetric',
  'authorization',
  'binary',
  'both',
  'case',
  'cast',
  'check',
  'collate',
  'collation',
  'column',
  'concurrently',
  'constraint',
  'create',
  'cross',
  'current_catalog',
  'current_date',
  'current_role',
  'current_schema',
  'current_time',
  'current_timestamp',
  'current_user',
  'default',
  'deferrable',
  'desc',
  'distinct',
  'do',
  'else',
  'end',
  'except',
  'false',
  'fetch',
  'for',
  'foreign',
  'freeze',
  'from',
  'full',
  'grant',
  'group',
  'having',
  'ilike',
  'in',
  'initially',
  'inner',
  'intersect',
  'into',
  'is',
  'isnull',
  'join',
  'lateral',
  'leading',
  'left',
  'like',
  'limit',
  'localtime',
  'localtimestamp',
  'natural',
  'not',
  'notnull',
  'null',
  'offset',
  'on',
  'only',
  'or',
  'order',
  'outer',
  'overlaps',
  'placing',
  'primary',
  'references',
  'returning',
  'right',
  'select',
  'session_user',
  'similar',
  'some',
  'symmetric',
  'system_user',
  'table',
  'tablesample',
  'then',
  'to',
  'trailing',
  'true',
  'union',
  'unique',
  'user',
  'using',
  'variadic',
  'verbose',
  'when',
  'where',
  'window',
  'with',
]);

/**
 * Why `value` cannot be a Postgres table or column name Offtake creates, or undefined. On top
 * of {@link NAME_RULES.sqlIdentifier}: no `pg_` prefix (reserved for system catalogs, and
 * `CREATE TABLE pg_x` fails) and no reserved key word.
 */
export function explainSqlIdentifier(value: string): string | undefined {
  const why = explainName(value, NAME_RULES.sqlIdentifier);
  if (why !== undefined) return why;
  if (value.startsWith('pg_')) return 'must not start with "pg_" (reserved for PostgreSQL system objects)';
  if (POSTGRES_RESERVED_WORDS.has(value))
    return `"${value}" is a reserved word in PostgreSQL; choose another name`;
  return undefined;
}

/** Kubernetes label/annotation key name part: alphanumeric at both ends, `-_.` inside, ≤ 63. */
const QUALIFIED_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
/** DNS-1123 subdomain, the optional prefix of a label or annotation key. */
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/**
 * Why `key` is not a valid Kubernetes label or annotation key (`[prefix/]name`), or undefined.
 * Labels are copied onto the resources the operator renders, so they follow Kubernetes' rules.
 */
export function explainLabelKey(key: string): string | undefined {
  const slash = key.indexOf('/');
  const prefix = slash === -1 ? undefined : key.slice(0, slash);
  const name = slash === -1 ? key : key.slice(slash + 1);
  if (prefix !== undefined && (prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix))) {
    return `key ${JSON.stringify(key)}: the prefix before "/" must be a DNS subdomain (lower case letters, digits, "-" and ".")`;
  }
  if (!QUALIFIED_NAME.test(name)) {
    return (
      `key ${JSON.stringify(key)}: the name must be at most 63 letters, digits, "-", "_" or ".", ` +
      'starting and ending with a letter or digit'
    );
  }
  return undefined;
}

/** Why `value` is not a valid Kubernetes label value (empty, or like a key name), or undefined. */
export function explainLabelValue(value: string): string | undefined {
  if (value === '' || QUALIFIED_NAME.test(value)) return undefined;
  return (
    `value ${JSON.stringify(value)}: must be empty or at most 63 letters, digits, "-", "_" or ".", ` +
    'starting and ending with a letter or digit'
  );
}
