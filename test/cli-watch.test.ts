/**
 * The CLI's live commands as a user runs them, against a real `offtake api` process in front of
 * an operator (embedded, in this process) on the same Redis prefix and real Postgres:
 * `offtake api` alone serves the connection details the operator delivered, the same as
 * `offtake up`; `status --watch` prints one progress line per change and ends when the product
 * is Ready; `get -w` shows products appear, seed and go until Ctrl-C; `delete --wait` returns
 * once everything the product made is gone; `describe` shows progress and the connection without
 * its password; a product that cannot become Ready ends `status --watch --timeout` with its
 * failure. Output is not a terminal here: plain lines, one per change.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import pg from 'pg';
import { stringify as toYaml } from 'yaml';
import type { DataProductSpec } from '../crds/generated/types.ts';
import { createLogger } from '../lib/logger.ts';
import { startEmbedded, type RunningEmbedded } from '../operator/embedded.ts';
import { CLI, runCli, startApiProcess, type ApiProcess } from './helpers/process.ts';
import { dropPrefix, testRedis, TEST_REDIS_URL, uniquePrefix } from './helpers/redis.ts';
import {
  ApiClient,
  POSTGRES_URL,
  embeddedTestConfig,
  dropPostgresLeftovers,
  expectedOrders,
  leftovers,
  orderEvents,
  orderSpec,
  waitFor,
} from './operator-helpers.ts';

const run = promisify(execFile);

let redis: Redis;
let pool: pg.Pool;
let prefix: string;
let namespace: string;
let embedded: RunningEmbedded;
let apiProcess: ApiProcess;
let api: ApiClient;
let dir: string;
let env: Record<string, string>;

before(async () => {
  redis = testRedis();
  pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
  prefix = uniquePrefix('cli-watch');
  namespace = `cw-${randomBytes(3).toString('hex')}`;
  dir = mkdtempSync(join(tmpdir(), 'offtake-cli-watch-'));
  const config = embeddedTestConfig(prefix);
  embedded = await startEmbedded(config, createLogger('silent'), {
    controller: { backoff: { baseDelayMs: 100, maxDelayMs: 2000 } },
    reconciler: { statusIntervalMs: 500, progressIntervalMs: 200 },
    runner: { chunkEvents: 500 },
    worker: { progressIntervalMs: 100 },
  });
  env = {
    OFFTAKE_REDIS_URL: TEST_REDIS_URL,
    OFFTAKE_REDIS_PREFIX: prefix,
    OFFTAKE_EVENTLOG_DURABILITY: 'none',
  };
  // The API users talk to is `offtake api` alone; the operator behind it is the embedded one.
  apiProcess = await startApiProcess(env);
  api = new ApiClient(apiProcess.url);
  await api.publish('orders', orderEvents(0, 3000));
});

after(async () => {
  await embedded?.close();
  await apiProcess?.stop();
  await dropPostgresLeftovers(pool, redis, namespace);
  await dropPrefix(redis, prefix);
  await pool.end();
  redis.disconnect();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs the CLI against the `offtake api` process, in the test's namespace. */
function cli(...args: string[]) {
  return runCli(['--server', apiProcess.url, '-n', namespace, ...args], env);
}

/** A spec file for `offtake apply -f`. */
function specFile(name: string, spec: DataProductSpec): string {
  const path = join(dir, `${name}.yaml`);
  const doc = { apiVersion: 'offtake.dev/v1alpha1', kind: 'DataProduct', metadata: { name }, spec };
  writeFileSync(path, toYaml(doc));
  return path;
}

/** A long-running CLI process whose stdout lines are read as they come. */
class CliProcess {
  readonly child: ChildProcess;
  readonly lines: string[] = [];
  stderr = '';
  private readonly listeners = new Set<() => void>();

  constructor(args: string[]) {
    this.child = spawn(process.execPath, [CLI, '--server', apiProcess.url, '-n', namespace, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      this.lines.push(line);
      for (const listener of this.listeners) listener();
    });
  }

  /** Waits for a line matching `pattern` (already printed or to come). */
  async waitForLine(pattern: RegExp): Promise<string> {
    await waitFor(
      () => this.lines.some((l) => pattern.test(l)) || this.lines.join(' | '),
      `a line ${pattern}`,
    );
    return this.lines.find((l) => pattern.test(l))!;
  }

  async exit(signal?: NodeJS.Signals): Promise<number | null> {
    if (this.child.exitCode !== null) return this.child.exitCode;
    if (signal !== undefined) this.child.kill(signal);
    const [code] = (await once(this.child, 'exit')) as [number | null];
    return code;
  }
}

