import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Redis } from 'ioredis';
import { dropPrefix, testRedis, uniquePrefix, TEST_REDIS_URL } from './helpers/redis.ts';
import { runCli, startApiProcess, type ApiProcess } from './helpers/process.ts';

const examplePath = new URL('../examples/eu-big-orders.yaml', import.meta.url);
const example = readFileSync(examplePath, 'utf8');

describe('offtake api, as a process over real HTTP', () => {
  let redis: Redis;
  let prefix: string;
  let api: ApiProcess;
  let env: Record<string, string>;

  before(async () => {
    redis = testRedis();
    prefix = uniquePrefix('cli');
    env = { OFFTAKE_REDIS_URL: TEST_REDIS_URL, OFFTAKE_REDIS_PREFIX: prefix };
    api = await startApiProcess(env);
  });

  after(async () => {
    await api?.stop();
    await dropPrefix(redis, prefix);
    redis.disconnect();
  });

  test('POST the example as YAML → 201 gen 1; GET; PUT → gen 2; stale PUT → 409; DELETE → 404', async () => {
    const url = `${api.url}/v1/namespaces/checkout/dataproducts`;
    const yaml = { 'content-type': 'application/yaml' };
    const created = await fetch(url, { method: 'POST', headers: yaml, body: example });
    assert.equal(created.status, 201);
    const first = (await created.json()) as { metadata: { generation: number; resourceVersion: string } };
    assert.equal(first.metadata.generation, 1);

    const got = await fetch(`${url}/eu-big-orders`);
    assert.equal(got.status, 200);

    const changed = example.replace('amount > 100', 'amount > 250');
    const put = await fetch(`${url}/eu-big-orders`, { method: 'PUT', headers: yaml, body: changed });
    assert.equal(put.status, 200);
    assert.equal(((await put.json()) as { metadata: { generation: number } }).metadata.generation, 2);

    const stale = changed.replace(
      'namespace: checkout}',
      `namespace: checkout, resourceVersion: "${first.metadata.resourceVersion}"}`,
    );
    const conflict = await fetch(`${url}/eu-big-orders`, { method: 'PUT', headers: yaml, body: stale });
    assert.equal(conflict.status, 409);
    assert.match(conflict.headers.get('content-type') ?? '', /application\/problem\+json/);

    assert.equal((await fetch(`${url}/eu-big-orders`, { method: 'DELETE' })).status, 200);
    assert.equal((await fetch(`${url}/eu-big-orders`)).status, 404);
  });

  test('products survive a restart of the API', async () => {
    const url = `${api.url}/v1/namespaces/checkout/dataproducts`;
    assert.equal(
      (await fetch(url, { method: 'POST', headers: { 'content-type': 'application/yaml' }, body: example }))
        .status,
      201,
    );
    assert.equal(await api.stop('SIGKILL'), null);
    api = await startApiProcess(env);
    const got = await fetch(`${api.url}/v1/namespaces/checkout/dataproducts/eu-big-orders`);
    assert.equal(got.status, 200);
    assert.equal(((await got.json()) as { metadata: { generation: number } }).metadata.generation, 1);
    await fetch(`${api.url}/v1/namespaces/checkout/dataproducts/eu-big-orders`, { method: 'DELETE' });
  });

  test('offtake apply / get / describe / delete', async () => {
    const cli = (...args: string[]) => runCli(['--server', api.url, '-n', 'checkout', ...args], env);
    const applied = await cli('apply', '-f', examplePath.pathname);
    assert.equal(applied.code, 0, applied.stderr);
    assert.match(applied.stdout, /dataproduct\/eu-big-orders created \(generation 1\)/);
    const again = await cli('apply', '-f', examplePath.pathname);
    assert.match(again.stdout, /unchanged/);

    const dir = mkdtempSync(join(tmpdir(), 'offtake-cli-'));
    const changedPath = join(dir, 'changed.yaml');
    writeFileSync(changedPath, example.replace('amount > 100', 'amount > 300'));
    assert.match((await cli('apply', '-f', changedPath)).stdout, /configured \(generation 2\)/);

    const list = await cli('get');
    assert.match(list.stdout, /^NAME\s+PHASE\s+TARGET/m);
    assert.match(list.stdout, /eu-big-orders\s+Pending\s+postgres/);
    assert.match((await cli('describe', 'eu-big-orders')).stdout, /generation: 2/);

    const badPath = join(dir, 'bad.yaml');
    writeFileSync(badPath, example.replace('deletionPolicy: Delete ', 'deletionPolicy: Nope  '));
    const bad = await cli('apply', '-f', badPath);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /\/spec\/deletionPolicy \(line 20, column \d+\)/);

    assert.match((await cli('delete', 'eu-big-orders')).stdout, /deleted/);
    assert.equal((await cli('get', 'eu-big-orders')).code, 1);
  });

  test('offtake publish appends an NDJSON file; a retry stores nothing twice', async () => {
    const cli = (...args: string[]) => runCli(['--server', api.url, ...args], env);
    const file = new URL('../examples/orders.ndjson', import.meta.url).pathname;
    const first = await cli('publish', 'orders', file);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /^orders: 200 appended, 0 already there \(last offset \d+-\d+\)/);
    const again = await cli('publish', 'orders', file);
    assert.match(again.stdout, /^orders: 0 appended, 200 already there/);
    const described = (await (await fetch(`${api.url}/v1/streams/orders`)).json()) as { length: number };
    assert.equal(described.length, 200);
    const bad = await cli('publish', 'Bad Stream', file);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /not a valid stream name/);
  });

  test('a clear error when Redis is unreachable', async () => {
    const res = await runCli(['api', '--port', '0'], { OFFTAKE_REDIS_URL: 'redis://127.0.0.1:1' });
    assert.equal(res.code, 1);
    assert.match(res.stderr, /cannot reach Redis at redis:\/\/127\.0\.0\.1:1/);
  });
});
