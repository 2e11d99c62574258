/**
 * Dedicated placement driven by the operator, end to end on a real kube-apiserver: `kubectl
 * apply` of a `placement: dedicated` redis product makes its server (StatefulSet, Service,
 * credentials), its PodDisruptionBudget, its worker Deployment and the worker's platform Secret,
 * all owned by the product; StoreReady waits for the StatefulSet and then the Deployment (marked
 * ready here through the status subresource: no kubelet runs); the connection Secret points at
 * the product's own server; the seed waits, visibly, for the dedicated worker. The worker then
 * runs as the Deployment's pod would — `offtake worker` with the Deployment's environment, the
 * Secrets it names resolved — against a stand-in for the product's server (a database of the
 * test Redis): the product goes Ready with exactly the expected records, and shared workers take
 * none of its jobs. `kubectl delete` removes every object and releases the product.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import type { V1Deployment, V1Secret } from '@kubernetes/client-node';
import { Redis } from 'ioredis';
import { stringify } from 'yaml';
import type { DataProductSpec, DataProductStatus } from '../../crds/generated/types.ts';
import { createEventLog } from '../../api/server.ts';
import { DEFAULT_CONFIG, loadConfig, type OfftakeConfig } from '../../lib/config.ts';
import type { RedisEventLog } from '../../lib/eventlog/redis-event-log.ts';
import { createLogger } from '../../lib/logger.ts';
import { DEFAULT_DEDICATED_OPTIONS, dedicatedNames } from '../../operator/kube/dedicated.ts';
import { startKubernetesOperator, type RunningKubernetesOperator } from '../../operator/kubernetes.ts';
import { FINALIZER } from '../../operator/reconciler.ts';
import { freePort } from '../eventlog-helpers.ts';
import { CLI } from '../helpers/process.ts';
import { dropPrefix, testRedis, TEST_REDIS_URL, uniquePrefix } from '../helpers/redis.ts';
import {
  condition,
  expectedOrders,
  orderEvents,
  orderSpec,
  scanKeys,
  waitFor,
  type OrderRow,
} from '../operator-helpers.ts';
import { kubeConfigFor, startControlPlane, type ControlPlane } from './control-plane.ts';
import { createNamespace, installCrd } from './k8s-helpers.ts';

/** The test Redis databases standing in for the product's own servers (build 1, build 2). */
const STORE_DB = 7;
const STORE_DB_2 = 8;
const NAME = 'eu-dedicated';

interface KubectlProduct {
  metadata: { name: string; uid: string; generation: number; finalizers?: string[] };
  status?: DataProductStatus;
}

interface Owned {
  metadata: {
    name: string;
    labels?: Record<string, string>;
    ownerReferences?: { kind: string; name: string; uid: string; controller?: boolean }[];
  };
}

