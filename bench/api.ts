/**
 * `npm run bench -- api`: DataProduct validation throughput through the full HTTP path
 * (POST ?dryRun=All, YAML and JSON, a realistic spec) against the same server answering
 * /healthz in the same run. BENCH_SECONDS sets each phase's length (default 5).
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { parse } from 'yaml';
import { loadConfig } from '../lib/config.ts';
import { createLogger } from '../lib/logger.ts';
import { startApiServer } from '../api/server.ts';
import { load } from './_load.ts';

const seconds = Number(process.env.BENCH_SECONDS ?? 5);
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 16);
const yamlSpec = readFileSync(new URL('../examples/eu-big-orders.yaml', import.meta.url), 'utf8');
const jsonSpec = JSON.stringify(parse(yamlSpec));

const config = loadConfig(process.env, {
  port: 0,
  host: '127.0.0.1',
  redisPrefix: `bench:api:${process.pid}`,
});
const server = await startApiServer(config, createLogger('silent'));
const base = `http://127.0.0.1:${server.port}`;
const specUrl = `${base}/v1/namespaces/checkout/dataproducts?dryRun=All`;

const check = await fetch(specUrl, {
  method: 'POST',
  headers: { 'content-type': 'application/yaml' },
  body: yamlSpec,
});
if (check.status !== 201) throw new Error(`the spec did not validate: ${check.status} ${await check.text()}`);

// Warm up the JIT on every path before measuring.
await load(`${base}/healthz`, { concurrency, seconds: 1 });
await load(specUrl, {
  method: 'POST',
  body: yamlSpec,
  headers: { 'content-type': 'application/yaml' },
  concurrency,
  seconds: 1,
});

const healthz = await load(`${base}/healthz`, { concurrency, seconds });
const yaml = await load(specUrl, {
  method: 'POST',
  body: yamlSpec,
  headers: { 'content-type': 'application/yaml' },
  concurrency,
  seconds,
});
const json = await load(specUrl, {
  method: 'POST',
  body: jsonSpec,
  headers: { 'content-type': 'application/json' },
  concurrency,
  seconds,
});
await server.close();

for (const [name, r] of Object.entries({ healthz, yaml, json })) {
  const bad = Object.entries(r.statuses).filter(([s]) => !['200', '201'].includes(s));
  if (bad.length > 0) throw new Error(`${name}: unexpected statuses ${JSON.stringify(r.statuses)}`);
}

const machine = `${os.cpus().length} x ${os.cpus()[0]?.model ?? 'cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
console.log(`machine: ${machine}; ${concurrency} connections, ${seconds}s per phase`);
console.log(`GET /healthz (ceiling):          ${fmt(healthz.perSecond)} req/s`);
console.log(
  `POST spec YAML ?dryRun=All:      ${fmt(yaml.perSecond)} specs/s  (${(yaml.perSecond / healthz.perSecond).toFixed(2)} of /healthz)`,
);
console.log(
  `POST spec JSON ?dryRun=All:      ${fmt(json.perSecond)} specs/s  (${(json.perSecond / healthz.perSecond).toFixed(2)} of /healthz)`,
);
console.log(
  JSON.stringify({
    suite: 'api',
    machine,
    concurrency,
    seconds,
    healthzPerSecond: Math.round(healthz.perSecond),
    yamlSpecsPerSecond: Math.round(yaml.perSecond),
    jsonSpecsPerSecond: Math.round(json.perSecond),
    yamlVsHealthz: Number((yaml.perSecond / healthz.perSecond).toFixed(3)),
    jsonVsHealthz: Number((json.perSecond / healthz.perSecond).toFixed(3)),
  }),
);
