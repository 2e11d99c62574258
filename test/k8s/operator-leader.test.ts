/**
 * Two Kubernetes-mode operators with leader election on one Lease, against a real kube-apiserver
 * and the shared test Redis and Postgres: only the Lease holder runs a controller (the other
 * reconciles nothing), the product reaches Ready, and when the holder is cut off from the API (as
 * a killed or partitioned replica would be) the other takes the Lease over once it expires and
 * reconciles: a new product reaches Ready and deletions are finalized.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import pg from 'pg';
import { stringify } from 'yaml';
import type { DataProductSpec, DataProductStatus } from '../../crds/generated/types.ts';
import { createEventLog } from '../../api/server.ts';
import { DEFAULT_CONFIG, loadConfig, type OfftakeConfig } from '../../lib/config.ts';
import type { RedisEventLog } from '../../lib/eventlog/redis-event-log.ts';
import { createLogger } from '../../lib/logger.ts';
import { startKubernetesOperator, type RunningKubernetesOperator } from '../../operator/kubernetes.ts';
import { FINALIZER } from '../../operator/reconciler.ts';
import { dropPrefix, testRedis, TEST_REDIS_URL, uniquePrefix } from '../helpers/redis.ts';
import {
  POSTGRES_URL,
  condition,
  dropPostgresLeftovers,
  leftovers,
  orderEvents,
  orderSpec,
  waitFor,
} from '../operator-helpers.ts';
import { kubeConfigFor, startControlPlane, type ControlPlane } from './control-plane.ts';
import { createNamespace, installCrd } from './k8s-helpers.ts';
import { startApiProxy, withServer, type ApiProxy } from './proxy.ts';

const logger = createLogger('silent');

interface KubectlProduct {
  metadata: { name: string; generation: number; finalizers?: string[] };
  status?: DataProductStatus;
}

describe('operator replicas with leader election, in Kubernetes mode', () => {
  let cp: ControlPlane;
  let redis: Redis;
  let pool: pg.Pool;
  let prefix: string;
  let namespace: string;
  let leaseNamespace: string;
  let config: OfftakeConfig;
  let eventLog: RedisEventLog;
  let proxy: ApiProxy;
  const operators: RunningKubernetesOperator[] = [];

  const startOperator = async (kc: ReturnType<typeof kubeConfigFor>, identity: string) => {
    const running = await startKubernetesOperator(config, logger, {
      kubeConfig: kc,
      controller: { backoff: { baseDelayMs: 100, maxDelayMs: 2000 } },
      reconciler: { statusIntervalMs: 500, progressIntervalMs: 500 },
      runner: { chunkEvents: 100, stopTimeoutMs: 10_000 },
      worker: { lockDurationMs: 5000, stalledIntervalMs: 2000, progressIntervalMs: 100 },
      leaderElection: {
        namespace: leaseNamespace,
        identity,
        leaseDurationMs: 2000,
        renewDeadlineMs: 1500,
        retryPeriodMs: 300,
      },
    });
    operators.push(running);
    return running;
  };

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
    if (ready?.status === 'True' && product?.status?.observedGeneration === product?.metadata.generation)
      return true;
    return JSON.stringify(product?.status ?? null);
  };

  const leaseHolder = async (): Promise<string> => {
    const got = await cp.kubectl(['get', 'lease', 'offtake-operator', '-n', leaseNamespace, '-o', 'json']);
    assert.equal(got.code, 0, got.stderr);
    return (JSON.parse(got.stdout) as { spec: { holderIdentity?: string } }).spec.holderIdentity ?? '';
  };

  before(async () => {
    cp = await startControlPlane();
    await installCrd(cp);
    namespace = await createNamespace(cp, 'op');
    leaseNamespace = await createNamespace(cp, 'offtake-system');
    redis = testRedis();
    pool = new pg.Pool({ connectionString: POSTGRES_URL, max: 2 });
    prefix = uniquePrefix('k8s-leader');
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
    await eventLog.append('orders', orderEvents(0, 200));
    proxy = await startApiProxy(cp.server);
  });

  after(async () => {
    await proxy?.cut();
    for (const operator of operators) await operator.close();
    await eventLog?.close();
    if (redis !== undefined) {
      await dropPostgresLeftovers(pool, redis, namespace);
      await dropPrefix(redis, prefix);
      redis.disconnect();
    }
    await pool?.end();
    await cp?.stop();
  });

  it('only the Lease holder reconciles; cut off, it is replaced and the product still converges', async () => {
    // The first replica reaches the API through a proxy the test can cut.
    const first = await startOperator(withServer(kubeConfigFor(cp), proxy.url), 'replica-a');
    await waitFor(() => first.isLeader() || 'not leading yet', 'replica-a leads', 30_000);
    const second = await startOperator(kubeConfigFor(cp), 'replica-b');

    const applied = await cp.kubectl(['apply', '-f', '-'], manifest('one', orderSpec('redis')));
    assert.equal(applied.code, 0, applied.stderr);
    await waitFor(() => readyOrWhy('one'), 'one Ready', 90_000);
    assert.equal(await leaseHolder(), 'replica-a');
    assert.ok(first.isLeader() && first.controller !== undefined);
    assert.ok(!second.isLeader(), 'one leader');
    assert.equal(second.controller, undefined, 'the follower runs no controller');
    assert.deepEqual((await kubectlGet('one'))?.metadata.finalizers, [FINALIZER]);

    // Cut off (it can neither renew nor release), replica-a steps down; replica-b takes the Lease
    // once it has expired and reconciles from then on.
    await proxy.cut();
    await waitFor(() => second.isLeader() || 'not leading yet', 'replica-b leads', 60_000);
    assert.equal(await leaseHolder(), 'replica-b');
    await waitFor(() => !first.isLeader() || 'still leading', 'replica-a stepped down', 30_000);
    await waitFor(() => first.controller === undefined || 'controller running', 'replica-a idle', 30_000);
    assert.ok(second.controller !== undefined);

    const again = await cp.kubectl(['apply', '-f', '-'], manifest('two', orderSpec('redis')));
    assert.equal(again.code, 0, again.stderr);
    await waitFor(() => readyOrWhy('two'), 'two Ready under the new leader', 90_000);
    assert.deepEqual((await kubectlGet('two'))?.metadata.finalizers, [FINALIZER]);

    for (const name of ['one', 'two']) {
      const deleted = await cp.kubectl(['delete', 'dataproduct', name, '-n', namespace, '--timeout=90s']);
      assert.equal(deleted.code, 0, deleted.stderr);
      assert.equal(await kubectlGet(name), null);
      await waitFor(async () => {
        const left = await leftovers(redis, pool, prefix, { namespace, name });
        return left.length === 0 || left.join(', ');
      }, `nothing of ${name} left`);
    }
  });
});
