/**
 * The operator in Kubernetes mode, end to end on a real kube-apiserver with etcd, the shared test
 * Redis and Postgres: `kubectl apply` of a redis-target DataProduct gets the finalizer, its status
 * conditions progress to Ready with the right data in Redis, `kubectl get` shows the printer
 * columns, `kubectl delete` tears everything down and releases the object, and an operator
 * stopped in the middle of provisioning converges once started again.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { Redis as RedisClient } from 'ioredis';
import pg from 'pg';
import { stringify } from 'yaml';
import type { DataProductSpec, DataProductStatus } from '../../crds/generated/types.ts';
import { createEventLog } from '../../api/server.ts';
import { DEFAULT_CONFIG, loadConfig, type OfftakeConfig } from '../../lib/config.ts';
import type { RedisEventLog } from '../../lib/eventlog/redis-event-log.ts';
import { createLogger } from '../../lib/logger.ts';
import { KubernetesResourceStore } from '../../lib/resource-store/kubernetes-resource-store.ts';
import type { WatchEvent } from '../../lib/resource-store/resource-store.ts';
import { startKubernetesOperator, type RunningKubernetesOperator } from '../../operator/kubernetes.ts';
import { ProductRecords } from '../../operator/product-records.ts';
import { FINALIZER } from '../../operator/reconciler.ts';
import { dropPrefix, testRedis, TEST_REDIS_URL, uniquePrefix } from '../helpers/redis.ts';
import {
  POSTGRES_URL,
  condition,
  dropPostgresLeftovers,
  expectedOrders,
  leftovers,
  orderEvents,
  orderSpec,
  waitFor,
  type OrderRow,
} from '../operator-helpers.ts';
import { startApiProcess } from '../helpers/process.ts';
import { kubeConfigFor, startControlPlane, type ControlPlane } from './control-plane.ts';
import { createNamespace, installCrd } from './k8s-helpers.ts';

const logger = createLogger('silent');

/** What the tests read of a DataProduct through kubectl. */
interface KubectlProduct {
  metadata: { name: string; generation: number; finalizers?: string[]; deletionTimestamp?: string };
  spec: DataProductSpec;
  status?: DataProductStatus;
}

