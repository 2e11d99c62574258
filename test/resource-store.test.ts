import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import type { DataProductSpec, DataProductStatus } from '../crds/generated/types.ts';
import { isOfftakeError } from '../lib/errors.ts';
import { parseLabelSelector } from '../lib/resource-store/label-selector.ts';
import { RedisResourceStore } from '../lib/resource-store/redis-resource-store.ts';
import type { DataProductInput, Watch, WatchEvent } from '../lib/resource-store/resource-store.ts';
import { dropPrefix, testRedis, uniquePrefix } from './helpers/redis.ts';

const SPEC: DataProductSpec = {
  source: { streams: ['orders'], types: ['OrderPlaced', 'OrderCancelled'], startFrom: 'earliest' },
  filter: "event.data.region == 'EU' && event.data.amount > 100",
  transform: {
    key: 'event.data.customerId',
    fields: { customer: 'event.data.customerId', amount: 'event.data.amount' },
  },
  target: {
    type: 'postgres',
    placement: 'shared',
    postgres: { table: 'eu_big_orders', columns: { customer: 'text', amount: 'numeric' } },
  },
  deletionPolicy: 'Delete',
};

const STATUS: DataProductStatus = {
  observedGeneration: 1,
  phase: 'Seeding',
  conditions: [{ type: 'Ready', status: 'False', reason: 'Seeding' }],
};

const FINALIZER = 'offtake.dev/teardown';
const NOW = new Date('2025-03-04T05:06:07.890Z');
const LATER = new Date('2025-03-04T06:00:00.000Z');

function input(
  name: string,
  opts: { namespace?: string; spec?: DataProductSpec } & Partial<DataProductInput['metadata']> = {},
): DataProductInput {
  const { namespace = 'checkout', spec = SPEC, ...metadata } = opts;
  return { metadata: { name, namespace, ...metadata }, spec };
}

function specWithTable(table: string): DataProductSpec {
  return { ...SPEC, target: { ...SPEC.target, postgres: { table, columns: { customer: 'text' } } } };
}

/** The same JSON value with every object's keys in reverse order. */
function reverseKeys<T>(value: T): T {
  if (Array.isArray(value)) return value.map(reverseKeys) as T;
  if (typeof value !== 'object' || value === null) return value;
  return Object.fromEntries(
    Object.entries(value)
      .reverse()
      .map(([k, v]) => [k, reverseKeys(v)]),
  ) as T;
}

