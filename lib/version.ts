import { existsSync, readFileSync } from 'node:fs';

// Run from source (lib/) or compiled (dist/lib/): package.json is one or two levels up.
const packageJson = ['../package.json', '../../package.json']
  .map((p) => new URL(p, import.meta.url))
  .find((u) => existsSync(u));

/** Offtake's version, from package.json. */
export const VERSION: string = packageJson
  ? (JSON.parse(readFileSync(packageJson, 'utf8')) as { version: string }).version
  : '0.0.0';