/** What one progress line of a product may look like (not a terminal: plain lines). */
function progressLine(name: string): RegExp {
  return new RegExp(
    `^${name} (Pending|Provisioning( .+)?|Seeding \\d+/\\d+ \\d+%( \\d+ ev/s)?( eta \\d+s)?|Ready \\d+/\\d+ 100%( lag \\d+)?|Deleting( .+)?|Deleted)$`,
  );
}

describe('the CLI, live, against offtake api with an operator behind it', () => {
  const cache = () => ({ namespace, name: 'cache' });

  it('status --watch prints a line per change and ends when the product is Ready', async () => {
    const applied = await cli('apply', '-f', specFile('cache', orderSpec('redis')));
    assert.equal(applied.code, 0, applied.stderr);
    const watched = await cli('status', 'cache', '--watch', '--timeout', '120');
    assert.equal(watched.code, 0, watched.stderr);
    const lines = watched.stdout.trimEnd().split('\n');
    for (const line of lines) assert.match(line, progressLine('cache'));
    for (let i = 1; i < lines.length; i++) assert.notEqual(lines[i], lines[i - 1], 'one line per change');
    assert.match(lines.at(-1)!, /^cache Ready (\d+)\/\1 100% lag \d+$/);
    // Ready means seeded: the whole log was replayed.
    assert.equal((await api.status(cache()))?.status.seed?.total, orderEvents(0, 3000).length);
  });

  it('offtake api alone serves the connection the operator delivered, which works as given', async () => {
    const viaApi = await api.connection(cache());
    const viaUp = await new ApiClient(embedded.url).connection(cache());
    assert.deepEqual(viaApi, viaUp);
    const uri = await cli('connection', 'cache', 'uri');
    assert.equal(uri.stdout.trim(), viaApi.uri);
    const keyPrefix = (await cli('connection', 'cache', 'keyPrefix')).stdout.trim();
    const { stdout } = await run('redis-cli', [
      '-u',
      viaApi.uri,
      '--no-auth-warning',
      'HGET',
      `${keyPrefix}o-4`,
      'customer',
    ]);
    assert.equal(stdout.trim(), expectedOrders(3000).get('o-4')!.customer);
    const missing = await api.request('GET', `/v1/namespaces/${namespace}/dataproducts/nothing/connection`);
    assert.equal(missing.status, 404);
    const badField = await cli('connection', 'cache', 'nope');
    assert.equal(badField.code, 1);
    assert.match(badField.stderr, /has no field nope; it has .*uri/);
  });

  it('describe shows progress and the connection, without its password', async () => {
    const { password } = await api.connection(cache());
    const described = await cli('describe', 'cache');
    assert.equal(described.code, 0, described.stderr);
    assert.match(described.stdout, /^progress: Ready \d+\/\d+ 100% lag \d+$/m);
    // The ACL user is `<prefix>:dp:<ns>:<name>` under the test's own platform prefix.
    assert.match(described.stdout, /^ {2}uri: redis:\/\/[^:@/]*dp%3A[^:@/]*:\*\*\*@127\.0\.0\.1:6379/m);
    assert.match(described.stdout, /^ {2}keyPrefix: /m);
    assert.match(described.stdout, /^ {2}- type: StoreReady$/m);
    assert.ok(!described.stdout.includes(password as string), 'the password is not shown');
  });

  it('deadletters shows what the pipeline could not process, where and why; none for a product without', async () => {
    const none = await cli('deadletters', 'cache');
    assert.equal(none.code, 0, none.stderr);
    assert.match(none.stdout, /^No dead letters: every event cache read went through/);

    // An EU order without its customer: the customer field's expression fails on it.
    const poison = {
      id: 'poison-1',
      source: 'urn:test',
      type: 'OrderPlaced',
      data: { orderId: 'o-poison', region: 'EU', amount: 5 },
    };
    await api.publish('orders-picky', [...orderEvents(0, 4, 'picky'), poison]);
    const applied = await cli('apply', '-f', specFile('picky', orderSpec('redis', 'orders-picky')));
    assert.equal(applied.code, 0, applied.stderr);
    assert.equal((await cli('status', 'picky', '--watch', '--timeout', '120')).code, 0);

    const json = await cli('deadletters', 'picky', '-o', 'json');
    assert.equal(json.code, 0, json.stderr);
    const letters = json.stdout
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as { data: Record<string, unknown> });
    assert.equal(letters.length, 1);
    const [letter] = letters;
    assert.equal(letter.data.stream, 'orders-picky');
    assert.equal(letter.data.pointer, '/spec/transform/fields/customer');
    assert.equal(letter.data.expression, 'event.data.customerId');
    assert.match(String(letter.data.error), /customerId/);
    assert.equal((letter.data.event as { id: string }).id, 'poison-1', 'the event itself is in the letter');

    // The status says where they are and how many, and describe shows how to read them.
    await waitFor(
      async () =>
        JSON.stringify((await api.status({ namespace, name: 'picky' }))?.status.deadLetters) ===
          JSON.stringify({ stream: `${namespace}.picky.dlq`, count: 1 }) || 'not yet on the status',
      'the dead letters on the status',
    );
    assert.match(
      (await cli('describe', 'picky')).stdout,
      /deadLetters:\n {2}stream: cw-[0-9a-f]+\.picky\.dlq\n {2}count: 1\n {2}show: offtake -n cw-[0-9a-f]+ deadletters picky\n/,
    );

    const shown = await cli('deadletters', 'picky');
    assert.equal(shown.code, 0, shown.stderr);
    const [header, row, ...rest] = shown.stdout.trimEnd().split('\n');
    assert.match(header, /^TIME\s+SOURCE\s+WHERE\s+ERROR$/);
    assert.ok(row.includes(`orders-picky@${String(letter.data.offset)}`), row);
    assert.ok(row.includes('/spec/transform/fields/customer'), row);
    assert.deepEqual(rest, []);

    // A second failure, through the tail: --limit shows the oldest and says there are more.
    await api.publish('orders-picky', [
      { ...poison, id: 'poison-2', data: { ...poison.data, orderId: 'o-poison-2' } },
    ]);
    await waitFor(
      async () => (await cli('deadletters', 'picky', '-o', 'json')).stdout.trimEnd().split('\n').length === 2,
      'the second dead letter',
    );
    const limited = await cli('deadletters', 'picky', '--limit', '1', '-o', 'json');
    assert.equal(limited.stdout.trimEnd().split('\n').length, 1);
    assert.equal(
      (JSON.parse(limited.stdout) as { data: { event: { id: string } } }).data.event.id,
      'poison-1',
    );
    assert.match(limited.stderr, /the first 1 shown; more in stream cw-[0-9a-f]+\.picky\.dlq/);

    const missing = await cli('deadletters', 'no-such-product');
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /DataProduct cw-[0-9a-f]+\/no-such-product does not exist/);
    assert.equal((await cli('delete', 'picky', '--wait', '--timeout', '120')).code, 0);
  });

  it('get -w shows products appear, seed and go, until Ctrl-C; delete --wait returns once all is gone', async () => {
    const watch = new CliProcess(['get', '-w']);
    await watch.waitForLine(/^cache Ready /);
    const applied = await cli('apply', '-f', specFile('orders', orderSpec('postgres')));
    assert.equal(applied.code, 0, applied.stderr);
    await watch.waitForLine(/^orders Ready (\d+)\/\1 100%/);

    const deleted = await cli('delete', 'cache', '--wait', '--timeout', '120');
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.match(deleted.stdout, /deletion requested \(tearing down\)\ndataproduct\/cache deleted\n$/);
    // --wait returned: the product and everything it made are gone.
    assert.equal(await api.status(cache()), null);
    assert.deepEqual(await leftovers(redis, pool, prefix, cache()), []);
    await watch.waitForLine(/^cache Deleted$/);

    assert.equal(await watch.exit('SIGINT'), 0, watch.stderr);
    for (const line of watch.lines) assert.match(line, /^(cache|orders) /);
    for (const line of watch.lines.filter((l) => l.startsWith('orders '))) {
      assert.match(line, progressLine('orders'));
    }
    assert.ok(
      watch.lines.indexOf('cache Deleted') > watch.lines.findIndex((l) => l.startsWith('orders Ready')),
    );
  });

  it('status --watch ends with the failure when the product cannot become Ready, and when it is deleted', async () => {
    const spec = orderSpec('topic');
    spec.target.topic = { stream: 'orders' };
    assert.equal((await cli('apply', '-f', specFile('loop', spec))).code, 0);
    const timedOut = await cli('status', 'loop', '--watch', '--timeout', '5');
    assert.equal(timedOut.code, 1);
    assert.match(timedOut.stderr, /dataproduct\/loop is not Ready after 5s \(Failed TopicStreamIsSource: /);

    const watch = new CliProcess(['status', 'loop', '--watch']);
    await watch.waitForLine(/^loop Failed TopicStreamIsSource: /);
    assert.equal((await cli('delete', 'loop')).code, 0);
    assert.equal(await watch.exit(), 1);
    assert.match(watch.stderr, /dataproduct\/loop was deleted/);

    const unknown = await cli('status', 'nothing', '--watch');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /does not exist/);
  });

  it('cleans up: the postgres product is deleted with --wait', async () => {
    const deleted = await cli('delete', 'orders', '--wait', '--timeout', '120');
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.deepEqual(await leftovers(redis, pool, prefix, { namespace, name: 'orders' }), []);
    assert.equal((await cli('get')).stdout, 'No DataProducts found.\n');
  });
});
