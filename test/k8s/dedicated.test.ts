/**
 * Dedicated placement, connection Secrets and Events on a real kube-apiserver: the rendered
 * StatefulSet, Service, credentials Secret, PodDisruptionBudget and worker Deployment pass the API
 * server's validation under server-side apply (field manager offtake-operator), carry the
 * product's real uid as controller owner, re-apply as a no-op, keep the store's password, and
 * report ready only once the test marks the workloads ready through their status subresource (no
 * controllers run here). Another build's objects stand beside the first's; removing one store
 * type's objects leaves another's.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DedicatedPlacement } from '../../operator/kube/dedicated-placement.ts';
import { dedicatedNames, desiredDedicatedObjects } from '../../operator/kube/dedicated.ts';
import { ConnectionSecrets } from '../../operator/kube/connection-secret.ts';
import { EventRecorder } from '../../operator/kube/events.ts';
import { OwnedObjects } from '../../operator/kube/owned-objects.ts';
import { FIELD_MANAGER } from '../../operator/kube/ownership.ts';
import { ProvisioningError } from '../../operator/provisioning-error.ts';
import { kubeConfigFor, startControlPlane, type ControlPlane } from './control-plane.ts';
import {
  createNamespace,
  createProduct,
  dedicatedSpec,
  getJson,
  installCrd,
  kubectlOk,
  type CreatedProduct,
} from './cluster-fixtures.ts';

const NAMESPACE = 'checkout';

interface Stored {
  metadata: {
    name: string;
    uid: string;
    resourceVersion: string;
    generation?: number;
    labels?: Record<string, string>;
    ownerReferences?: {
      kind: string;
      name: string;
      uid: string;
      controller?: boolean;
      blockOwnerDeletion?: boolean;
    }[];
    managedFields?: { manager: string; operation: string }[];
  };
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
}

describe('dedicated placement on a real kube-apiserver', () => {
  let cp: ControlPlane;
  let objects: OwnedObjects;
  let redis: DedicatedPlacement;
  let product: CreatedProduct;
  /** `kind/name` lines of the product's objects of `kinds` (comma-separated), as kubectl prints them. */
  const productObjects = (kinds: string) =>
    kubectlOk(cp, ['get', kinds, '-n', NAMESPACE, '-l', 'offtake.dev/product=eu-orders', '-o', 'name']);

  before(async () => {
    // The plugin that makes blockOwnerDeletion need `update` on dataproducts/finalizers in deploy/.
    cp = await startControlPlane({
      apiServerArgs: ['--enable-admission-plugins=OwnerReferencesPermissionEnforcement'],
    });
    await installCrd(cp);
    await createNamespace(cp, NAMESPACE);
    // Pod Security "restricted": rendering anything less hardened shows as a warning below.
    await kubectlOk(cp, ['label', 'namespace', NAMESPACE, 'pod-security.kubernetes.io/enforce=restricted']);
    product = await createProduct(cp, NAMESPACE, 'eu-orders', dedicatedSpec('redis'));
    objects = new OwnedObjects(kubeConfigFor(cp));
    redis = new DedicatedPlacement(objects, 'redis');
  });

  after(async () => {
    await cp?.stop();
  });

  it('renders objects the API server accepts, Pod Security restricted included (server dry run)', async () => {
    for (const type of ['redis', 'postgres'] as const) {
      const rendered = desiredDedicatedObjects({ ...product, spec: dedicatedSpec(type) }, 'pw');
      // JSON, as the applier sends it (YAML 1.1 would read redis's `--appendonly yes` as a boolean).
      const list = JSON.stringify({ apiVersion: 'v1', kind: 'List', items: Object.values(rendered) });
      const result = await cp.kubectl(
        ['apply', '--server-side', `--field-manager=${FIELD_MANAGER}`, '--dry-run=server', '-f', '-'],
        list,
      );
      assert.equal(result.code, 0, result.stderr);
      assert.doesNotMatch(result.stderr, /violate PodSecurity|Warning/, `${type}: ${result.stderr}`);
      assert.equal(result.stdout.match(/serverside-applied \(server dry run\)/g)?.length, 5, result.stdout);
    }
    // The check above can fail: a workload without the hardening is warned about.
    const plain = {
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name: 'plain', namespace: NAMESPACE },
      spec: {
        selector: { matchLabels: { app: 'plain' } },
        template: {
          metadata: { labels: { app: 'plain' } },
          spec: { containers: [{ name: 'c', image: 'busybox' }] },
        },
      },
    };
    const warned = await cp.kubectl(['apply', '--dry-run=server', '-f', '-'], JSON.stringify(plain));
    assert.equal(warned.code, 0, warned.stderr);
    assert.match(warned.stderr, /violate PodSecurity "restricted/);
  });

  it('applies the store, its Service, credentials, PodDisruptionBudget and worker, owned by the product', async () => {
    const applied = await redis.apply(product, 'first-password');
    assert.equal(applied.readiness.ready, false, 'nothing runs pods here: not ready yet');
    if (!applied.readiness.ready) assert.equal(applied.readiness.reason, 'WaitingForStore');
    assert.equal(applied.connection.host, 'eu-orders-redis.checkout.svc');

    const names = dedicatedNames(product.metadata, 'redis');
    for (const [kind, name] of [
      ['statefulset', names.store],
      ['service', names.store],
      ['secret', names.credentials],
      ['poddisruptionbudget', names.store],
      ['deployment', names.worker],
    ]) {
      const stored = await getJson<Stored>(cp, [kind, name, '-n', NAMESPACE, '--show-managed-fields']);
      assert.deepEqual(
        stored.metadata.ownerReferences,
        [
          {
            apiVersion: 'offtake.dev/v1alpha1',
            kind: 'DataProduct',
            name: 'eu-orders',
            uid: product.metadata.uid,
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
        `${kind}/${name}`,
      );
      assert.equal(stored.metadata.labels?.['offtake.dev/product'], 'eu-orders');
      assert.ok(
        stored.metadata.managedFields?.some((f) => f.manager === FIELD_MANAGER && f.operation === 'Apply'),
        `${kind}/${name} is managed by ${FIELD_MANAGER} through server-side apply`,
      );
    }
    // kubectl finds everything of the product by its label.
    const all = await productObjects('statefulsets,services,deployments,pdb,secrets');
    assert.equal(all.trim().split('\n').length, 5, all);
  });

  it('re-applies as a no-op and keeps the password the store was initialised with', async () => {
    const names = dedicatedNames(product.metadata, 'redis');
    const before = await getJson<Stored>(cp, ['statefulset', names.store, '-n', NAMESPACE]);
    const again = await redis.apply(product, 'another-password');
    const after = await getJson<Stored>(cp, ['statefulset', names.store, '-n', NAMESPACE]);
    assert.equal(after.metadata.resourceVersion, before.metadata.resourceVersion, 'nothing changed');
    assert.equal(again.password, 'first-password');
    const secret = await getJson<Stored>(cp, ['secret', names.credentials, '-n', NAMESPACE]);
    assert.equal(Buffer.from(secret.data!.password, 'base64').toString(), 'first-password');
  });

  it('reports ready once the StatefulSet and then the Deployment are marked ready (status subresource)', async () => {
    const names = dedicatedNames(product.metadata, 'redis');
    const sts = await getJson<Stored>(cp, ['statefulset', names.store, '-n', NAMESPACE]);
    const before = await redis.readiness(product.metadata);
    assert.equal(before.ready, false);
    if (!before.ready) assert.equal(before.reason, 'WaitingForStore');

    await kubectlOk(cp, [
      'patch',
      'statefulset',
      names.store,
      '-n',
      NAMESPACE,
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({
        status: {
          observedGeneration: sts.metadata.generation,
          replicas: 1,
          readyReplicas: 1,
          availableReplicas: 1,
          currentReplicas: 1,
          updatedReplicas: 1,
          currentRevision: `${names.store}-1`,
          updateRevision: `${names.store}-1`,
        },
      }),
    ]);
    const storeReady = await redis.readiness(product.metadata);
    assert.equal(storeReady.ready, false);
    if (!storeReady.ready) assert.equal(storeReady.reason, 'WaitingForWorker', storeReady.message);

    const deployment = await getJson<Stored>(cp, ['deployment', names.worker, '-n', NAMESPACE]);
    await kubectlOk(cp, [
      'patch',
      'deployment',
      names.worker,
      '-n',
      NAMESPACE,
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({
        status: {
          observedGeneration: deployment.metadata.generation,
          replicas: 1,
          updatedReplicas: 1,
          readyReplicas: 1,
          availableReplicas: 1,
        },
      }),
    ]);
    const ready = await redis.readiness(product.metadata);
    assert.equal(ready.ready, true, JSON.stringify(ready));
    assert.match(ready.message, /StatefulSet eu-orders-redis: 1 of 1 ready/);
  });

  it('refuses to take over an object of the same name it does not own', async () => {
    const stranger = await createProduct(cp, NAMESPACE, 'stranger', dedicatedSpec('postgres'));
    const names = dedicatedNames(stranger.metadata, 'postgres');
    await kubectlOk(cp, [
      'create',
      'secret',
      'generic',
      names.credentials,
      '-n',
      NAMESPACE,
      '--from-literal=password=theirs',
    ]);
    const placement = new DedicatedPlacement(objects, 'postgres');
    await assert.rejects(
      () => placement.apply(stranger, 'pw'),
      (err: unknown) => err instanceof ProvisioningError && err.reason === 'ObjectNotOwned',
    );
    const secret = await getJson<Stored>(cp, ['secret', names.credentials, '-n', NAMESPACE]);
    assert.equal(Buffer.from(secret.data!.password, 'base64').toString(), 'theirs', 'left as it was');
    assert.equal(secret.metadata.ownerReferences, undefined);
  });

  it('gives another build objects of its own, and removes one store type without touching another', async () => {
    const postgres = new DedicatedPlacement(objects, 'postgres');
    // A spec change to a postgres target: build 2 runs beside build 1 until the switch.
    await postgres.apply({ ...product, spec: dedicatedSpec('postgres'), build: 2 }, 'pw');
    const both = await productObjects('statefulsets,deployments');
    assert.deepEqual(both.trim().split('\n').sort(), [
      'deployment.apps/eu-orders-worker',
      'deployment.apps/eu-orders-worker-b2',
      'statefulset.apps/eu-orders-postgres-b2',
      'statefulset.apps/eu-orders-redis',
    ]);
    // Build 1's redis goes: every redis object of the product, nothing of the postgres build.
    await redis.removeWorkers(product.metadata);
    await redis.removeStores(product.metadata, { retainVolume: false });
    const names = await productObjects('statefulsets,services,pdb,secrets,deployments');
    assert.deepEqual(names.trim().split('\n').sort(), [
      'deployment.apps/eu-orders-worker-b2',
      'poddisruptionbudget.policy/eu-orders-postgres-b2',
      'secret/eu-orders-postgres-b2-credentials',
      'service/eu-orders-postgres-b2',
      'statefulset.apps/eu-orders-postgres-b2',
    ]);
  });

  it('removes the store, keeping its volume on Retain', async () => {
    const postgres = new DedicatedPlacement(objects, 'postgres');
    const build2 = { ...product.metadata, build: 2 };
    const names = dedicatedNames(build2, 'postgres');
    const sts = await getJson<Stored>(cp, ['statefulset', names.store, '-n', NAMESPACE]);
    assert.deepEqual(
      (sts.spec as { persistentVolumeClaimRetentionPolicy: unknown }).persistentVolumeClaimRetentionPolicy,
      {
        whenDeleted: 'Delete',
        whenScaled: 'Retain',
      },
    );
    // A finalizer of the test's holds the deleted StatefulSet visible, to read what it went with.
    await kubectlOk(cp, [
      'patch',
      'statefulset',
      names.store,
      '-n',
      NAMESPACE,
      '--type=merge',
      '-p',
      '{"metadata":{"finalizers":["test.offtake.dev/hold"]}}',
    ]);
    await postgres.removeWorker(build2);
    await postgres.removeStore(build2, { retainVolume: true });
    const deleted = await getJson<Stored & { metadata: { deletionTimestamp?: string } }>(cp, [
      'statefulset',
      names.store,
      '-n',
      NAMESPACE,
    ]);
    assert.ok(deleted.metadata.deletionTimestamp, 'deleted');
    assert.equal(
      (deleted.spec as { persistentVolumeClaimRetentionPolicy: { whenDeleted: string } })
        .persistentVolumeClaimRetentionPolicy.whenDeleted,
      'Retain',
      'its volume is kept',
    );
    await kubectlOk(cp, [
      'patch',
      'statefulset',
      names.store,
      '-n',
      NAMESPACE,
      '--type=merge',
      '-p',
      '{"metadata":{"finalizers":null}}',
    ]);
    const left = await productObjects('statefulsets,services,pdb,secrets,deployments');
    assert.equal(left.trim(), '', 'the store and worker are gone');
    assert.equal(
      await objects.delete('StatefulSet', NAMESPACE, names.store),
      false,
      'a second delete finds nothing',
    );
  });
});

