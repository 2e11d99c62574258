/**
 * Kubernetes label selectors: the parser and the matcher they compile to, with Kubernetes'
 * grammar and meaning (`k8s.io/apimachinery/pkg/labels`): comma-separated requirements, all
 * of which must hold.
 */
import { OfftakeError } from '../errors.ts';

/** How one requirement compares a label. */
export type LabelOperator = 'exists' | 'not-exists' | 'equals' | 'not-equals' | 'in' | 'notin';

/** One requirement of a selector, e.g. `tier in (gold,silver)`. */
export interface LabelRequirement {
  key: string;
  operator: LabelOperator;
  /** The values compared against; empty for `exists` and `not-exists`. */
  values: string[];
}

/** A parsed label selector: its requirements and a matcher that holds when all of them do. */
export interface ParsedLabelSelector {
  readonly requirements: readonly LabelRequirement[];
  matches(labels: Readonly<Record<string, string>>): boolean;
}

const NAME_PART = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/**
 * Whether `key` is a valid label key (a Kubernetes qualified name): an optional DNS-1123
 * subdomain prefix of at most 253 characters and `/`, then a name of at most 63 characters.
 */
export function isValidLabelKey(key: string): boolean {
  const slash = key.indexOf('/');
  const prefix = slash === -1 ? undefined : key.slice(0, slash);
  const name = slash === -1 ? key : key.slice(slash + 1);
  if (
    prefix !== undefined &&
    (prefix.length === 0 || prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix))
  ) {
    return false;
  }
  return name.length <= 63 && NAME_PART.test(name);
}

/** Whether `value` is a valid label value: empty, or at most 63 alphanumerics, `-`, `_`, `.` within. */
export function isValidLabelValue(value: string): boolean {
  return value === '' || (value.length <= 63 && NAME_PART.test(value));
}

type TokenKind = 'identifier' | 'in' | 'notin' | '!' | '=' | '==' | '!=' | ',' | '(' | ')' | 'end';

interface Token {
  kind: TokenKind;
  text: string;
  /** 1-based column of the token's first character. */
  column: number;
}

// Characters that end an identifier, as in Kubernetes' lexer (`<` and `>` included so that
// `a>1` is reported as an unsupported operator rather than read as one odd key).
const SPECIAL = new Set(['!', '=', ',', '(', ')', '<', '>']);

function tokenize(selector: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < selector.length) {
    const ch = selector[i];
    if (/\s/.test(ch)) {
      i += 1;
      continue;
    }
    const column = i + 1;
    if (ch === '!' || ch === '=') {
      const kind = selector[i + 1] === '=' ? (ch === '!' ? '!=' : '==') : ch;
      tokens.push({ kind, text: kind, column });
      i += kind.length;
    } else if (ch === ',' || ch === '(' || ch === ')') {
      tokens.push({ kind: ch, text: ch, column });
      i += 1;
    } else if (ch === '<' || ch === '>') {
      throw selectorError(selector, column, `the operator "${ch}" is not supported`);
    } else {
      let end = i;
      while (end < selector.length && !SPECIAL.has(selector[end]) && !/\s/.test(selector[end])) end += 1;
      const text = selector.slice(i, end);
      const kind = text === 'in' || text === 'notin' ? text : 'identifier';
      tokens.push({ kind, text, column });
      i = end;
    }
  }
  tokens.push({ kind: 'end', text: '', column: selector.length + 1 });
  return tokens;
}

function selectorError(selector: string, column: number, what: string): OfftakeError {
  return new OfftakeError(
    'invalid-parameter',
    `Invalid label selector ${JSON.stringify(selector)}: ${what} at column ${column}.`,
    {
      errors: [
        { pointer: '/labelSelector', message: `${what} at column ${column}`, column, kind: 'label-selector' },
      ],
    },
  );
}

function describe(token: Token): string {
  return token.kind === 'end' ? 'the end of the selector' : JSON.stringify(token.text);
}

/** A recursive-descent parser over the token list; one instance per selector. */
class SelectorParser {
  private readonly selector: string;
  private readonly tokens: Token[];
  private position = 0;

  constructor(selector: string) {
    this.selector = selector;
    this.tokens = tokenize(selector);
  }

  parse(): LabelRequirement[] {
    const requirements: LabelRequirement[] = [];
    if (this.peek().kind === 'end') return requirements;
    for (;;) {
      requirements.push(this.requirement());
      const next = this.next();
      if (next.kind === 'end') return requirements;
      if (next.kind !== ',')
        throw this.error(next, `expected "," or the end of the selector, found ${describe(next)}`);
    }
  }

