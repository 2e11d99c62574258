/**
 * `?watch=true` on the DataProduct list paths, over real HTTP against a real Redis store: the
 * stream starts with the current products (or after a given resourceVersion), follows every
 * change in order, honours namespace, field and label selectors (an object leaving a label
 * selector is DELETED for the watcher), ends after timeoutSeconds, reports a too-new
 * resourceVersion as a last ERROR line, ends when the client goes away, and does not keep the
 * server from stopping.
 */
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { createApp } from '../api/app.ts';
import { stopServer } from '../api/server.ts';
import { createLogger } from '../lib/logger.ts';
import { RedisResourceStore } from '../lib/resource-store/redis-resource-store.ts';
import type { DataProductInput } from '../lib/resource-store/resource-store.ts';
import { DataProductValidator } from '../lib/validation/validator.ts';
import { orderSpec } from './operator-helpers.ts';
import { dropPrefix, testRedis, uniquePrefix } from './helpers/redis.ts';

interface Line {
  type: string;
  object: {
    metadata: { name: string; namespace: string; resourceVersion: string; labels?: Record<string, string> };
    code?: string;
    status?: number;
  };
}

/** A watch read line by line: `next()` is the next line, `ended` resolves when the server ends the stream. */
class WatchReader {
  private readonly lines: Line[] = [];
  private readonly waiters: ((line: Line | null) => void)[] = [];
  private done = false;
  readonly ended: Promise<void>;
  readonly status: number;
  readonly contentType: string;
  private readonly abort: AbortController;

  private constructor(res: Response, abort: AbortController) {
    this.status = res.status;
    this.contentType = res.headers.get('content-type') ?? '';
    this.abort = abort;
    this.ended = this.read(res);
  }

  static async open(url: string): Promise<WatchReader> {
    const abort = new AbortController();
    return new WatchReader(await fetch(url, { signal: abort.signal }), abort);
  }

  private async read(res: Response): Promise<void> {
    let buffered = '';
    try {
      for await (const chunk of res.body!.pipeThrough(new TextDecoderStream())) {
        buffered += chunk;
        let end: number;
        while ((end = buffered.indexOf('\n')) !== -1) {
          this.push(JSON.parse(buffered.slice(0, end)) as Line);
          buffered = buffered.slice(end + 1);
        }
      }
    } catch {
      // aborted by close()
    }
    this.done = true;
    for (const waiter of this.waiters.splice(0)) waiter(null);
  }

  private push(line: Line): void {
    const waiter = this.waiters.shift();
    if (waiter) waiter(line);
    else this.lines.push(line);
  }

  /** The next line, or null once the stream ended. */
  next(): Promise<Line | null> {
    const line = this.lines.shift();
    if (line !== undefined) return Promise.resolve(line);
    if (this.done) return Promise.resolve(null);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** The next `n` lines, as `TYPE name` strings. */
  async take(n: number): Promise<string[]> {
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      const line = await this.next();
      assert.ok(line, `the stream ended after ${out.join(', ')}`);
      out.push(`${line.type} ${line.object.metadata.name}`);
    }
    return out;
  }

  close(): void {
    this.abort.abort();
  }
}

let redis: Redis;
let prefix: string;
let store: RedisResourceStore;
let server: Server;
let base: string;

function product(namespace: string, name: string, labels: Record<string, string> = {}): DataProductInput {
  return { metadata: { namespace, name, labels }, spec: orderSpec('redis') };
}

before(async () => {
  redis = testRedis();
  prefix = uniquePrefix('watch');
  store = new RedisResourceStore(redis, { prefix });
  const app = createApp({
    store,
    validator: new DataProductValidator({ allowDedicated: false }),
    logger: createLogger('silent'),
    maxBodyBytes: 1024 * 1024,
    version: 'test',
    ready: () => Promise.resolve(true),
  });
  server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const address = server.address();
  base = `http://127.0.0.1:${typeof address === 'object' && address !== null ? address.port : 0}`;
});

after(async () => {
  if (server.listening) await stopServer(server, () => store.close());
  await dropPrefix(redis, prefix);
  redis.disconnect();
});

