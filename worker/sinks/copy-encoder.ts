/**
 * The text format of PostgreSQL's `COPY ... FROM STDIN`: one line per row, values separated by
 * tabs, `\N` for NULL. Inside a value a backslash starts an escape (`\n`, `\t`, `\x41`, `\101`,
 * `\N`, `\.`), so every backslash, tab, newline and carriage return of the data is escaped and
 * everything else is sent as it is (UTF-8). A string `\N` therefore arrives as the text `\N`,
 * never as NULL. U+0000 cannot be stored in Postgres text at all; records carrying it are
 * refused by validation long before, and the encoder refuses it again rather than send it.
 */
import type { ColumnValue } from './postgres-columns.ts';

/** How COPY's text format writes SQL NULL. */
export const COPY_NULL = '\\N';

/** About how many characters {@link copyTextChunks} puts in one piece. */
export const DEFAULT_COPY_CHUNK_SIZE = 64 * 1024;

// U+0000 is matched on purpose, to refuse it in the same pass that finds what to escape.
// eslint-disable-next-line no-control-regex
const NEEDS_ESCAPE = /[\\\n\r\t\u0000]/;
// eslint-disable-next-line no-control-regex
const ESCAPED = /[\\\n\r\t\u0000]/g;

function escapeCharacter(c: string): string {
  switch (c) {
    case '\\':
      return '\\\\';
    case '\n':
      return '\\n';
    case '\r':
      return '\\r';
    case '\t':
      return '\\t';
    default:
      throw new Error('A value holds the character U+0000, which Postgres cannot store.');
  }
}

/**
 * One value in COPY text form: NULL as `\N`, booleans as `t` / `f`, numbers as JavaScript
 * writes them (the shortest text that reads back as the same double), strings escaped. Throws
 * on U+0000 and on non-finite numbers, which no column of a sink may receive.
 */
export function copyTextValue(value: ColumnValue): string {
  if (value === null) return COPY_NULL;
  if (typeof value === 'string')
    return NEEDS_ESCAPE.test(value) ? value.replace(ESCAPED, escapeCharacter) : value;
  if (typeof value === 'boolean') return value ? 't' : 'f';
  if (!Number.isFinite(value)) throw new Error('A value is a number that is not finite.');
  return String(value);
}

/** One row (values in column order) as a COPY text line, newline included. */
export function copyTextRow(values: readonly ColumnValue[]): string {
  let line = copyTextValue(values[0]);
  for (let c = 1; c < values.length; c++) line += `\t${copyTextValue(values[c])}`;
  return `${line}\n`;
}

/**
 * A batch in column-major form (one array per column, all of one length) as COPY text, yielded
 * lazily in pieces of at most `chunkSize` characters that end at row boundaries; a row longer than
 * that is a piece of its own. Lazy, so a huge batch never becomes one huge string and an
 * unencodable value stops the stream where it is.
 */
export function* copyTextChunks(
  columns: readonly (readonly ColumnValue[])[],
  chunkSize = DEFAULT_COPY_CHUNK_SIZE,
): Generator<string, void, undefined> {
  if (columns.length === 0) throw new Error('COPY needs at least one column.');
  const rows = columns[0].length;
  if (columns.some((values) => values.length !== rows)) throw new Error('The columns differ in length.');
  const row: ColumnValue[] = new Array<ColumnValue>(columns.length);
  let piece = '';
  for (let i = 0; i < rows; i++) {
    for (let c = 0; c < columns.length; c++) row[c] = columns[c][i];
    const line = copyTextRow(row);
    if (piece.length > 0 && piece.length + line.length > chunkSize) {
      yield piece;
      piece = '';
    }
    piece += line;
    if (piece.length >= chunkSize) {
      yield piece;
      piece = '';
    }
  }
  if (piece.length > 0) yield piece;
}
