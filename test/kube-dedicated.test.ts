/**
 * Dedicated placement's desired state, without a cluster: every rendered object is valid against
 * the Kubernetes API schemas, named within Kubernetes' limits, labelled and owned by its product,
 * with requests/limits, probes and a retention policy following deletionPolicy; the connection
 * points at the store's Service; readiness reads workload status the way `kubectl rollout status`
 * does.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { V1Deployment, V1StatefulSet } from '@kubernetes/client-node';
import type { DataProductSpec } from '../crds/generated/types.ts';
import {
  DEFAULT_DEDICATED_OPTIONS,
  WORKER_PRODUCT_ENV,
  WORKER_STORE_URI_ENV,
  dedicatedConnection,
  dedicatedNames,
  dedicatedReadiness,
  desiredCredentialsSecret,
  desiredDedicatedObjects,
  desiredPodDisruptionBudget,
  desiredService,
  desiredStatefulSet,
  desiredWorkerDeployment,
  objectName,
  type DedicatedProduct,
} from '../operator/kube/dedicated.ts';
import { FIELD_MANAGER, PRODUCT_LABEL, checkOwnership } from '../operator/kube/ownership.ts';
import { isProgressReason } from '../operator/product-status.ts';
import { ProvisioningError } from '../operator/provisioning-error.ts';
import { validateObject } from './helpers/kube-models.ts';

const spec = (
  type: 'redis' | 'postgres' | 'topic',
  over: Partial<DataProductSpec> = {},
): DataProductSpec => ({
  source: { streams: ['orders'] },
  transform: { key: 'event.data.id', fields: { amount: 'event.data.amount' } },
  target: {
    type,
    placement: 'dedicated',
    ...(type === 'postgres' ? { postgres: { table: 'orders', columns: { amount: 'numeric' } } } : {}),
  },
  ...over,
});

const product = (
  type: 'redis' | 'postgres' | 'topic',
  name = 'eu-orders',
  over: Partial<DataProductSpec> = {},
) =>
  ({
    metadata: { name, namespace: 'checkout', uid: '6f1c1c3e-0000-4000-8000-000000000001' },
    spec: spec(type, over),
  }) satisfies DedicatedProduct;

describe('dedicated objects', () => {
  for (const type of ['redis', 'postgres'] as const) {
    it(`are valid Kubernetes objects, labelled and owned by the product (${type})`, async () => {
      const objects = desiredDedicatedObjects(product(type), 's3cret');
      const all = [
        objects.credentials,
        objects.service,
        objects.statefulSet,
        objects.disruptionBudget,
        objects.worker,
      ];
      assert.deepEqual(
        all.map((o) => o.kind),
        ['Secret', 'Service', 'StatefulSet', 'PodDisruptionBudget', 'Deployment'],
      );
      for (const object of all) {
        await validateObject(object);
        const meta = object.metadata!;
        assert.equal(meta.namespace, 'checkout');
        assert.equal(meta.labels?.[PRODUCT_LABEL], 'eu-orders');
        assert.equal(meta.labels?.['app.kubernetes.io/managed-by'], FIELD_MANAGER);
        assert.equal(meta.labels?.['app.kubernetes.io/instance'], 'eu-orders');
        assert.deepEqual(meta.ownerReferences, [
          {
            apiVersion: 'offtake.dev/v1alpha1',
            kind: 'DataProduct',
            name: 'eu-orders',
            uid: '6f1c1c3e-0000-4000-8000-000000000001',
            controller: true,
            blockOwnerDeletion: true,
          },
        ]);
      }
    });
  }

  it('select their pods by labels the pods carry', () => {
    const sts = desiredStatefulSet(product('redis'));
    const deployment = desiredWorkerDeployment(product('redis'));
    const service = desiredService(product('redis'));
    const pdb = desiredPodDisruptionBudget(product('redis'));
    const podLabels = sts.spec!.template.metadata!.labels!;
    for (const selector of [
      sts.spec!.selector.matchLabels!,
      service.spec!.selector!,
      pdb.spec!.selector!.matchLabels!,
    ])
      for (const [k, v] of Object.entries(selector)) assert.equal(podLabels[k], v, k);
    for (const [k, v] of Object.entries(deployment.spec!.selector.matchLabels!))
      assert.equal(deployment.spec!.template.metadata!.labels![k], v);
    assert.notEqual(
      sts.spec!.selector.matchLabels!['app.kubernetes.io/component'],
      deployment.spec!.selector.matchLabels!['app.kubernetes.io/component'],
      'the worker is not selected as the store',
    );
  });

  it('set requests, limits and probes on every container', () => {
    for (const type of ['redis', 'postgres'] as const) {
      const containers = [
        ...desiredStatefulSet(product(type)).spec!.template.spec!.containers,
        ...desiredWorkerDeployment(product(type)).spec!.template.spec!.containers,
      ];
      for (const c of containers) {
        for (const resource of ['cpu', 'memory']) {
          assert.ok(c.resources?.requests?.[resource], `${type}/${c.name} requests ${resource}`);
          assert.ok(c.resources?.limits?.[resource], `${type}/${c.name} limits ${resource}`);
        }
        assert.ok(c.readinessProbe, `${type}/${c.name} readinessProbe`);
        assert.ok(c.livenessProbe, `${type}/${c.name} livenessProbe`);
        assert.equal(c.securityContext?.allowPrivilegeEscalation, false);
        assert.deepEqual(c.securityContext?.capabilities?.drop, ['ALL']);
      }
    }
  });

  it('run the store from its credentials Secret and the worker as offtake worker for this product', () => {
    const names = dedicatedNames({ namespace: 'checkout', name: 'eu-orders' }, 'postgres');
    const sts = desiredStatefulSet(product('postgres'));
    const env = sts.spec!.template.spec!.containers[0].env!;
    assert.deepEqual(env.find((e) => e.name === 'POSTGRES_PASSWORD')?.valueFrom?.secretKeyRef, {
      name: names.credentials,
      key: 'password',
    });
    assert.equal(sts.spec!.serviceName, names.store);
    assert.equal(sts.spec!.volumeClaimTemplates![0].spec!.resources!.requests!.storage, '10Gi');
    const worker = desiredWorkerDeployment(product('postgres'), {
      ...DEFAULT_DEDICATED_OPTIONS,
      image: 'registry.example.com/offtake:1.2.3',
      workerEnv: [
        { name: 'OFFTAKE_REDIS_URL', valueFrom: { secretKeyRef: { name: 'platform', key: 'redis' } } },
      ],
    });
    const container = worker.spec!.template.spec!.containers[0];
    assert.equal(container.image, 'registry.example.com/offtake:1.2.3');
    assert.deepEqual(container.args, ['worker']);
    const workerEnv = Object.fromEntries(container.env!.map((e) => [e.name, e]));
    assert.equal(workerEnv[WORKER_PRODUCT_ENV].value, 'checkout/eu-orders');
    assert.deepEqual(workerEnv[WORKER_STORE_URI_ENV].valueFrom?.secretKeyRef, {
      name: names.credentials,
      key: 'uri',
    });
    assert.ok(workerEnv.OFFTAKE_REDIS_URL, 'platform settings are passed on');
  });

  it('keep the volume when the product is deleted with deletionPolicy: Retain', () => {
    const policy = (p: DedicatedProduct) => desiredStatefulSet(p).spec!.persistentVolumeClaimRetentionPolicy;
    assert.equal(policy(product('redis'))!.whenDeleted, 'Delete');
    assert.equal(policy(product('redis', 'eu-orders', { deletionPolicy: 'Retain' }))!.whenDeleted, 'Retain');
  });

  it('are named within Kubernetes limits, starting with a letter, unique per product', () => {
    const long = 'a'.repeat(40) + '-' + 'b'.repeat(22);
    const names = dedicatedNames({ namespace: 'x', name: long }, 'postgres');
    assert.ok(names.store.length <= 52, names.store);
    assert.ok(names.worker.length <= 63, names.worker);
    assert.match(names.store, /^[a-z]([-a-z0-9]*[a-z0-9])?$/);
    assert.notEqual(
      dedicatedNames({ namespace: 'x', name: long.slice(0, -1) + 'c' }, 'postgres').store,
      names.store,
    );
    assert.equal(objectName('1orders', '-redis'), 'dp-1orders-redis');
    assert.equal(dedicatedNames({ namespace: 'x', name: 'orders' }, 'redis').store, 'orders-redis');
    assert.equal(
      dedicatedNames({ namespace: 'x', name: 'orders' }, 'redis').credentials,
      'orders-redis-credentials',
    );
  });

  it('refuse a topic target (it lives in the event log) as a terminal failure', () => {
    assert.throws(
      () => desiredStatefulSet(product('topic')),
      (err: unknown) =>
        err instanceof ProvisioningError && err.reason === 'DedicatedTopicUnsupported' && err.terminal,
    );
  });
});

describe('dedicated connection', () => {
  it('points at the store Service with the stored password', () => {
    const pg = dedicatedConnection(product('postgres'), 'p@ss/word');
    assert.equal(pg.host, 'eu-orders-postgres.checkout.svc');
    assert.equal(pg.port, 5432);
    assert.equal(pg.table, 'orders');
    assert.equal(pg.uri, 'postgresql://offtake:p%40ss%2Fword@eu-orders-postgres.checkout.svc:5432/offtake');
    const redis = dedicatedConnection(product('redis'), 'pw');
    assert.equal(redis.uri, 'redis://default:pw@eu-orders-redis.checkout.svc:6379/0');
    const secret = desiredCredentialsSecret(product('redis'), 'pw');
    assert.equal(Buffer.from(secret.data!.password, 'base64').toString(), 'pw');
    assert.equal(Buffer.from(secret.data!.uri, 'base64').toString(), redis.uri);
  });
});

describe('ownership check', () => {
  it('applies over nothing, its own objects and an earlier product of the same name, never over a stranger', () => {
    const p = product('redis');
    const mine = desiredService(p);
    assert.doesNotThrow(() => checkOwnership('Service', undefined, p));
    assert.doesNotThrow(() => checkOwnership('Service', mine, p));
    const earlier = {
      metadata: {
        ...mine.metadata,
        ownerReferences: [{ ...mine.metadata!.ownerReferences![0], uid: 'old' }],
      },
    };
    assert.doesNotThrow(() => checkOwnership('Service', earlier, p));
    assert.throws(
      () => checkOwnership('Service', { metadata: { name: 'eu-orders-redis', labels: { app: 'mine' } } }, p),
      (err: unknown) => err instanceof ProvisioningError && err.reason === 'ObjectNotOwned' && !err.terminal,
    );
  });
});

describe('dedicated readiness', () => {
  const sts = (status: V1StatefulSet['status'], generation = 2): V1StatefulSet => ({
    metadata: { name: 'eu-orders-redis', generation },
    spec: { replicas: 1, selector: {}, serviceName: 's', template: {} },
    status,
  });
  const deployment = (status: V1Deployment['status'], generation = 1): V1Deployment => ({
    metadata: { name: 'eu-orders-worker', generation },
    spec: { replicas: 1, selector: {}, template: {} },
    status,
  });
  const readySts = sts({
    replicas: 1,
    observedGeneration: 2,
    readyReplicas: 1,
    updatedReplicas: 1,
    currentRevision: 'r2',
    updateRevision: 'r2',
  });
  const readyDeployment = deployment({
    observedGeneration: 1,
    replicas: 1,
    updatedReplicas: 1,
    availableReplicas: 1,
    readyReplicas: 1,
  });

  it('is ready when both workloads run the latest spec with their replicas ready', () => {
    const r = dedicatedReadiness(readySts, readyDeployment);
    assert.equal(r.ready, true);
    assert.match(r.message, /StatefulSet eu-orders-redis: 1 of 1 ready/);
  });

  it('waits for the store first, then the worker, with progress reasons', () => {
    const cases: [V1StatefulSet | undefined, V1Deployment | undefined, string, RegExp][] = [
      [undefined, undefined, 'WaitingForStore', /does not exist/],
      [sts(undefined), readyDeployment, 'WaitingForStore', /latest spec/],
      [
        sts({ replicas: 1, observedGeneration: 1, readyReplicas: 1, updatedReplicas: 1 }),
        readyDeployment,
        'WaitingForStore',
        /latest spec/,
      ],
      [
        sts({ replicas: 1, observedGeneration: 2, readyReplicas: 0, updatedReplicas: 1 }),
        readyDeployment,
        'WaitingForStore',
        /0 of 1 replicas ready/,
      ],
      [
        sts({
          replicas: 1,
          observedGeneration: 2,
          readyReplicas: 1,
          updatedReplicas: 1,
          currentRevision: 'r1',
          updateRevision: 'r2',
        }),
        readyDeployment,
        'WaitingForStore',
        /rolling out revision r2/,
      ],
      [readySts, undefined, 'WaitingForWorker', /does not exist/],
      [
        readySts,
        deployment({ observedGeneration: 1, replicas: 1, updatedReplicas: 1, availableReplicas: 0 }),
        'WaitingForWorker',
        /0 of 1 replicas available/,
      ],
      [
        readySts,
        deployment({ observedGeneration: 1, replicas: 2, updatedReplicas: 1, availableReplicas: 1 }),
        'WaitingForWorker',
        /old replicas/,
      ],
    ];
    for (const [s, d, reason, message] of cases) {
      const r = dedicatedReadiness(s, d);
      assert.equal(r.ready, false);
      if (r.ready) continue;
      assert.equal(r.reason, reason);
      assert.match(r.message, message);
      assert.ok(isProgressReason(r.reason), `${r.reason} keeps the product Provisioning, not Failed`);
    }
  });

  it('reports a stalled worker rollout as a failure', () => {
    const r = dedicatedReadiness(
      readySts,
      deployment({
        observedGeneration: 1,
        replicas: 1,
        updatedReplicas: 1,
        availableReplicas: 0,
        conditions: [
          {
            type: 'Progressing',
            status: 'False',
            reason: 'ProgressDeadlineExceeded',
            message: 'ReplicaSet "x" has timed out progressing.',
          },
        ],
      }),
    );
    assert.equal(r.ready, false);
    if (!r.ready) {
      assert.equal(r.reason, 'WorkerRolloutFailed');
      assert.ok(!isProgressReason(r.reason));
      assert.match(r.message, /timed out/);
    }
  });
});