describe('operator in Kubernetes mode, through kubectl', () => {
  let cp: ControlPlane;
  let redis: Redis;
  let pool: pg.Pool;
  let prefix: string;
  let namespace: string;
  let config: OfftakeConfig;
  let eventLog: RedisEventLog;
  let operator: RunningKubernetesOperator | undefined;

  const startOperator = () =>
    startKubernetesOperator(config, logger, {
      kubeConfig: kubeConfigFor(cp),
      controller: { backoff: { baseDelayMs: 100, maxDelayMs: 2000 } },
      reconciler: { statusIntervalMs: 500, progressIntervalMs: 500 },
      runner: { chunkEvents: 100, stopTimeoutMs: 10_000 },
      worker: { lockDurationMs: 5000, stalledIntervalMs: 2000, progressIntervalMs: 100 },
    });

  const manifest = (name: string, spec: DataProductSpec): string =>
    stringify({
      apiVersion: 'offtake.dev/v1alpha1',
      kind: 'DataProduct',
      metadata: { name, namespace },
      spec,
    });

  const kubectlGet = async (name: string): Promise<KubectlProduct | null> => {
    const got = await cp.kubectl(['get', 'dataproduct', name, '-n', namespace, '-o', 'json']);
    if (got.code !== 0) {
      if (/NotFound|not found/.test(got.stderr)) return null;
      throw new Error(`kubectl get failed: ${got.stderr}`);
    }
    return JSON.parse(got.stdout) as KubectlProduct;
  };

  const readyOrWhy = async (name: string): Promise<true | string> => {
    const product = await kubectlGet(name);
    const ready = condition(product?.status, 'Ready');
    if (
      ready?.status === 'True' &&
      ready.observedGeneration === product?.metadata.generation &&
      product?.status?.observedGeneration === product?.metadata.generation
    ) {
      return true;
    }
    return JSON.stringify(product?.status ?? null);
  };

  /** The product's rows under the expected keys, read with the connection details the operator delivered. */
  const productRows = async (name: string, keys: Iterable<string>): Promise<Map<string, OrderRow>> => {
    const connection = await ProductRecords.forPlatform(redis, prefix).getConnection(namespace, name);
    assert.ok(connection?.keyPrefix, 'connection details delivered');
    const client = new RedisClient(connection.uri, {
      enableReadyCheck: false,
      maxRetriesPerRequest: 1,
      lazyConnect: true,
    });
    await client.connect();
    try {
      const rows = new Map<string, OrderRow>();
      for (const key of keys) {
        const hash = await client.hgetall(connection.keyPrefix + key);
        if (Object.keys(hash).length === 0) continue;
        rows.set(key, { customer: hash.customer, amount: Number(hash.amount), status: hash.status });
      }
      return rows;
    } finally {
      client.disconnect();
    }
  };

  const sameRows = async (name: string, expected: Map<string, OrderRow>): Promise<true | string> => {
    const rows = await productRows(name, expected.keys());
    try {
      assert.deepEqual(new Map([...rows].sort()), new Map([...expected].sort()));
      return true;
    } catch {
      return `${rows.size} of ${expected.size} rows`;
    }
  };

  const publish = async (from: number, to: number): Promise<void> => {
    const events = orderEvents(from, to);
    for (let i = 0; i < events.length; i += 1000) await eventLog.append('orders', events.slice(i, i + 1000));
  };

  before(async () => {
    cp = await startControlPlane();
    await installCrd(cp);
    namespace = await createNamespace(cp, 'op');
    redis = testRedis();
    pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
    prefix = uniquePrefix('k8s-operator');
    config = loadConfig(
      {},
      {
        redisUrl: TEST_REDIS_URL,
        postgresUrl: POSTGRES_URL,
        redisPrefix: prefix,
        eventLog: { ...DEFAULT_CONFIG.eventLog, durability: 'none' },
      },
    );
    eventLog = await createEventLog(redis, config);
    await publish(0, 200);
    operator = await startOperator();
  });

  after(async () => {
    await operator?.close();
    await eventLog?.close();
    if (redis !== undefined) {
      await dropPostgresLeftovers(pool, redis, namespace);
      await dropPrefix(redis, prefix);
      redis.disconnect();
    }
    await pool?.end();
    await cp?.stop();
  });

  it('refuses to start, naming the cluster, when the CRD is not installed', async () => {
    const bare = await startControlPlane();
    try {
      await assert.rejects(
        startKubernetesOperator(config, logger, { kubeConfig: kubeConfigFor(bare) }),
        (err: Error) => err.message.includes(bare.server) && /install the CRD/.test(err.message),
      );
    } finally {
      await bare.stop();
    }
  });

  it('kubectl apply: finalizer added, conditions progress to Ready, the right data in Redis', async () => {
    const store = new KubernetesResourceStore(kubeConfigFor(cp));
    const watch = store.watch({ namespace });
    const seen: WatchEvent[] = [];
    const watching = (async () => {
      for await (const event of watch) seen.push(event);
    })();

    const applied = await cp.kubectl(['apply', '-f', '-'], manifest('eu-cache', orderSpec('redis')));
    assert.equal(applied.code, 0, applied.stderr);
    assert.match(applied.stdout, /dataproduct\.offtake\.dev\/eu-cache created/);

    await waitFor(() => readyOrWhy('eu-cache'), 'eu-cache Ready', 90_000);
    const product = (await kubectlGet('eu-cache'))!;
    assert.deepEqual(product.metadata.finalizers, [FINALIZER]);
    assert.equal(product.status?.phase, 'Ready');
    for (const type of ['StoreReady', 'Seeded', 'Ready']) {
      const c: NonNullable<ReturnType<typeof condition>> = condition(product.status, type)!;
      assert.equal(c.status, 'True', `${type}: ${JSON.stringify(c)}`);
      assert.equal(c.observedGeneration, 1);
      assert.ok(c.reason && c.message && c.lastTransitionTime);
    }
    assert.equal(product.status?.seed?.processed, product.status?.seed?.total);
    assert.equal(product.status?.seed?.percent, 100);
    assert.ok(product.status?.connection?.secretRef?.name);
    await waitFor(() => sameRows('eu-cache', expectedOrders(200)), 'eu-cache rows', 30_000);

    // The watch saw the operator's writes in order: the finalizer first, StoreReady before Ready.
    await watch.close();
    await watching;
    const mine = seen.filter((e) => e.object.metadata.name === 'eu-cache');
    const firstIndex = (test: (e: WatchEvent) => boolean) => mine.findIndex(test);
    const finalizerAt = firstIndex((e) => e.object.metadata.finalizers.includes(FINALIZER));
    const storeReadyAt = firstIndex((e) => condition(e.object.status, 'StoreReady')?.status === 'True');
    const readyAt = firstIndex((e) => condition(e.object.status, 'Ready')?.status === 'True');
    assert.equal(mine[0].type, 'ADDED');
    assert.ok(
      finalizerAt >= 0 && storeReadyAt > finalizerAt && readyAt > storeReadyAt,
      `${finalizerAt} ${storeReadyAt} ${readyAt}`,
    );
    assert.ok(
      mine.slice(finalizerAt).every((e) => e.object.metadata.finalizers.includes(FINALIZER)),
      'the finalizer stays',
    );
    await store.close();
  });

  it('keeps the product current with new events', async () => {
    await publish(200, 260);
    await waitFor(() => sameRows('eu-cache', expectedOrders(260)), 'eu-cache rows after new events', 30_000);
  });

  it('kubectl get dataproducts shows the printer columns', async () => {
    const table = await cp.kubectl(['get', 'dataproducts', '-n', namespace]);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^NAME\s+PHASE\s+TARGET\s+SEEDED%\s+LAG\s+AGE\s*$/m);
    assert.match(table.stdout, /^eu-cache\s+Ready\s+redis\s+100\s+\d+\s+\S+\s*$/m);
    const wide = await cp.kubectl(['get', 'dp', 'eu-cache', '-n', namespace, '-o', 'wide']);
    assert.equal(wide.code, 0, wide.stderr);
    assert.match(
      wide.stdout,
      /^eu-cache\s+Ready\s+redis\s+100\s+\d+\s+\S+\s+shared\s+True\s+[A-Z][A-Za-z]+\s+0\s*$/m,
    );
  });

  it('kubectl delete: teardown runs, the finalizer is removed, the object and everything it made are gone', async () => {
    const ref = { namespace, name: 'eu-cache' };
    const deleted = await cp.kubectl(['delete', 'dataproduct', 'eu-cache', '-n', namespace, '--timeout=90s']);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.match(deleted.stdout, /dataproduct\.offtake\.dev "eu-cache" deleted/);
    assert.equal(await kubectlGet('eu-cache'), null);
    await waitFor(async () => {
      const left = await leftovers(redis, pool, prefix, ref);
      return left.length === 0 || left.join(', ');
    }, 'nothing of eu-cache left');
  });

  it('converges when the operator is stopped in the middle of provisioning and started again', async () => {
    await publish(260, 2000);
    // Stopped the moment the operator has taken the product on (the finalizer is its first write):
    // provisioning and seeding are then still ahead of it.
    const store = new KubernetesResourceStore(kubeConfigFor(cp));
    const watch = store.watch({ namespace });
    let stopped: Promise<void> | undefined;
    const watching = (async () => {
      for await (const event of watch) {
        const { name, finalizers } = event.object.metadata;
        if (name === 'eu-cache-2' && finalizers.includes(FINALIZER)) {
          stopped = operator!.close();
          return;
        }
      }
    })();
    try {
      const applied = await cp.kubectl(['apply', '-f', '-'], manifest('eu-cache-2', orderSpec('redis')));
      assert.equal(applied.code, 0, applied.stderr);
      await waitFor(() => stopped !== undefined || 'no finalizer yet', 'eu-cache-2 taken on');
      await stopped;
    } finally {
      await store.close();
      await watching;
    }
    const midway = (await kubectlGet('eu-cache-2'))!;
    assert.deepEqual(midway.metadata.finalizers, [FINALIZER]);
    assert.notEqual(condition(midway.status, 'Ready')?.status, 'True', 'stopped before Ready');

    operator = await startOperator();
    await waitFor(() => readyOrWhy('eu-cache-2'), 'eu-cache-2 Ready after a restart', 120_000);
    await waitFor(() => sameRows('eu-cache-2', expectedOrders(2000)), 'eu-cache-2 rows', 30_000);

    const deleted = await cp.kubectl([
      'delete',
      'dataproduct',
      'eu-cache-2',
      '-n',
      namespace,
      '--timeout=90s',
    ]);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.deepEqual(await leftovers(redis, pool, prefix, { namespace, name: 'eu-cache-2' }), []);
  });

  it('offtake api --kubernetes: a product submitted over HTTP is a DataProduct in the cluster', async () => {
    const api = await startApiProcess(
      {
        OFFTAKE_REDIS_URL: TEST_REDIS_URL,
        OFFTAKE_REDIS_PREFIX: prefix,
        OFFTAKE_EVENTLOG_DURABILITY: 'none',
      },
      ['--kubernetes', '--kubeconfig', cp.kubeconfigPath],
    );
    try {
      const path = `${api.url}/v1/namespaces/${namespace}/dataproducts`;
      const created = await fetch(path, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          apiVersion: 'offtake.dev/v1alpha1',
          kind: 'DataProduct',
          metadata: { name: 'eu-http' },
          spec: orderSpec('redis'),
        }),
      });
      assert.equal(created.status, 201, await created.clone().text());
      // The operator watches the cluster: the HTTP submission reaches it and goes Ready.
      assert.ok((await kubectlGet('eu-http')) !== null, 'kubectl sees the product');
      await waitFor(() => readyOrWhy('eu-http'), 'eu-http Ready', 90_000);
      const read = (await (await fetch(`${path}/eu-http`)).json()) as KubectlProduct;
      assert.equal(read.status?.phase, 'Ready');
      const connection = await fetch(`${path}/eu-http/connection`);
      assert.equal(connection.status, 200);
      assert.match(((await connection.json()) as { uri: string }).uri, /^redis:\/\//);
      const gone = await fetch(`${path}/eu-http`, { method: 'DELETE' });
      assert.equal(gone.status, 202);
      await waitFor(async () => (await kubectlGet('eu-http')) === null, 'eu-http deleted in the cluster');
      assert.deepEqual(await leftovers(redis, pool, prefix, { namespace, name: 'eu-http' }), []);
    } finally {
      await api.stop();
    }
  });
});
