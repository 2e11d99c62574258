import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
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

  describe('offtake publish of files past the API batch limit (1000 events)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'offtake-publish-'));
    after(() => rmSync(dir, { recursive: true, force: true }));
    const cli = (...args: string[]) => runCli(['--server', api.url, ...args], env);
    const event = (i: number) =>
      JSON.stringify({
        id: `e${i}`,
        source: 'test/bulk',
        type: 'OrderPlaced',
        subject: `c${i % 7}`,
        data: { i },
      });
    const write = (name: string, lines: string[]) => {
      const path = join(dir, name);
      writeFileSync(path, lines.join('\n') + '\n');
      return path;
    };
    const events = (from: number, to: number) => Array.from({ length: to - from }, (_, k) => event(from + k));

    /** Every event id of a stream, in offset order, read page by page. */
    async function storedIds(stream: string): Promise<string[]> {
      const ids: string[] = [];
      let cursor: string | null = null;
      do {
        const query: string = cursor === null ? '' : `&cursor=${cursor}`;
        const res = await fetch(`${api.url}/v1/streams/${stream}/events?limit=1000${query}`);
        assert.equal(res.status, 200);
        const page = (await res.json()) as { events: { id: string }[]; cursor: string | null };
        ids.push(...page.events.map((e) => e.id));
        cursor = page.cursor;
      } while (cursor !== null);
      return ids;
    }

    test('2,500 events in one command: all stored, in order; publishing again stores nothing twice', async () => {
      const file = write('bulk.ndjson', events(0, 2500));
      const first = await cli('publish', 'bulk', file);
      assert.equal(first.code, 0, first.stderr);
      assert.match(first.stdout, /^bulk: 2500 appended, 0 already there \(last offset \d+-\d+\)\n$/);
      const expected = Array.from({ length: 2500 }, (_, i) => `e${i}`);
      assert.deepEqual(await storedIds('bulk'), expected);

      const again = await cli('publish', 'bulk', file);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /^bulk: 0 appended, 2500 already there/);
      assert.deepEqual(await storedIds('bulk'), expected);
    });

    test('a JSON array of 1,200 events is sent in batches too', async () => {
      const path = join(dir, 'bulk.json');
      writeFileSync(path, `[\n${events(0, 1200).join(',\n')}\n]\n`);
      const res = await cli('publish', 'bulk-array', path);
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stdout, /^bulk-array: 1200 appended, 0 already there/);
      assert.equal((await storedIds('bulk-array')).length, 1200);
    });

    test('a malformed JSON line 1,700 is refused with its file line, and nothing is stored', async () => {
      const lines = events(0, 2500);
      lines[999] = ''; // a blank line: file lines and event positions differ from here on
      lines[1699] = '{"id": "e1699", "source": "test/bulk", "type": "OrderPlaced" "data": {}}';
      const res = await cli('publish', 'bulk-malformed', write('malformed.ndjson', lines));
      assert.equal(res.code, 1);
      assert.equal(res.stdout, '');
      assert.match(res.stderr, /malformed\.ndjson line 1700, column 62: not valid JSON: Expected ','/);
      assert.match(res.stderr, /bulk-malformed: nothing was published/);
      assert.equal((await fetch(`${api.url}/v1/streams/bulk-malformed`)).status, 404);
    });

    test('an event the API rejects in a later batch: its line, what was stored, and a safe re-run', async () => {
      const lines = events(0, 2500);
      lines[1199] = JSON.stringify({ id: 'e1199', source: 'test/bulk', data: {} }); // no type
      const path = write('invalid.ndjson', lines);
      const res = await cli('publish', 'bulk-invalid', path);
      assert.equal(res.code, 1);
      assert.match(
        res.stderr,
        /^error: An event is invalid: .*invalid\.ndjson line 1200\n {2}line 1200 \/type: type is required\n/,
      );
      assert.match(
        res.stderr,
        /bulk-invalid: the 1000 events up to .*invalid\.ndjson line 1000 were stored before the error \(1000 appended, 0 already there, last offset \d+-\d+\); nothing after them was stored/,
      );
      assert.match(res.stderr, /Running the same command again .* is safe/);
      assert.equal((await storedIds('bulk-invalid')).length, 1000);

      lines[1199] = event(1199);
      writeFileSync(path, lines.join('\n') + '\n');
      const fixed = await cli('publish', 'bulk-invalid', path);
      assert.equal(fixed.code, 0, fixed.stderr);
      assert.match(fixed.stdout, /^bulk-invalid: 1500 appended, 1000 already there/);
      assert.deepEqual(
        await storedIds('bulk-invalid'),
        Array.from({ length: 2500 }, (_, i) => `e${i}`),
      );
    });

    test('--batch-events above the API limit is answered with the limit to use', async () => {
      const res = await cli(
        'publish',
        'bulk-limit',
        write('limit.ndjson', events(0, 1500)),
        '--batch-events',
        '1200',
      );
      assert.equal(res.code, 1);
      assert.match(res.stderr, /use --batch-events 1000/);
      assert.match(res.stderr, /bulk-limit: nothing was stored/);
    });
  });

  test("a server that is not an Offtake API (an HTML 502 from a proxy) gets a clear error, not a parser's", async () => {
    const proxy = createServer((_req, res) => {
      res.writeHead(502, { 'content-type': 'text/html' });
      res.end('<html><body><h1>502 Bad Gateway</h1></body></html>');
    });
    proxy.listen(0, '127.0.0.1');
    await once(proxy, 'listening');
    const server = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    try {
      for (const args of [['get'], ['get', '-w'], ['status', 'x', '--watch']]) {
        const res = await runCli(['--server', server, ...args]);
        assert.equal(res.code, 1, args.join(' '));
        assert.match(
          res.stderr,
          /answered 502 Bad Gateway with something other than Offtake's JSON: <html><body><h1>502 Bad Gateway/,
        );
        assert.match(res.stderr, /is --server the address of an Offtake API\?/);
        assert.doesNotMatch(res.stderr, /SyntaxError|Unexpected token|\n {4}at /);
      }
    } finally {
      proxy.close();
    }
  });

  test('a clear error when Redis is unreachable', async () => {
    const res = await runCli(['api', '--port', '0'], { OFFTAKE_REDIS_URL: 'redis://127.0.0.1:1' });
    assert.equal(res.code, 1);
    assert.match(res.stderr, /cannot reach Redis at redis:\/\/127\.0\.0\.1:1/);
  });
});