describe('dedicated placement through the operator, on a real kube-apiserver', () => {
  let cp: ControlPlane;
  let redis: Redis;
  let store: Redis;
  let store2: Redis;
  let prefix: string;
  let namespace: string;
  let config: OfftakeConfig;
  let eventLog: RedisEventLog;
  let operator: RunningKubernetesOperator | undefined;
  let worker: ChildProcess | undefined;
  let worker2: ChildProcess | undefined;
  let workerOutput = '';

  /** Runs `offtake worker` as the Deployment's pod would, its store replaced by a local database. */
  const runWorker = async (deployment: V1Deployment, db: number): Promise<ChildProcess> => {
    const env = await podEnvironment(deployment);
    env.OFFTAKE_WORKER_STORE_URI = `${TEST_REDIS_URL.replace(/\/\d*$/, '')}/${db}`;
    env.OFFTAKE_WORKER_HEALTH_PORT = String(await freePort());
    const child = spawn(
      process.execPath,
      [CLI, ...(deployment.spec!.template.spec!.containers[0].args ?? [])],
      {
        env: { PATH: process.env.PATH, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    child.stdout?.on('data', (d: Buffer) => (workerOutput += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (workerOutput += d.toString()));
    return child;
  };
  const stopProcess = async (child: ChildProcess | undefined): Promise<void> => {
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  };

  const kubectlJson = async <T>(args: string[]): Promise<T | null> => {
    const got = await cp.kubectl([...args, '-n', namespace, '-o', 'json']);
    if (got.code !== 0) {
      if (/NotFound|not found/.test(got.stderr)) return null;
      throw new Error(`kubectl ${args.join(' ')}: ${got.stderr}`);
    }
    return JSON.parse(got.stdout) as T;
  };
  const product = () => kubectlJson<KubectlProduct>(['get', 'dataproduct', NAME]);
  const reasonOf = async (type: string): Promise<string | undefined> =>
    condition((await product())?.status, type)?.reason;

  const markReady = async (kind: 'statefulset' | 'deployment', name: string): Promise<void> => {
    const object = await kubectlJson<{ metadata: { generation: number } }>(['get', kind, name]);
    assert.ok(object !== null, `${kind} ${name} exists`);
    const status =
      kind === 'statefulset'
        ? {
            observedGeneration: object.metadata.generation,
            replicas: 1,
            readyReplicas: 1,
            availableReplicas: 1,
            currentReplicas: 1,
            updatedReplicas: 1,
            currentRevision: `${name}-1`,
            updateRevision: `${name}-1`,
          }
        : {
            observedGeneration: object.metadata.generation,
            replicas: 1,
            updatedReplicas: 1,
            readyReplicas: 1,
            availableReplicas: 1,
          };
    const patched = await cp.kubectl([
      'patch',
      kind,
      name,
      '-n',
      namespace,
      '--subresource=status',
      '--type=merge',
      '-p',
      JSON.stringify({ status }),
    ]);
    assert.equal(patched.code, 0, patched.stderr);
  };

  /** The worker container's environment as its pod would see it: values, and Secret keys resolved. */
  const podEnvironment = async (deployment: V1Deployment): Promise<Record<string, string>> => {
    const env: Record<string, string> = {};
    for (const variable of deployment.spec?.template.spec?.containers[0].env ?? []) {
      if (variable.value !== undefined) env[variable.name] = variable.value;
      const ref = variable.valueFrom?.secretKeyRef;
      if (ref === undefined) continue;
      const secret = await kubectlJson<V1Secret>(['get', 'secret', ref.name!]);
      assert.ok(secret?.data?.[ref.key] !== undefined, `Secret ${ref.name} holds ${ref.key}`);
      env[variable.name] = Buffer.from(secret.data[ref.key], 'base64').toString('utf8');
    }
    return env;
  };

  const storeRows = async (server: Redis = store): Promise<Map<string, OrderRow>> => {
    const rows = new Map<string, OrderRow>();
    for (const key of expectedOrders(300).keys()) {
      const hash = await server.hgetall(`records:${key}`);
      if (Object.keys(hash).length > 0) {
        rows.set(key, { customer: hash.customer, amount: Number(hash.amount), status: hash.status });
      }
    }
    return rows;
  };

  before(async () => {
    cp = await startControlPlane();
    await installCrd(cp);
    namespace = await createNamespace(cp, 'ded');
    redis = testRedis();
    store = new Redis(`${TEST_REDIS_URL.replace(/\/\d*$/, '')}/${STORE_DB}`);
    store2 = new Redis(`${TEST_REDIS_URL.replace(/\/\d*$/, '')}/${STORE_DB_2}`);
    prefix = uniquePrefix('k8s-dedicated');
    config = loadConfig(
      {},
      {
        redisUrl: TEST_REDIS_URL,
        redisPrefix: prefix,
        eventLog: { ...DEFAULT_CONFIG.eventLog, durability: 'none' },
      },
    );
    eventLog = await createEventLog(redis, config);
    await eventLog.append('orders', orderEvents(0, 300));
    operator = await startKubernetesOperator(config, createLogger('silent'), {
      kubeConfig: kubeConfigFor(cp),
      controller: { backoff: { baseDelayMs: 100, maxDelayMs: 2000 } },
      reconciler: { statusIntervalMs: 500, progressIntervalMs: 300, storeWaitMs: 300 },
      runner: { chunkEvents: 100, stopTimeoutMs: 10_000, waitingGraceMs: 300 },
      dedicated: {
        ...DEFAULT_DEDICATED_OPTIONS,
        image: 'registry.example/offtake:test',
        workerEnv: [
          { name: 'OFFTAKE_REDIS_PREFIX', value: prefix },
          { name: 'OFFTAKE_EVENTLOG_DURABILITY', value: 'none' },
        ],
      },
    });
  });

  after(async () => {
    await stopProcess(worker);
    await stopProcess(worker2);
    await operator?.close();
    await eventLog?.close();
    for (const server of [store, store2]) {
      if (server === undefined) continue;
      const keys = await scanKeys(server, 'records*');
      if (keys.length > 0) await server.del(...keys);
      server.disconnect();
    }
    if (redis !== undefined) {
      await dropPrefix(redis, prefix);
      redis.disconnect();
    }
    await cp?.stop();
  });

  it('makes the server and the worker, owned by the product, and waits for them to run', async () => {
    const shared = orderSpec('redis');
    const spec: DataProductSpec = { ...shared, target: { ...shared.target, placement: 'dedicated' } };
    const manifest = stringify({
      apiVersion: 'offtake.dev/v1alpha1',
      kind: 'DataProduct',
      metadata: { name: NAME, namespace },
      spec,
    });
    const applied = await cp.kubectl(['apply', '-f', '-'], manifest);
    assert.equal(applied.code, 0, applied.stderr);

    await waitFor(
      async () => (await reasonOf('StoreReady')) === 'WaitingForStore',
      'StoreReady WaitingForStore',
    );
    const created = (await product())!;
    assert.deepEqual(created.metadata.finalizers, [FINALIZER]);
    assert.equal(created.status?.phase, 'Provisioning');

    const names = dedicatedNames({ namespace, name: NAME }, 'redis');
    const objects: [string, string][] = [
      ['statefulset', names.store],
      ['service', names.store],
      ['poddisruptionbudget', names.store],
      ['secret', names.credentials],
      ['secret', names.platform],
      ['deployment', names.worker],
    ];
    for (const [kind, name] of objects) {
      const object = await kubectlJson<Owned>(['get', kind, name]);
      assert.ok(object !== null, `${kind} ${name} exists`);
      const [owner] = object.metadata.ownerReferences ?? [];
      assert.deepEqual(
        { kind: owner?.kind, name: owner?.name, uid: owner?.uid, controller: owner?.controller },
        { kind: 'DataProduct', name: NAME, uid: created.metadata.uid, controller: true },
        `${kind} ${name} is owned by the product`,
      );
      assert.equal(object.metadata.labels?.['offtake.dev/product'], NAME);
    }
    // The platform's Redis URL reaches the worker through a Secret, never the Deployment itself.
    const deployment = (await kubectlJson<V1Deployment>(['get', 'deployment', names.worker]))!;
    assert.doesNotMatch(JSON.stringify(deployment.spec), /redis:\/\//);

    await markReady('statefulset', names.store);
    await waitFor(
      async () => (await reasonOf('StoreReady')) === 'WaitingForWorker',
      'StoreReady WaitingForWorker',
    );
    await markReady('deployment', names.worker);
    await waitFor(
      async () => (await product())?.status?.connection?.secretRef !== undefined,
      'the store ready',
    );
    const ready = (await product())!;
    assert.equal(condition(ready.status, 'StoreReady')?.status, 'True');

    // Readers get the product's own server.
    const secretName = ready.status?.connection?.secretRef?.name ?? '';
    await waitFor(
      async () => (await kubectlJson<V1Secret>(['get', 'secret', secretName])) !== null,
      'the Secret',
    );
    const connection = (await kubectlJson<V1Secret>(['get', 'secret', secretName]))!;
    const uri = Buffer.from(connection.data!.uri, 'base64').toString('utf8');
    assert.match(uri, new RegExp(`^redis://default:[^@]+@${names.store}\\.${namespace}\\.svc:6379/0$`));
    assert.equal(Buffer.from(connection.data!.keyPrefix, 'base64').toString('utf8'), 'records:');

    // No pod runs the worker here: the seed says what it waits for.
    await waitFor(async () => (await reasonOf('Seeded')) === 'NoWorkers', 'Seeded NoWorkers');
    assert.match(condition((await product())!.status, 'Ready')?.message ?? '', /dedicated worker/);
    assert.equal((await storeRows()).size, 0, 'no shared worker wrote its records');
  });

  it('goes Ready once its worker runs as the Deployment says, with exactly the right records', async () => {
    const names = dedicatedNames({ namespace, name: NAME }, 'redis');
    const deployment = (await kubectlJson<V1Deployment>(['get', 'deployment', names.worker]))!;
    const env = await podEnvironment(deployment);
    assert.equal(env.OFFTAKE_WORKER_PRODUCT, `${namespace}/${NAME}`);
    // The worker's platform credential is its own, limited to what its pipeline touches.
    const platform = new URL(env.OFFTAKE_REDIS_URL);
    const user = decodeURIComponent(platform.username);
    assert.equal(user, `${prefix}:worker:${namespace}.${NAME}`);
    const limited = new Redis(env.OFFTAKE_REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await limited.connect();
    try {
      assert.ok((await limited.xlen(`${prefix}:log:stream:{orders}`)) > 0, 'reads its source stream');
      for (const [what, call] of [
        ['another stream', () => limited.xlen(`${prefix}:log:stream:{payments}`)],
        ['another product’s pipeline', () => limited.hgetall(`${prefix}:pipeline:${namespace}.other:state`)],
        ['the shared queues', () => limited.hgetall(`${prefix}:bull:seed:meta`)],
        ['KEYS', () => limited.keys('*')],
        ['SCAN', () => limited.scan('0')],
        ['CONFIG GET', () => limited.config('GET', 'requirepass')],
        ['FLUSHALL', () => limited.flushall()],
      ] as const) {
        await assert.rejects(call(), /NOPERM/, `${what} is refused`);
      }
    } finally {
      limited.disconnect();
    }
    assert.match(env.OFFTAKE_WORKER_STORE_URI, /^redis:\/\/default:/);
    // The store's Service name resolves only in the cluster: the stand-in server is local.
    worker = await runWorker(deployment, STORE_DB);

    await waitFor(
      async () =>
        (await reasonOf('Ready')) === 'Current' || `${await reasonOf('Ready')} ${workerOutput.slice(-500)}`,
      'Ready through the dedicated worker',
      90_000,
    );
    const expected = new Map([...expectedOrders(300)].sort());
    await waitFor(async () => {
      const rows = await storeRows();
      return rows.size === expected.size || `${rows.size} of ${expected.size}`;
    }, 'every record in the product server');
    assert.deepEqual(new Map([...(await storeRows())].sort()), expected);
  });

  it('seeds a spec change on a server of its own beside the running one, then switches readers to it', async () => {
    const names = dedicatedNames({ namespace, name: NAME }, 'redis');
    const next = dedicatedNames({ namespace, name: NAME, build: 2 }, 'redis');
    const shared = orderSpec('redis');
    shared.transform.fields = {
      ...shared.transform.fields,
      status: "event.type == 'OrderCancelled' ? 'cancelled' : 'placed'",
    };
    const spec: DataProductSpec = { ...shared, target: { ...shared.target, placement: 'dedicated' } };
    const applied = await cp.kubectl(
      ['apply', '-f', '-'],
      stringify({
        apiVersion: 'offtake.dev/v1alpha1',
        kind: 'DataProduct',
        metadata: { name: NAME, namespace },
        spec,
      }),
    );
    assert.equal(applied.code, 0, applied.stderr);
    await waitFor(
      async () => (await kubectlJson(['get', 'statefulset', next.store])) !== null,
      'the next build’s server',
    );
    const reseeding = (await product())!;
    assert.equal(condition(reseeding.status, 'Ready')?.reason, 'Reseeding');
    assert.equal(condition(reseeding.status, 'StoreReady')?.status, 'True', 'readers keep build 1');

    await markReady('statefulset', next.store);
    await markReady('deployment', next.worker);
    const deployment = (await kubectlJson<V1Deployment>(['get', 'deployment', next.worker]))!;
    worker2 = await runWorker(deployment, STORE_DB_2);
    await waitFor(
      async () => {
        const p = await product();
        const ready = condition(p?.status, 'Ready');
        return (
          (ready?.reason === 'Current' && ready.observedGeneration === p?.metadata.generation) ||
          `${ready?.reason}: ${ready?.message} ${workerOutput.slice(-300)}`
        );
      },
      'Ready on build 2',
      90_000,
    );

    const expected = new Map(
      [...expectedOrders(300)]
        .map(([key, row]): [string, OrderRow] => [
          key,
          { ...row, status: row.status === 'open' ? 'placed' : row.status },
        ])
        .sort(),
    );
    assert.deepEqual(new Map([...(await storeRows(store2))].sort()), expected);
    const secretName = (await product())!.status?.connection?.secretRef?.name ?? '';
    await waitFor(async () => {
      const secret = await kubectlJson<V1Secret>(['get', 'secret', secretName]);
      const uri = Buffer.from(secret?.data?.uri ?? '', 'base64').toString('utf8');
      return uri.includes(`@${next.store}.${namespace}.svc:`) || uri;
    }, 'the connection Secret to point at build 2');
    // Build 1 is gone: its server, its worker and its platform credential.
    await waitFor(
      async () => (await kubectlJson(['get', 'statefulset', names.store])) === null,
      'build 1 gone',
    );
    assert.equal(await kubectlJson(['get', 'deployment', names.worker]), null);
    assert.equal(await redis.call('ACL', ['GETUSER', `${prefix}:worker:${namespace}.${NAME}`]), null);
    assert.notEqual(await redis.call('ACL', ['GETUSER', `${prefix}:worker:${namespace}.${NAME}.b2`]), null);
    await stopProcess(worker);
  });

  it('kubectl delete removes every object it made and releases the product', async () => {
    const deleted = await cp.kubectl(['delete', 'dataproduct', NAME, '-n', namespace, '--timeout=90s']);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.equal(await product(), null);
    // No garbage collector runs here: the operator itself deleted what it made.
    for (const kind of ['statefulsets', 'services', 'poddisruptionbudgets', 'deployments', 'secrets']) {
      const left = await cp.kubectl([
        'get',
        kind,
        '-n',
        namespace,
        '-l',
        `offtake.dev/product=${NAME}`,
        '-o',
        'name',
      ]);
      assert.equal(left.code, 0, left.stderr);
      assert.equal(left.stdout.trim(), '', `${kind} left: ${left.stdout}`);
    }
    // The worker's platform credential went with it.
    assert.equal(await redis.call('ACL', ['GETUSER', `${prefix}:worker:${namespace}.${NAME}.b2`]), null);
    // Its Deployment is gone, so the kubelet would stop the pod (which can no longer commit anything).
    await stopProcess(worker2);
  });
});