describe('watching DataProducts over HTTP', () => {
  it('starts with the current products, then streams every change in order as JSON lines', async () => {
    await store.create(product('watch-a', 'one'));
    const watch = await WatchReader.open(`${base}/v1/namespaces/watch-a/dataproducts?watch=true`);
    assert.equal(watch.status, 200);
    assert.match(watch.contentType, /^application\/x-ndjson/);
    assert.deepEqual(await watch.take(1), ['ADDED one']);
    await store.create(product('watch-a', 'two'));
    await store.create(product('watch-b', 'elsewhere'));
    await store.updateStatus('watch-a', 'one', { phase: 'Seeding' });
    await store.delete('watch-a', 'two');
    assert.deepEqual(await watch.take(3), ['ADDED two', 'MODIFIED one', 'DELETED two']);
    watch.close();
    await watch.ended;
  });

  it('resumes after a resourceVersion, across namespaces, and selects one name by field selector', async () => {
    const { resourceVersion } = await store.list();
    await store.create(product('watch-c', 'three'));
    await store.create(product('watch-d', 'four'));
    const all = await WatchReader.open(
      `${base}/v1/dataproducts?watch=true&resourceVersion=${resourceVersion}`,
    );
    assert.deepEqual(await all.take(2), ['ADDED three', 'ADDED four']);
    all.close();

    const one = await WatchReader.open(
      `${base}/v1/dataproducts?watch=true&fieldSelector=metadata.name%3Dfour&timeoutSeconds=1`,
    );
    assert.deepEqual(await one.take(1), ['ADDED four']);
    // timeoutSeconds: the server ends the stream by itself.
    assert.equal(await one.next(), null);
  });

  it('sends DELETED when an object stops matching the label selector, ADDED when it starts', async () => {
    await store.create(product('watch-e', 'labelled', { tier: 'gold' }));
    const watch = await WatchReader.open(
      `${base}/v1/namespaces/watch-e/dataproducts?watch=true&labelSelector=tier%3Dgold`,
    );
    assert.deepEqual(await watch.take(1), ['ADDED labelled']);
    await store.replace(product('watch-e', 'labelled', { tier: 'silver' }));
    await store.create(product('watch-e', 'unlabelled'));
    await store.replace(product('watch-e', 'labelled', { tier: 'gold' }));
    assert.deepEqual(await watch.take(2), ['DELETED labelled', 'ADDED labelled']);
    watch.close();
  });

  it('ends with an ERROR line when the resourceVersion is not the store’s; bad parameters are 400 problems', async () => {
    const watch = await WatchReader.open(`${base}/v1/dataproducts?watch=true&resourceVersion=999999999`);
    const line = await watch.next();
    assert.equal(line?.type, 'ERROR');
    assert.equal(line.object.code, 'watch-expired');
    assert.equal(line.object.status, 410);
    assert.equal(await watch.next(), null);

    for (const query of [
      'watch=maybe',
      'watch=true&fieldSelector=spec.target.type%3Dredis',
      'watch=true&timeoutSeconds=0',
      'watch=true&labelSelector=%3D%3D',
      'watch=true&resourceVersion=abc',
    ]) {
      const res = await fetch(`${base}/v1/dataproducts?${query}`);
      assert.equal(res.status, 400, query);
      assert.match(res.headers.get('content-type') ?? '', /application\/problem\+json/);
      assert.equal(((await res.json()) as { code: string }).code, 'invalid-parameter');
    }
  });

  it('closes the watch when the client goes away, and does not keep the server from stopping', async () => {
    // The store's open watches (each holds a Redis connection of its own); private, read for this check only.
    const openWatches = () => (store as unknown as { watches: Set<unknown> }).watches.size;
    const gone = await WatchReader.open(`${base}/v1/dataproducts?watch=true`);
    await gone.next();
    assert.equal(openWatches(), 1);
    gone.close();
    await gone.ended;
    for (let i = 0; i < 50 && openWatches() > 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(openWatches(), 0, 'the watch is closed once its client is gone');

    const open = await WatchReader.open(`${base}/v1/dataproducts?watch=true`);
    await open.next();
    await stopServer(server, () => store.close());
    assert.equal(server.listening, false);
    await open.ended;
  });
});