/** Asserts that `promise` rejects with an OfftakeError of `code` and returns it. */
async function rejectsWith(promise: Promise<unknown>, code: string, message?: RegExp) {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isOfftakeError(err), `expected an OfftakeError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (message !== undefined) assert.match(err.message, message);
    return true;
  });
}

/** The next `n` events of a watch. */
async function take(watch: Watch, n: number): Promise<WatchEvent[]> {
  const iterator = watch[Symbol.asyncIterator]();
  const events: WatchEvent[] = [];
  while (events.length < n) {
    const next = await iterator.next();
    assert.ok(!next.done, `the watch ended after ${events.length} of ${n} events`);
    events.push(next.value);
  }
  return events;
}

function summary(events: WatchEvent[]): string[] {
  return events.map((e) => `${e.type} ${e.object.metadata.namespace}/${e.object.metadata.name}`);
}

describe('RedisResourceStore', () => {
  let redis: Redis;
  let prefix: string;
  let store: RedisResourceStore;
  let clock: Date;
  const extraStores: RedisResourceStore[] = [];
  const extraConnections: Redis[] = [];

  /** Another store on the same keys over a connection of its own: another API process. */
  function secondStore(opts: { watchHistory?: number } = {}): RedisResourceStore {
    const connection = testRedis();
    extraConnections.push(connection);
    const other = new RedisResourceStore(connection, { prefix, clock: () => clock, ...opts });
    extraStores.push(other);
    return other;
  }

  before(() => {
    redis = testRedis();
  });
  after(() => {
    redis.disconnect();
  });
  beforeEach(() => {
    prefix = uniquePrefix('resource-store');
    clock = NOW;
    store = new RedisResourceStore(redis, { prefix, clock: () => clock });
  });
  afterEach(async () => {
    await store.close();
    for (const other of extraStores.splice(0)) await other.close();
    for (const connection of extraConnections.splice(0)) connection.disconnect();
    await dropPrefix(redis, prefix);
    assert.equal((await redis.scan('0', 'MATCH', `${prefix}:*`, 'COUNT', 1000))[1].length, 0);
  });

  describe('create and get', () => {
    it('creates generation 1 with a uid, a resourceVersion and the clock as creationTimestamp', async () => {
      const created = await store.create(input('eu-big-orders', { labels: { team: 'checkout' } }));
      assert.equal(created.apiVersion, 'offtake.dev/v1alpha1');
      assert.equal(created.kind, 'DataProduct');
      assert.equal(created.metadata.generation, 1);
      assert.match(
        created.metadata.uid,
        /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/,
      );
      assert.match(created.metadata.resourceVersion, /^[1-9][0-9]*$/);
      assert.equal(created.metadata.creationTimestamp, '2025-03-04T05:06:07Z');
      assert.equal(created.metadata.deletionTimestamp, undefined);
      assert.deepEqual(created.metadata.finalizers, []);
      assert.deepEqual(created.metadata.labels, { team: 'checkout' });
      assert.deepEqual(created.metadata.annotations, {});
      assert.deepEqual(created.spec, SPEC);
      assert.equal(created.status, undefined);
      assert.deepEqual(await store.get('checkout', 'eu-big-orders'), created);
    });

    it('gives every object its own uid and a rising resourceVersion', async () => {
      const a = await store.create(input('a'));
      const b = await store.create(input('b'));
      assert.notEqual(a.metadata.uid, b.metadata.uid);
      assert.ok(Number(b.metadata.resourceVersion) > Number(a.metadata.resourceVersion));
    });

    it('refuses to create an existing name, and changes nothing', async () => {
      const created = await store.create(input('dup'));
      await rejectsWith(
        store.create(input('dup', { spec: specWithTable('other') })),
        'already-exists',
        /checkout\/dup/,
      );
      assert.deepEqual(await store.get('checkout', 'dup'), created);
      // The same name in another namespace is another object.
      await store.create(input('dup', { namespace: 'billing' }));
    });

    it('ignores status, and a resourceVersion, on create; keeps given finalizers', async () => {
      const withStatus = {
        ...input('s', { resourceVersion: '999', finalizers: [FINALIZER] }),
        status: STATUS,
      };
      const created = await store.create(withStatus);
      assert.equal(created.status, undefined);
      assert.notEqual(created.metadata.resourceVersion, '999');
      assert.deepEqual(created.metadata.finalizers, [FINALIZER]);
    });

    it('answers not-found for a missing object', async () => {
      await rejectsWith(store.get('checkout', 'missing'), 'not-found', /checkout\/missing/);
    });

    it('rejects names that are not DNS-1123 labels before they reach a key', async () => {
      for (const bad of ['Upper', 'a:b', 'a/b', '-a', 'a'.repeat(64), '', 'a*']) {
        await rejectsWith(store.get('checkout', bad), 'invalid-name');
        await rejectsWith(store.create(input(bad)), 'invalid-name');
        await rejectsWith(store.list({ namespace: bad }), 'invalid-name');
      }
      assert.equal((await redis.scan('0', 'MATCH', `${prefix}:*`, 'COUNT', 1000))[1].length, 0);
    });

    it('rejects invalid labels, annotation keys and finalizers', async () => {
      await rejectsWith(store.create(input('l', { labels: { 'bad key': 'x' } })), 'invalid-spec');
      await rejectsWith(store.create(input('l', { labels: { ok: 'bad value!' } })), 'invalid-spec');
      await rejectsWith(store.create(input('l', { annotations: { '/nope': 'x' } })), 'invalid-spec');
      await rejectsWith(store.create(input('l', { finalizers: ['not a finalizer'] })), 'invalid-spec');
      await rejectsWith(store.get('checkout', 'l'), 'not-found');
    });
  });

  describe('replace', () => {
    it('bumps generation only when the spec changes; resourceVersion on every write', async () => {
      const v1 = await store.create(input('p'));
      const v2 = await store.replace(input('p', { labels: { tier: 'gold' }, annotations: { note: 'x' } }));
      assert.equal(v2.metadata.generation, 1);
      assert.notEqual(v2.metadata.resourceVersion, v1.metadata.resourceVersion);
      assert.deepEqual(v2.metadata.labels, { tier: 'gold' });
      const v3 = await store.replace(input('p', { spec: specWithTable('t2'), labels: { tier: 'gold' } }));
      assert.equal(v3.metadata.generation, 2);
      assert.deepEqual(v3.spec, specWithTable('t2'));
      assert.deepEqual(v3.metadata.annotations, {}, 'replace replaces annotations');
      // The same spec with its keys in another order is the same spec.
      const v4 = await store.replace(input('p', { spec: reverseKeys(specWithTable('t2')), labels: {} }));
      assert.equal(v4.metadata.generation, 2);
      assert.equal(v4.metadata.uid, v1.metadata.uid);
      assert.equal(v4.metadata.creationTimestamp, v1.metadata.creationTimestamp);
      assert.deepEqual(await store.get('checkout', 'p'), v4);
    });

    it('is no write when nothing changes: same resourceVersion, no event', async () => {
      const created = await store.create(input('same', { labels: { a: 'b' } }));
      const watch = store.watch({ resourceVersion: created.metadata.resourceVersion });
      const again = await store.replace(input('same', { labels: { a: 'b' } }));
      assert.equal(again.metadata.resourceVersion, created.metadata.resourceVersion);
      const marker = await store.create(input('marker'));
      const [event] = await take(watch, 1);
      assert.equal(event.object.metadata.name, 'marker');
      assert.equal(event.object.metadata.resourceVersion, marker.metadata.resourceVersion);
    });

    it('ignores status on replace and keeps the stored one', async () => {
      await store.create(input('st'));
      await store.updateStatus('checkout', 'st', STATUS);
      const replaced = await store.replace({
        ...input('st', { spec: specWithTable('x') }),
        status: { phase: 'Failed' },
      } as DataProductInput);
      assert.deepEqual(replaced.status, STATUS);
      assert.deepEqual((await store.get('checkout', 'st')).status, STATUS);
    });

    it('answers conflict, naming both versions, to a stale resourceVersion', async () => {
      const v1 = await store.create(input('c'));
      const v2 = await store.replace(input('c', { labels: { x: 'y' } }));
      await rejectsWith(
        store.replace(
          input('c', { spec: specWithTable('lost'), resourceVersion: v1.metadata.resourceVersion }),
        ),
        'conflict',
        new RegExp(
          `resourceVersion ${v1.metadata.resourceVersion}\\b.*current one is ${v2.metadata.resourceVersion}\\b`,
        ),
      );
      assert.deepEqual(await store.get('checkout', 'c'), v2);
      const v3 = await store.replace(
        input('c', { spec: specWithTable('won'), resourceVersion: v2.metadata.resourceVersion }),
      );
      assert.equal(v3.metadata.generation, 2);
    });

    it('answers not-found for a missing object', async () => {
      await rejectsWith(store.replace(input('ghost')), 'not-found');
      await rejectsWith(store.get('checkout', 'ghost'), 'not-found');
    });

    it('lets exactly one of many concurrent replaces with the same resourceVersion win', async () => {
      const created = await store.create(input('race'));
      const stores = [store, secondStore(), secondStore(), secondStore()];
      const attempts = Array.from({ length: 12 }, (_, i) =>
        stores[i % stores.length].replace(
          input('race', { spec: specWithTable(`t${i}`), resourceVersion: created.metadata.resourceVersion }),
        ),
      );
      const results = await Promise.allSettled(attempts);
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r) => r.status === 'rejected');
      assert.equal(won.length, 1);
      assert.equal(lost.length, 11);
      for (const r of lost) assert.ok(isOfftakeError(r.reason, 'conflict'), String(r.reason));
      const stored = await store.get('checkout', 'race');
      assert.deepEqual(stored, won[0].value);
      assert.equal(stored.metadata.generation, 2);
    });

    it('applies every concurrent write without a resourceVersion (none lost to a race)', async () => {
      await store.create(input('merge'));
      const other = secondStore();
      const statuses = Array.from({ length: 20 }, (_, i) =>
        (i % 2 === 0 ? store : other).updateStatus('checkout', 'merge', {
          ...STATUS,
          lag: { events: i + 1 },
        }),
      );
      const specChange = other.replace(input('merge', { spec: specWithTable('merged'), labels: { m: '1' } }));
      const finalizers = store.setFinalizers('checkout', 'merge', [FINALIZER]);
      const results = await Promise.all([...statuses, specChange, finalizers]);
      const stored = await store.get('checkout', 'merge');
      assert.deepEqual(stored.spec, specWithTable('merged'));
      assert.deepEqual(stored.metadata.labels, { m: '1' });
      assert.deepEqual(stored.metadata.finalizers, [FINALIZER]);
      assert.equal(stored.metadata.generation, 2);
      assert.ok((stored.status?.lag?.events ?? 0) >= 1);
      // 22 writes, 22 distinct versions.
      const versions = new Set(results.map((r) => r?.metadata.resourceVersion));
      assert.equal(versions.size, 22);
    });
  });

  describe('updateStatus', () => {
    it('writes only the status: spec and generation untouched, resourceVersion new', async () => {
      const created = await store.create(input('status'));
      const updated = await store.updateStatus('checkout', 'status', STATUS);
      assert.deepEqual(updated.status, STATUS);
      assert.deepEqual(updated.spec, SPEC);
      assert.equal(updated.metadata.generation, 1);
      assert.notEqual(updated.metadata.resourceVersion, created.metadata.resourceVersion);
      assert.deepEqual(await store.get('checkout', 'status'), updated);
      // A spec smuggled in beside the status is not written.
      const smuggled = { ...STATUS, phase: 'Ready', spec: specWithTable('smuggled') } as DataProductStatus;
      await store.updateStatus('checkout', 'status', smuggled);
      assert.deepEqual((await store.get('checkout', 'status')).spec, SPEC);
    });

    it('checks a given resourceVersion and answers not-found for a missing object', async () => {
      const created = await store.create(input('sv'));
      const updated = await store.updateStatus('checkout', 'sv', STATUS, created.metadata.resourceVersion);
      await rejectsWith(
        store.updateStatus('checkout', 'sv', { phase: 'Ready' }, created.metadata.resourceVersion),
        'conflict',
        new RegExp(`${created.metadata.resourceVersion}.*${updated.metadata.resourceVersion}`),
      );
      await rejectsWith(store.updateStatus('checkout', 'nope', STATUS), 'not-found');
    });
  });

  describe('delete and finalizers', () => {
    it('removes an object without finalizers at once and emits DELETED', async () => {
      const created = await store.create(input('gone'));
      const watch = store.watch({ resourceVersion: created.metadata.resourceVersion });
      assert.equal(await store.delete('checkout', 'gone'), undefined);
      await rejectsWith(store.get('checkout', 'gone'), 'not-found');
      assert.deepEqual((await store.list()).items, []);
      const [event] = await take(watch, 1);
      assert.equal(event.type, 'DELETED');
      assert.equal(event.object.metadata.uid, created.metadata.uid);
      assert.ok(Number(event.object.metadata.resourceVersion) > Number(created.metadata.resourceVersion));
      await rejectsWith(store.delete('checkout', 'gone'), 'not-found');
      // The name is free again, for a new object.
      const again = await store.create(input('gone'));
      assert.notEqual(again.metadata.uid, created.metadata.uid);
    });

    it('with finalizers only marks the object (once), and removes it when the last finalizer goes', async () => {
      const created = await store.create(input('fin', { finalizers: [FINALIZER, 'offtake.dev/other'] }));
      const watch = store.watch({ resourceVersion: created.metadata.resourceVersion });

      const marked = await store.delete('checkout', 'fin');
      assert.ok(marked);
      assert.equal(marked.metadata.deletionTimestamp, '2025-03-04T05:06:07Z');
      assert.equal(marked.metadata.generation, 1);
      assert.deepEqual(await store.get('checkout', 'fin'), marked);

      clock = LATER;
      const again = await store.delete('checkout', 'fin');
      assert.deepEqual(again, marked, 'a second delete changes nothing');

      // A deleting object can still take status and lose finalizers, but gain none.
      await store.updateStatus('checkout', 'fin', { phase: 'Deleting' });
      await rejectsWith(
        store.setFinalizers('checkout', 'fin', [FINALIZER, 'offtake.dev/other', 'x.dev/new']),
        'invalid-spec',
      );
      await rejectsWith(
        store.replace(input('fin', { finalizers: [FINALIZER, 'x.dev/new'] })),
        'invalid-spec',
        /being deleted/,
      );
      const one = await store.setFinalizers('checkout', 'fin', [FINALIZER]);
      assert.ok(one);
      assert.deepEqual(one.metadata.finalizers, [FINALIZER]);
      assert.equal(one.metadata.deletionTimestamp, '2025-03-04T05:06:07Z');

      assert.equal(await store.setFinalizers('checkout', 'fin', []), undefined);
      await rejectsWith(store.get('checkout', 'fin'), 'not-found');

      const events = await take(watch, 4);
      assert.deepEqual(
        events.map((e) => e.type),
        ['MODIFIED', 'MODIFIED', 'MODIFIED', 'DELETED'],
      );
      assert.equal(events[0].object.metadata.deletionTimestamp, '2025-03-04T05:06:07Z');
      assert.deepEqual(events[3].object.metadata.finalizers, []);
    });

    it('removes a deleting object when a replace drops its last finalizer', async () => {
      await store.create(input('rf', { finalizers: [FINALIZER] }));
      await store.delete('checkout', 'rf');
      const last = await store.replace(input('rf', { finalizers: [] }));
      assert.deepEqual(last.metadata.finalizers, []);
      await rejectsWith(store.get('checkout', 'rf'), 'not-found');
    });

    it('keeps finalizers on replace when none are given, and setFinalizers on a live object does not delete it', async () => {
      await store.create(input('keep', { finalizers: [FINALIZER] }));
      const replaced = await store.replace(input('keep', { labels: { a: 'b' } }));
      assert.deepEqual(replaced.metadata.finalizers, [FINALIZER]);
      const cleared = await store.setFinalizers('checkout', 'keep', []);
      assert.ok(cleared);
      assert.deepEqual(cleared.metadata.finalizers, []);
      assert.deepEqual(await store.get('checkout', 'keep'), cleared);
    });

    it('checks a given resourceVersion on delete and setFinalizers', async () => {
      const created = await store.create(input('dv', { finalizers: [FINALIZER] }));
      await store.updateStatus('checkout', 'dv', STATUS);
      await rejectsWith(store.delete('checkout', 'dv', created.metadata.resourceVersion), 'conflict');
      await rejectsWith(
        store.setFinalizers('checkout', 'dv', [], created.metadata.resourceVersion),
        'conflict',
      );
      const current = await store.get('checkout', 'dv');
      assert.equal(current.metadata.deletionTimestamp, undefined);
      assert.deepEqual(current.metadata.finalizers, [FINALIZER]);
      const marked = await store.delete('checkout', 'dv', current.metadata.resourceVersion);
      assert.ok(marked?.metadata.deletionTimestamp);
    });
  });

  describe('list', () => {
    it('lists sorted by namespace and name, by namespace, with the current resourceVersion', async () => {
      await store.create(input('b', { namespace: 'zeta' }));
      await store.create(input('b', { namespace: 'alpha' }));
      await store.create(input('a-b', { namespace: 'alpha' }));
      await store.create(input('a', { namespace: 'alpha-2' }));
      const last = await store.create(input('a', { namespace: 'alpha' }));
      const all = await store.list();
      assert.deepEqual(
        all.items.map((i) => `${i.metadata.namespace}/${i.metadata.name}`),
        ['alpha/a', 'alpha/a-b', 'alpha/b', 'alpha-2/a', 'zeta/b'],
      );
      assert.equal(all.resourceVersion, last.metadata.resourceVersion);
      const alpha = await store.list({ namespace: 'alpha' });
      assert.deepEqual(
        alpha.items.map((i) => i.metadata.name),
        ['a', 'a-b', 'b'],
      );
      assert.equal(alpha.resourceVersion, last.metadata.resourceVersion);
      assert.deepEqual((await store.list({ namespace: 'empty' })).items, []);
      assert.deepEqual(await store.get('alpha', 'a'), alpha.items[0]);
    });

    it('answers resourceVersion 0 and no items for an empty store', async () => {
      assert.deepEqual(await store.list(), { items: [], resourceVersion: '0' });
    });

    it('drops deleted objects from the index, and the resourceVersion still rises', async () => {
      await store.create(input('x'));
      await store.create(input('y'));
      await store.delete('checkout', 'x');
      const listed = await store.list({ namespace: 'checkout' });
      assert.deepEqual(
        listed.items.map((i) => i.metadata.name),
        ['y'],
      );
      assert.equal(listed.resourceVersion, '3');
    });

    it('filters by label selector', async () => {
      await store.create(input('gold-eu', { labels: { tier: 'gold', region: 'eu' } }));
      await store.create(input('silver-us', { labels: { tier: 'silver', region: 'us' } }));
      await store.create(input('plain'));
      const names = async (labelSelector: string, namespace?: string) =>
        (await store.list({ labelSelector, namespace })).items.map((i) => i.metadata.name);
      assert.deepEqual(await names('tier=gold'), ['gold-eu']);
      assert.deepEqual(await names('tier!=gold'), ['plain', 'silver-us']);
      assert.deepEqual(await names('tier in (gold, silver),region notin (us)'), ['gold-eu']);
      assert.deepEqual(await names('!tier'), ['plain']);
      assert.deepEqual(await names('region', 'checkout'), ['gold-eu', 'silver-us']);
      assert.deepEqual(await names(''), ['gold-eu', 'plain', 'silver-us']);
      assert.deepEqual(await names('tier=gold', 'elsewhere'), []);
      await rejectsWith(store.list({ labelSelector: 'tier in (gold' }), 'invalid-parameter', /column/);
    });
  });

  describe('watch', () => {
    it('delivers every change in order, then resumes from the last seen version with none missed or repeated', async () => {
      const base = await store.list();
      const watch = store.watch({ resourceVersion: base.resourceVersion });
      await store.create(input('one'));
      await store.create(input('two', { namespace: 'billing', finalizers: [FINALIZER] }));
      await store.replace(input('one', { spec: specWithTable('one_v2') }));
      await store.updateStatus('checkout', 'one', STATUS);
      await store.delete('billing', 'two');
      await store.setFinalizers('billing', 'two', []);
      await store.delete('checkout', 'one');
      const events = await take(watch, 7);
      assert.deepEqual(summary(events), [
        'ADDED checkout/one',
        'ADDED billing/two',
        'MODIFIED checkout/one',
        'MODIFIED checkout/one',
        'MODIFIED billing/two',
        'DELETED billing/two',
        'DELETED checkout/one',
      ]);
      const versions = events.map((e) => Number(e.object.metadata.resourceVersion));
      assert.deepEqual(
        versions,
        versions.map((_, i) => Number(base.resourceVersion) + 1 + i),
      );
      assert.equal(events[2].object.metadata.generation, 2);
      assert.deepEqual(events[3].object.status, STATUS);
      await watch.close();

      // Changes made while nobody watches.
      const lastSeen = events[6].object.metadata.resourceVersion;
      await store.create(input('three'));
      await store.updateStatus('checkout', 'three', STATUS);
      await store.create(input('four', { namespace: 'billing' }));

      const resumed = store.watch({ resourceVersion: lastSeen });
      const missed = await take(resumed, 3);
      assert.deepEqual(summary(missed), [
        'ADDED checkout/three',
        'MODIFIED checkout/three',
        'ADDED billing/four',
      ]);
      // Nothing more is pending: the next event is the next write.
      await store.create(input('five'));
      assert.deepEqual(summary(await take(resumed, 1)), ['ADDED checkout/five']);
    });

    it('without a resourceVersion starts from now', async () => {
      await store.create(input('before'));
      const watch = store.watch();
      await store.create(input('after'));
      assert.deepEqual(summary(await take(watch, 1)), ['ADDED checkout/after']);
    });

    it('filters by namespace', async () => {
      const watch = store.watch({ namespace: 'billing', resourceVersion: '0' });
      await store.create(input('a'));
      await store.create(input('b', { namespace: 'billing' }));
      await store.create(input('c'));
      await store.replace(input('b', { namespace: 'billing', labels: { x: 'y' } }));
      assert.deepEqual(summary(await take(watch, 2)), ['ADDED billing/b', 'MODIFIED billing/b']);
    });

    it('ends iteration when closed, even while a read is pending', async () => {
      const watch = store.watch();
      const iterator = watch[Symbol.asyncIterator]();
      const pending = iterator.next();
      await watch.close();
      assert.deepEqual(await pending, { done: true, value: undefined });
      assert.deepEqual(await iterator.next(), { done: true, value: undefined });
    });

    it('ends every open watch when the store closes, and a break in for-await closes the watch', async () => {
      await store.create(input('x'));
      const broken = store.watch({ resourceVersion: '0' });
      for await (const event of broken) {
        assert.equal(event.type, 'ADDED');
        break;
      }
      const open = store.watch();
      const pending = open[Symbol.asyncIterator]().next();
      await store.close();
      assert.equal((await pending).done, true);
    });

    it('fails with watch-expired from a version older than the kept history', async () => {
      await store.close();
      store = new RedisResourceStore(redis, { prefix, clock: () => clock, watchHistory: 3 });
      for (let i = 0; i < 10; i += 1) await store.create(input(`p${i}`));
      await rejectsWith(
        take(store.watch({ resourceVersion: '1' }), 1),
        'watch-expired',
        /resourceVersion 1\b/,
      );
      await rejectsWith(take(store.watch({ resourceVersion: '6' }), 1), 'watch-expired');
      // The oldest kept change is 8, so a watch from 7 is complete.
      const ok = await take(store.watch({ resourceVersion: '7' }), 3);
      assert.deepEqual(
        ok.map((e) => e.object.metadata.name),
        ['p7', 'p8', 'p9'],
      );
    });

    it('fails with watch-expired when it falls behind the trimming of the history', async () => {
      await store.close();
      store = new RedisResourceStore(redis, { prefix, clock: () => clock, watchHistory: 3 });
      await store.create(input('first'));
      const slow = store.watch({ resourceVersion: '1' });
      for (let i = 0; i < 6; i += 1) await store.create(input(`p${i}`));
      await rejectsWith(take(slow, 1), 'watch-expired');
    });

    it('fails with watch-expired from a version ahead of the store, and rejects a malformed one', async () => {
      await store.create(input('x'));
      await rejectsWith(take(store.watch({ resourceVersion: '50' }), 1), 'watch-expired', /ahead/);
      for (const bad of ['abc', '-1', '1.5', '', '01']) {
        assert.throws(
          () => store.watch({ resourceVersion: bad }),
          (err: unknown) => isOfftakeError(err, 'invalid-parameter'),
        );
      }
      assert.throws(
        () => store.watch({ namespace: 'Bad' }),
        (err: unknown) => isOfftakeError(err, 'invalid-name'),
      );
    });
  });

  describe('durability across a restart of the API', () => {
    it('a new store on a new connection sees the same objects and resumes the watch', async () => {
      const watch = store.watch({ resourceVersion: '0' });
      const a = await store.create(input('a', { finalizers: [FINALIZER] }));
      await store.updateStatus('checkout', 'a', STATUS);
      const seen = await take(watch, 2);
      await store.create(input('b'));
      await store.delete('checkout', 'a');
      const before = await store.list();
      await store.close();

      const restarted = secondStore();
      assert.deepEqual(await restarted.list(), before);
      assert.deepEqual((await restarted.get('checkout', 'a')).metadata.uid, a.metadata.uid);
      const resumed = restarted.watch({ resourceVersion: seen[1].object.metadata.resourceVersion });
      await restarted.setFinalizers('checkout', 'a', []);
      assert.deepEqual(summary(await take(resumed, 3)), [
        'ADDED checkout/b',
        'MODIFIED checkout/a',
        'DELETED checkout/a',
      ]);
      // Versions keep rising across the restart.
      const c = await restarted.create(input('c'));
      assert.equal(c.metadata.resourceVersion, '6');
    });
  });
});

describe('parseLabelSelector', () => {
  const labels = {
    none: {},
    gold: { tier: 'gold' },
    goldEu: { tier: 'gold', region: 'eu' },
    silverUs: { tier: 'silver', region: 'us' },
    emptyTier: { tier: '' },
    prefixed: { 'offtake.dev/team': 'checkout', tier: 'bronze' },
  };
  type Name = keyof typeof labels;
  const matrix: [selector: string, matches: Name[]][] = [
    ['', ['none', 'gold', 'goldEu', 'silverUs', 'emptyTier', 'prefixed']],
    ['tier=gold', ['gold', 'goldEu']],
    ['tier==gold', ['gold', 'goldEu']],
    ['tier != gold', ['none', 'silverUs', 'emptyTier', 'prefixed']],
    ['tier', ['gold', 'goldEu', 'silverUs', 'emptyTier', 'prefixed']],
    ['!tier', ['none']],
    ['!region', ['none', 'gold', 'emptyTier', 'prefixed']],
    ['tier in (gold,silver)', ['gold', 'goldEu', 'silverUs']],
    ['tier in ( gold , silver )', ['gold', 'goldEu', 'silverUs']],
    ['tier notin (gold,silver)', ['none', 'emptyTier', 'prefixed']],
    ['tier=gold,region=eu', ['goldEu']],
    ['tier in (gold),region', ['goldEu']],
    ['region,!tier', []],
    ['tier=', ['emptyTier']],
    ['tier in ()', ['emptyTier']],
    ['offtake.dev/team=checkout', ['prefixed']],
    ['offtake.dev/team in (checkout), tier notin (gold)', ['prefixed']],
    ['tier=gold,tier=silver', []],
    ['  tier  =  gold  ', ['gold', 'goldEu']],
  ];
  for (const [selector, expected] of matrix) {
    it(`${JSON.stringify(selector)} selects ${expected.join(', ') || 'nothing'}`, () => {
      const parsed = parseLabelSelector(selector);
      const selected = (Object.keys(labels) as Name[]).filter((name) => parsed.matches(labels[name]));
      assert.deepEqual(selected, expected);
    });
  }

  it('exposes the parsed requirements', () => {
    assert.deepEqual(parseLabelSelector('a=b,c notin (d,e),!f,g').requirements, [
      { key: 'a', operator: 'equals', values: ['b'] },
      { key: 'c', operator: 'notin', values: ['d', 'e'] },
      { key: 'f', operator: 'not-exists', values: [] },
      { key: 'g', operator: 'exists', values: [] },
    ]);
  });

  const invalid: [selector: string, column: number][] = [
    ['tier in (gold', 14],
    ['tier in gold', 9],
    ['tier=gold,', 11],
    [',tier', 1],
    ['tier gold', 6],
    ['=gold', 1],
    ['tier=gold=x', 10],
    ['!tier=gold', 6],
    ['!', 2],
    ['tier>1', 5],
    ['bad key=1', 5],
    ['Tier_=x', 1],
    ['tier=bad value', 10],
    ['tier=-gold', 6],
    ['a/b/c=1', 1],
    [`tier=${'x'.repeat(64)}`, 6],
    ['tier in (a b)', 12],
    ['in=1', 1],
    ['tier notin (a,(b))', 15],
  ];
  for (const [selector, column] of invalid) {
    it(`rejects ${JSON.stringify(selector)} at column ${column}`, () => {
      assert.throws(
        () => parseLabelSelector(selector),
        (err: unknown) => {
          assert.ok(isOfftakeError(err, 'invalid-parameter'), String(err));
          assert.match(err.message, new RegExp(`at column ${column}\\b`));
          assert.equal(err.errors[0].column, column);
          return true;
        },
      );
    });
  }
});
