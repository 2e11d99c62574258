/**
 * The Kubernetes resource store against a real kube-apiserver with etcd: the ResourceStore
 * interface over DataProduct custom resources — CRUD, generation, the status subresource,
 * finalizers and deletion, conflicts on stale resourceVersions, and watches (in order, resumed
 * across server-ended requests, 410 Gone as `watch-expired`).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { DataProductSpec, DataProductStatus } from '../../crds/generated/types.ts';
import { isOfftakeError } from '../../lib/errors.ts';
import { KubernetesResourceStore } from '../../lib/resource-store/kubernetes-resource-store.ts';
import type { DataProductInput, Watch, WatchEvent } from '../../lib/resource-store/resource-store.ts';
import { kubeConfigFor, startControlPlane, type ControlPlane } from './control-plane.ts';
import { createNamespace, installCrd } from './k8s-helpers.ts';

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
  seed: { processed: 10, total: 100, percent: 10 },
};

const FINALIZER = 'offtake.dev/teardown';

function specWithTable(table: string): DataProductSpec {
  return { ...SPEC, target: { ...SPEC.target, postgres: { table, columns: { customer: 'text' } } } };
}

/** Asserts that `promise` rejects with an OfftakeError of `code` and returns it. */
async function rejectsWith(promise: Promise<unknown>, code: string, message?: RegExp): Promise<void> {
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

describe('KubernetesResourceStore on a real kube-apiserver', () => {
  let cp: ControlPlane;
  let store: KubernetesResourceStore;
  let ns: string;
  let other: string;

  const input = (name: string, extra: Partial<DataProductInput['metadata']> = {}, spec = SPEC) => ({
    metadata: { name, namespace: ns, ...extra },
    spec,
  });

  before(async () => {
    cp = await startControlPlane();
    await installCrd(cp);
    ns = await createNamespace(cp, 'store');
    other = await createNamespace(cp, 'other');
    store = new KubernetesResourceStore(kubeConfigFor(cp));
  });

  after(async () => {
    await store?.close();
    await cp?.stop();
  });

  describe('create, get, list', () => {
    it('creates generation 1 with a uid and a resourceVersion, as kubectl sees it', async () => {
      const created = await store.create(
        input('a', { labels: { tier: 'gold' }, annotations: { note: 'x' } }),
      );
      assert.equal(created.apiVersion, 'offtake.dev/v1alpha1');
      assert.equal(created.kind, 'DataProduct');
      assert.equal(created.metadata.generation, 1);
      assert.match(created.metadata.uid, /^[0-9a-f-]{36}$/);
      assert.ok(created.metadata.resourceVersion);
      assert.deepEqual(created.metadata.finalizers, []);
      assert.deepEqual(created.metadata.labels, { tier: 'gold' });
      assert.deepEqual(created.metadata.annotations, { note: 'x' });
      assert.deepEqual(created.spec, SPEC);
      assert.equal(created.status, undefined);

      assert.deepEqual(await store.get(ns, 'a'), created);
      const viaKubectl = await cp.kubectl(['get', 'dataproduct', 'a', '-n', ns, '-o', 'json']);
      assert.equal(viaKubectl.code, 0, viaKubectl.stderr);
      assert.equal(JSON.parse(viaKubectl.stdout).metadata.uid, created.metadata.uid);
    });

    it('refuses an existing name with already-exists, a missing object or namespace with not-found', async () => {
      await rejectsWith(store.create(input('a')), 'already-exists');
      await rejectsWith(store.get(ns, 'missing'), 'not-found', /DataProduct .*\/missing does not exist/);
      await rejectsWith(
        store.create({ metadata: { name: 'x', namespace: 'no-such-namespace' }, spec: SPEC }),
        'not-found',
        /no-such-namespace/,
      );
      await rejectsWith(store.get(ns, 'Not_A_Name'), 'invalid-name');
    });

    it('keeps given finalizers on create; the API server refuses what the CRD schema forbids', async () => {
      const created = await store.create(input('with-finalizer', { finalizers: [FINALIZER, FINALIZER] }));
      assert.deepEqual(created.metadata.finalizers, [FINALIZER]);
      await store.setFinalizers(ns, 'with-finalizer', []);
      await rejectsWith(
        store.create(input('bad', {}, { ...SPEC, target: { type: 'nosuch' } } as unknown as DataProductSpec)),
        'invalid-spec',
      );
    });

    it('lists by namespace and across namespaces with a resourceVersion, filtered by label selector', async () => {
      await store.create(input('b', { labels: { tier: 'silver' } }));
      await store.create({ metadata: { name: 'c', namespace: other, labels: { tier: 'gold' } }, spec: SPEC });
      const mine = await store.list({ namespace: ns });
      assert.deepEqual(
        mine.items.map((i) => i.metadata.name),
        ['a', 'b', 'with-finalizer'],
      );
      assert.ok(mine.resourceVersion);
      const all = await store.list();
      const names = all.items.map((i) => `${i.metadata.namespace}/${i.metadata.name}`);
      assert.ok(names.includes(`${ns}/a`) && names.includes(`${other}/c`), names.join());
      const gold = await store.list({ labelSelector: 'tier=gold' });
      assert.deepEqual(gold.items.map((i) => i.metadata.name).sort(), ['a', 'c']);
      const notGold = await store.list({ namespace: ns, labelSelector: 'tier notin (gold)' });
      assert.deepEqual(
        notGold.items.map((i) => i.metadata.name),
        ['b', 'with-finalizer'],
      );
      await rejectsWith(store.list({ labelSelector: 'tier in (' }), 'invalid-parameter');
    });

    it('reads a long list in pages as one list', async () => {
      const paged = new KubernetesResourceStore(kubeConfigFor(cp), { listPageSize: 1 });
      const result = await paged.list({ namespace: ns });
      assert.deepEqual(
        result.items.map((i) => i.metadata.name),
        ['a', 'b', 'with-finalizer'],
      );
      assert.ok(result.resourceVersion);
    });
  });

  describe('replace and the status subresource', () => {
    it('bumps generation only when the spec changes; resourceVersion on every write', async () => {
      const created = await store.create(input('r1'));
      const relabelled = await store.replace(input('r1', { labels: { tier: 'gold' } }));
      assert.equal(relabelled.metadata.generation, 1);
      assert.notEqual(relabelled.metadata.resourceVersion, created.metadata.resourceVersion);
      assert.deepEqual(relabelled.metadata.labels, { tier: 'gold' });
      const changed = await store.replace(input('r1', { labels: { tier: 'gold' } }, specWithTable('other')));
      assert.equal(changed.metadata.generation, 2);
      assert.equal(changed.spec.target.postgres?.table, 'other');
      assert.equal(changed.metadata.uid, created.metadata.uid);
    });

    it('answers conflict to a stale resourceVersion, not-found for a missing object', async () => {
      const current = await store.get(ns, 'r1');
      await store.replace(
        input('r1', { resourceVersion: current.metadata.resourceVersion }, specWithTable('other')),
      );
      await rejectsWith(
        store.replace(
          input('r1', { resourceVersion: current.metadata.resourceVersion }, specWithTable('t3')),
        ),
        'conflict',
      );
      assert.equal((await store.get(ns, 'r1')).spec.target.postgres?.table, 'other');
      await rejectsWith(store.replace(input('missing')), 'not-found');
    });

    it('writes status only through the status path: spec and generation untouched; replace keeps it', async () => {
      const before = await store.get(ns, 'r1');
      const updated = await store.updateStatus(ns, 'r1', STATUS, before.metadata.resourceVersion);
      assert.deepEqual(updated.status, STATUS);
      assert.equal(updated.metadata.generation, before.metadata.generation);
      assert.deepEqual(updated.spec, before.spec);
      assert.notEqual(updated.metadata.resourceVersion, before.metadata.resourceVersion);

      const replaced = await store.replace(input('r1', { labels: { tier: 'gold' } }, SPEC));
      assert.deepEqual(replaced.status, STATUS, 'a replace does not touch status');
      assert.equal(replaced.metadata.generation, before.metadata.generation + 1);
    });

    it('replaces the status whole, skips a no-op write, and checks a given resourceVersion', async () => {
      const withoutSeed: DataProductStatus = { ...STATUS };
      delete withoutSeed.seed;
      const written = await store.updateStatus(ns, 'r1', { ...withoutSeed, phase: 'Ready' });
      assert.equal(written.status?.seed, undefined, 'a field the new status drops is gone');
      assert.equal(written.status?.phase, 'Ready');
      const again = await store.updateStatus(ns, 'r1', { ...withoutSeed, phase: 'Ready' });
      assert.equal(again.metadata.resourceVersion, written.metadata.resourceVersion, 'no-op: no new version');

      const stale = (await store.get(ns, 'a')).metadata.resourceVersion;
      await store.replace(input('a', { labels: { tier: 'gold' }, annotations: { note: 'y' } }));
      await rejectsWith(store.updateStatus(ns, 'a', STATUS, stale), 'conflict');
      assert.equal((await store.get(ns, 'a')).status, undefined);
      await rejectsWith(store.updateStatus(ns, 'missing', STATUS), 'not-found');
    });

    it('lets exactly one of two writers holding the same resourceVersion win', async () => {
      const read = await store.get(ns, 'b');
      const results = await Promise.allSettled([
        store.setFinalizers(ns, 'b', ['example.com/one'], read.metadata.resourceVersion),
        store.setFinalizers(ns, 'b', ['example.com/two'], read.metadata.resourceVersion),
      ]);
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r) => r.status === 'rejected');
      assert.equal(won.length, 1);
      assert.equal(lost.length, 1);
      assert.ok(isOfftakeError(lost[0].reason, 'conflict'), String(lost[0].reason));
      await store.setFinalizers(ns, 'b', []);
    });
  });

  describe('finalizers and deletion', () => {
    it('removes an object without finalizers at once', async () => {
      await store.create(input('gone'));
      assert.equal(await store.delete(ns, 'gone'), undefined);
      await rejectsWith(store.get(ns, 'gone'), 'not-found');
      await rejectsWith(store.delete(ns, 'gone'), 'not-found');
    });

    it('with finalizers only marks the object (once); the last finalizer going removes it', async () => {
      await store.create(input('held'));
      const held = await store.setFinalizers(ns, 'held', [FINALIZER, 'example.com/other']);
      assert.deepEqual(held?.metadata.finalizers, [FINALIZER, 'example.com/other']);

      const marked = await store.delete(ns, 'held');
      assert.ok(marked?.metadata.deletionTimestamp, 'marked with a deletionTimestamp');
      const markedAgain = await store.delete(ns, 'held');
      assert.equal(markedAgain?.metadata.deletionTimestamp, marked.metadata.deletionTimestamp);

      // A deleting object still takes status; it takes no new finalizer.
      await store.updateStatus(ns, 'held', { phase: 'Deleting' });
      await rejectsWith(
        store.setFinalizers(ns, 'held', [FINALIZER, 'example.com/other', 'example.com/new']),
        'invalid-spec',
        /finalizer/,
      );

      const one = await store.setFinalizers(ns, 'held', ['example.com/other']);
      assert.deepEqual(one?.metadata.finalizers, ['example.com/other']);
      assert.equal(await store.setFinalizers(ns, 'held', []), undefined);
      await rejectsWith(store.get(ns, 'held'), 'not-found');
    });

    it('removes a deleting object when a replace drops its last finalizer', async () => {
      await store.create(input('held2', { finalizers: [FINALIZER] }));
      assert.ok((await store.delete(ns, 'held2'))?.metadata.deletionTimestamp);
      await store.replace(input('held2', { finalizers: [] }));
      await rejectsWith(store.get(ns, 'held2'), 'not-found');
    });

    it('checks a given resourceVersion on delete and setFinalizers', async () => {
      const created = await store.create(input('guarded'));
      await store.replace(input('guarded', { labels: { v: '2' } }));
      await rejectsWith(store.delete(ns, 'guarded', created.metadata.resourceVersion), 'conflict');
      await rejectsWith(
        store.setFinalizers(ns, 'guarded', [FINALIZER], created.metadata.resourceVersion),
        'conflict',
      );
      assert.deepEqual((await store.get(ns, 'guarded')).metadata.finalizers, []);
      const current = await store.get(ns, 'guarded');
      assert.equal(await store.delete(ns, 'guarded', current.metadata.resourceVersion), undefined);
    });
  });

  describe('watch', () => {
    it('delivers every change in order, and resumes from a seen version with none missed or repeated', async () => {
      const start = await store.list({ namespace: ns });
      const watch = store.watch({ resourceVersion: start.resourceVersion, namespace: ns });
      const created = await store.create(input('w1'));
      const finalized = await store.setFinalizers(ns, 'w1', [FINALIZER]);
      const status = await store.updateStatus(ns, 'w1', STATUS);
      const relabelled = await store.replace(input('w1', { labels: { x: 'y' } }));
      const marked = await store.delete(ns, 'w1');
      await store.setFinalizers(ns, 'w1', []);

      const events = await take(watch, 6);
      await watch.close();
      assert.deepEqual(
        events.map((e) => e.type),
        ['ADDED', 'MODIFIED', 'MODIFIED', 'MODIFIED', 'MODIFIED', 'DELETED'],
      );
      assert.deepEqual(
        events.slice(0, 5).map((e) => e.object.metadata.resourceVersion),
        [created, finalized!, status, relabelled, marked!].map((o) => o.metadata.resourceVersion),
      );
      assert.deepEqual(events[2].object.status, STATUS);
      assert.ok(events[4].object.metadata.deletionTimestamp);

      // From the third event's version on: exactly the three after it.
      const resumed = store.watch({
        resourceVersion: events[2].object.metadata.resourceVersion,
        namespace: ns,
      });
      const rest = await take(resumed, 3);
      await resumed.close();
      assert.deepEqual(
        rest.map((e) => e.object.metadata.resourceVersion),
        events.slice(3).map((e) => e.object.metadata.resourceVersion),
      );
    });

    it('without a resourceVersion starts from now (no events for objects that exist), filtered by namespace', async () => {
      const watch = store.watch({ namespace: ns });
      // A write in another namespace first: the namespace filter drops it.
      await store.create({ metadata: { name: 'elsewhere', namespace: other }, spec: SPEC });
      await store.create(input('w2'));
      const [event] = await take(watch, 1);
      await watch.close();
      assert.equal(event.type, 'ADDED');
      assert.equal(event.object.metadata.name, 'w2');
    });

    it('resumes by itself when the API server ends a watch request, missing nothing', async () => {
      const short = new KubernetesResourceStore(kubeConfigFor(cp), { watchRequestSeconds: 1 });
      const watch = short.watch({ namespace: ns });
      const iterator = watch[Symbol.asyncIterator]();
      const first = iterator.next();
      // Several requests end (timeoutSeconds=1) while nothing happens; then a change comes.
      await new Promise((resolve) => setTimeout(resolve, 3500));
      await store.create(input('w3'));
      await store.create(input('w4'));
      const a = await first;
      const b = await iterator.next();
      await short.close();
      assert.equal(a.value?.object.metadata.name, 'w3');
      assert.equal(b.value?.object.metadata.name, 'w4');
    });

    it('ends iteration when closed, even while a read is pending', async () => {
      const watch = store.watch({ namespace: ns });
      const pending = watch[Symbol.asyncIterator]().next();
      await watch.close();
      assert.equal((await pending).done, true);
    });

    it('fails with watch-expired (410 Gone) from a resourceVersion the API server no longer keeps', async () => {
      const watch = store.watch({ resourceVersion: '1', namespace: ns });
      await rejectsWith(watch[Symbol.asyncIterator]().next(), 'watch-expired', /too old/);
      await watch.close();
    });
  });
});
