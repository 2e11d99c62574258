/**
 * `npm run bench -- <suite>`: runs one benchmark suite (bench/<suite>.ts). Benchmarks are not
 * tests: they print figures and ratios measured in the same run, the last line one JSON object.
 */
import { existsSync, readdirSync } from 'node:fs';

const suite = process.argv[2];
const available = readdirSync(new URL('.', import.meta.url))
  .filter((f) => f.endsWith('.ts') && f !== 'run.ts' && !f.startsWith('_'))
  .map((f) => f.slice(0, -3));
if (!suite || !available.includes(suite) || !existsSync(new URL(`./${suite}.ts`, import.meta.url))) {
  process.stderr.write(`usage: npm run bench -- <suite>   (suites: ${available.join(', ')})\n`);
  process.exit(2);
}
await import(`./${suite}.ts`);