describe('connection Secrets and Events on a real kube-apiserver', () => {
  let cp: ControlPlane;
  let product: CreatedProduct;

  before(async () => {
    cp = await startControlPlane();
    await installCrd(cp);
    await createNamespace(cp, NAMESPACE);
    product = await createProduct(cp, NAMESPACE, 'eu-big-orders', {
      ...dedicatedSpec('redis'),
      target: { type: 'redis' },
    });
  });

  after(async () => {
    await cp?.stop();
  });

  it('writes <product>-conn owned by the product and reads the connection back', async () => {
    const secrets = new ConnectionSecrets(new OwnedObjects(kubeConfigFor(cp)));
    const connection = {
      type: 'redis' as const,
      uri: 'redis://dp%3Acheckout%3Aeu-big-orders:pw@10.0.0.5:6379/0',
      host: '10.0.0.5',
      port: 6379,
      user: 'dp:checkout:eu-big-orders',
      password: 'pw',
      database: '0',
      keyPrefix: 'offtake:dp:checkout:eu-big-orders:b1:',
    };
    await secrets.apply(product, connection);
    const stored = await getJson<Stored>(cp, ['secret', 'eu-big-orders-conn', '-n', NAMESPACE]);
    assert.equal(stored.metadata.ownerReferences?.[0].uid, product.metadata.uid);
    assert.equal(stored.metadata.ownerReferences?.[0].controller, true);
    assert.equal(Buffer.from(stored.data!.uri, 'base64').toString(), connection.uri);
    assert.deepEqual(await secrets.getConnection(NAMESPACE, 'eu-big-orders'), connection);
    assert.equal(await secrets.getConnection(NAMESPACE, 'nothing-here'), null);
    assert.equal(await secrets.delete(product.metadata), true);
    assert.equal(await secrets.getConnection(NAMESPACE, 'eu-big-orders'), null);
  });

  it('records Events on the product, counting repeats, shown by kubectl describe', async () => {
    const errors: unknown[] = [];
    const recorder = new EventRecorder(kubeConfigFor(cp), {
      instance: 'test-replica',
      onError: (err) => errors.push(err),
    });
    const failure = {
      type: 'Warning' as const,
      reason: 'RedisUnavailable',
      message: 'Cannot reach Redis at 127.0.0.1:6379. Retrying.',
    };
    await recorder.record(product, failure);
    await recorder.record(product, failure);
    await recorder.record(product, {
      type: 'Normal',
      reason: 'Provisioned',
      message: 'The redis store is ready.',
    });
    assert.deepEqual(errors, []);

    const events = await getJson<{
      items: { type: string; reason: string; count: number; involvedObject: { uid: string } }[];
    }>(cp, ['events', '-n', NAMESPACE, '--field-selector', `involvedObject.uid=${product.metadata.uid}`]);
    const byReason = Object.fromEntries(events.items.map((e) => [e.reason, e]));
    assert.equal(events.items.length, 2);
    assert.equal(byReason.RedisUnavailable.count, 2);
    assert.equal(byReason.RedisUnavailable.type, 'Warning');
    assert.equal(byReason.Provisioned.count, 1);

    const described = await kubectlOk(cp, ['describe', 'dataproduct', 'eu-big-orders', '-n', NAMESPACE]);
    assert.match(described, /Warning\s+RedisUnavailable\s+.*Cannot reach Redis/);
    assert.match(described, /Normal\s+Provisioned/);
  });

  it('reports a failed write to onError instead of throwing', async () => {
    const errors: unknown[] = [];
    const recorder = new EventRecorder(kubeConfigFor(cp), { onError: (err) => errors.push(err) });
    const gone = { metadata: { name: 'x', namespace: 'no-such-namespace', uid: 'u' } };
    assert.equal(await recorder.record(gone, { type: 'Normal', reason: 'Test', message: 'm' }), undefined);
    assert.equal(errors.length, 1);
  });
});