  private requirement(): LabelRequirement {
    if (this.peek().kind === '!') {
      this.next();
      const key = this.key();
      const after = this.peek();
      if (after.kind !== ',' && after.kind !== 'end') {
        throw this.error(after, `"!${key}" takes no operator or value, found ${describe(after)}`);
      }
      return { key, operator: 'not-exists', values: [] };
    }
    const key = this.key();
    const op = this.peek();
    switch (op.kind) {
      case ',':
      case 'end':
        return { key, operator: 'exists', values: [] };
      case '=':
      case '==':
      case '!=':
        this.next();
        return { key, operator: op.kind === '!=' ? 'not-equals' : 'equals', values: [this.value()] };
      case 'in':
      case 'notin':
        this.next();
        return { key, operator: op.kind, values: this.valueList() };
      default:
        throw this.error(
          op,
          `expected an operator (=, ==, !=, in, notin) after the key ${JSON.stringify(key)}, found ${describe(op)}`,
        );
    }
  }

  private key(): string {
    const token = this.next();
    if (token.kind !== 'identifier')
      throw this.error(token, `expected a label key, found ${describe(token)}`);
    if (!isValidLabelKey(token.text)) {
      throw this.error(
        token,
        `${JSON.stringify(token.text)} is not a valid label key (an optional DNS subdomain and "/", then at most 63 letters, digits, "-", "_" or ".", starting and ending with a letter or digit)`,
      );
    }
    return token.text;
  }

  /** A value after `=`, `==` or `!=`; may be empty (`tier=` selects an empty value), as in Kubernetes. */
  private value(): string {
    const token = this.peek();
    if (token.kind === ',' || token.kind === 'end') return '';
    this.next();
    if (token.kind !== 'identifier' && token.kind !== 'in' && token.kind !== 'notin') {
      throw this.error(token, `expected a label value, found ${describe(token)}`);
    }
    return this.checkedValue(token);
  }

  private valueList(): string[] {
    const open = this.next();
    if (open.kind !== '(')
      throw this.error(open, `expected "(" to start the value list, found ${describe(open)}`);
    const values: string[] = [];
    for (;;) {
      const token = this.next();
      if (token.kind === ')' || token.kind === ',') {
        // An empty slot (`()`, `(a,)`, `(,a)`) is the empty value, as in Kubernetes.
        values.push('');
      } else if (token.kind === 'identifier' || token.kind === 'in' || token.kind === 'notin') {
        values.push(this.checkedValue(token));
        const after = this.next();
        if (after.kind === ')') return values;
        if (after.kind !== ',')
          throw this.error(after, `expected "," or ")" in the value list, found ${describe(after)}`);
        continue;
      } else {
        throw this.error(token, `expected a label value or ")", found ${describe(token)}`);
      }
      if (token.kind === ')') return values;
    }
  }

  private checkedValue(token: Token): string {
    if (!isValidLabelValue(token.text)) {
      throw this.error(
        token,
        `${JSON.stringify(token.text)} is not a valid label value (at most 63 letters, digits, "-", "_" or ".", starting and ending with a letter or digit)`,
      );
    }
    return token.text;
  }

  private peek(): Token {
    return this.tokens[this.position];
  }

  private next(): Token {
    const token = this.tokens[this.position];
    if (token.kind !== 'end') this.position += 1;
    return token;
  }

  private error(token: Token, what: string): OfftakeError {
    return selectorError(this.selector, token.column, what);
  }
}

function holds(requirement: LabelRequirement, labels: Readonly<Record<string, string>>): boolean {
  const present = Object.hasOwn(labels, requirement.key);
  const value = present ? labels[requirement.key] : undefined;
  switch (requirement.operator) {
    case 'exists':
      return present;
    case 'not-exists':
      return !present;
    case 'equals':
    case 'in':
      return present && requirement.values.includes(value as string);
    case 'not-equals':
    case 'notin':
      return !present || !requirement.values.includes(value as string);
  }
}

/**
 * Parses a Kubernetes label selector: `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`,
 * `a notin (x,y)`, joined by commas. The empty selector selects everything. `!=` and `notin`
 * also select objects without the label, as in Kubernetes. Bad syntax throws
 * `invalid-parameter` naming the column.
 */
export function parseLabelSelector(selector: string): ParsedLabelSelector {
  const requirements = new SelectorParser(selector).parse();
  return {
    requirements,
    matches: (labels) => requirements.every((requirement) => holds(requirement, labels)),
  };
}
