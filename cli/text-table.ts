/**
 * Plain-text tables for the CLI, the way kubectl prints them: columns padded to their widest
 * cell and three spaces apart, no trailing blanks.
 */

/** The header and rows as aligned lines, each ending in a newline. */
export function textTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  return all
    .map(
      (r) =>
        `${r
          .map((c, i) => c.padEnd(widths[i]))
          .join('   ')
          .trimEnd()}\n`,
    )
    .join('');
}
