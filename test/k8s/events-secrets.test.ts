/**
 * Kubernetes mode's Events and connection Secrets, end to end on a real kube-apiserver with the
 * shared test Redis: a product that goes Ready has Normal Events for its transitions, a
 * `<name>-conn` Secret owned by it whose `uri` reaches the product's data in Redis, and
 * `status.connection.secretRef` naming it; a product that cannot be provisioned gets a Warning
 * Event; and `kubectl delete` removes the Secret — the operator deletes it at teardown, since the
 * test control plane runs no garbage collector to act on the owner reference.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { Redis as RedisClient } from 'ioredis';
import { stringify } from 'yaml';
import type { DataProductSpec, DataProductStatus } from '../../crds/generated/types.ts';
import { createEventLog } from '../../api/server.ts';
import { DEFAULT_CONFIG, loadConfig, type OfftakeConfig } from '../../lib/config.ts';
import type { RedisEventLog } from '../../lib/eventlog/redis-event-log.ts';
import { createLogger } from '../../lib/logger.ts';
import { startKubernetesOperator, type RunningKubernetesOperator } from '../../operator/kubernetes.ts';
import { dropPrefix, testRedis, TEST_REDIS_URL, uniquePrefix } from '../helpers/redis.ts';
import { condition, expectedOrders, orderEvents, orderSpec, waitFor } from '../operator-helpers.ts';
import { kubeConfigFor, startControlPlane, type ControlPlane } from './control-plane.ts';
import { createNamespace, installCrd } from './k8s-helpers.ts';

const logger = createLogger('silent');

interface KubectlProduct {
  metadata: { name: string; uid: string; generation: number };
  status?: DataProductStatus;
}

interface KubectlEvent {
  type: string;
  reason: string;
  message: string;
  count: number;
  involvedObject: { kind: string; name: string; uid: string };
}

interface KubectlSecret {
  metadata: {
    labels?: Record<string, string>;
    ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean }[];
  };
  data: Record<string, string>;
}

describe('operator in Kubernetes mode: Events and connection Secrets', () => {
  let cp: ControlPlane;
  let redis: Redis;
  let prefix: string;
  let namespace: string;
  let config: OfftakeConfig;
  let eventLog: RedisEventLog;
  let operator: RunningKubernetesOperator | undefined;

  const manifest = (name: string, spec: DataProductSpec): string =>
    stringify({
      apiVersion: 'offtake.dev/v1alpha1',
      kind: 'DataProduct',
      metadata: { name, namespace },
      spec,
    });

  const kubectlJson = async <T>(args: string[]): Promise<T | null> => {
    const got = await cp.kubectl([...args, '-n', namespace, '-o', 'json']);
    if (got.code !== 0) {
      if (/NotFound|not found/.test(got.stderr)) return null;
      throw new Error(`kubectl ${args.join(' ')} failed: ${got.stderr}`);
    }
    return JSON.parse(got.stdout) as T;
  };

  const events = async (name: string): Promise<KubectlEvent[]> =>
    (await kubectlJson<{ items: KubectlEvent[] }>([
      'get',
      'events',
      '--field-selector',
      `involvedObject.name=${name}`,
    ]))!.items;

  before(async () => {
    cp = await startControlPlane();
    await installCrd(cp);
    namespace = await createNamespace(cp, 'ev');
    redis = testRedis();
    prefix = uniquePrefix('k8s-events');
    // No Postgres configured: a postgres product fails visibly (PostgresNotConfigured).
    config = loadConfig(
      {},
      {
        redisUrl: TEST_REDIS_URL,
        redisPrefix: prefix,
        eventLog: { ...DEFAULT_CONFIG.eventLog, durability: 'none' },
      },
    );
    eventLog = await createEventLog(redis, config);
    await eventLog.append('orders', orderEvents(0, 100));
    operator = await startKubernetesOperator(config, logger, {
      kubeConfig: kubeConfigFor(cp),
      controller: { backoff: { baseDelayMs: 100, maxDelayMs: 2000 } },
      reconciler: { statusIntervalMs: 500, progressIntervalMs: 500 },
      runner: { chunkEvents: 100, stopTimeoutMs: 10_000 },
      worker: { lockDurationMs: 5000, stalledIntervalMs: 2000, progressIntervalMs: 100 },
    });
  });

  after(async () => {
    await operator?.close();
    await eventLog?.close();
    if (redis !== undefined) {
      await dropPrefix(redis, prefix);
      redis.disconnect();
    }
    await cp?.stop();
  });

  it('a Ready product has Normal Events and an owned connection Secret whose uri works', async () => {
    const applied = await cp.kubectl(['apply', '-f', '-'], manifest('shop', orderSpec('redis')));
    assert.equal(applied.code, 0, applied.stderr);
    await waitFor(async () => {
      const p = await kubectlJson<KubectlProduct>(['get', 'dataproduct', 'shop']);
      return condition(p?.status, 'Ready')?.status === 'True' || JSON.stringify(p?.status ?? null);
    }, 'shop Ready');
    const product = (await kubectlJson<KubectlProduct>(['get', 'dataproduct', 'shop']))!;
    assert.equal(product.status?.connection?.secretRef?.name, 'shop-conn');

    await waitFor(async () => {
      const reasons = new Set((await events('shop')).map((e) => e.reason));
      return condition(product.status, 'Ready')!.reason !== undefined &&
        reasons.has(condition(product.status, 'Ready')!.reason!)
        ? true
        : [...reasons].join(', ');
    }, 'an Event for the Ready transition');
    const recorded = await events('shop');
    for (const e of recorded) {
      assert.equal(e.involvedObject.kind, 'DataProduct');
      assert.equal(e.involvedObject.uid, product.metadata.uid);
      assert.equal(e.type, 'Normal', `${e.reason}: ${e.message}`);
      assert.ok(e.message.length > 0 && e.count >= 1);
    }
    const reasons = recorded.map((e) => e.reason);
    for (const type of ['StoreReady', 'Seeded', 'Ready']) {
      const reason = condition(product.status, type)!.reason!;
      assert.ok(reasons.includes(reason), `an Event ${reason} (${type}) among ${reasons.join(', ')}`);
    }

    const secret = (await kubectlJson<KubectlSecret>(['get', 'secret', 'shop-conn']))!;
    assert.ok(secret, 'the connection Secret exists');
    assert.deepEqual(
      secret.metadata.ownerReferences?.map(({ apiVersion, kind, name, uid, controller }) => ({
        apiVersion,
        kind,
        name,
        uid,
        controller,
      })),
      [
        {
          apiVersion: 'offtake.dev/v1alpha1',
          kind: 'DataProduct',
          name: 'shop',
          uid: product.metadata.uid,
          controller: true,
        },
      ],
    );
    assert.equal(secret.metadata.labels?.['offtake.dev/product'], 'shop');
    const value = (key: string) => Buffer.from(secret.data[key], 'base64').toString('utf8');
    assert.equal(value('type'), 'redis');
    const client = new RedisClient(value('uri'), {
      enableReadyCheck: false,
      maxRetriesPerRequest: 1,
      lazyConnect: true,
    });
    await client.connect();
    try {
      const expected = expectedOrders(100);
      await waitFor(async () => {
        let found = 0;
        for (const key of expected.keys()) {
          const hash = await client.hgetall(value('keyPrefix') + key);
          if (hash.customer === expected.get(key)!.customer) found += 1;
        }
        return found === expected.size || `${found} of ${expected.size} rows`;
      }, 'the rows through the Secret uri');
    } finally {
      client.disconnect();
    }
  });

  it('a product that cannot be provisioned gets a Warning Event', async () => {
    const applied = await cp.kubectl(['apply', '-f', '-'], manifest('no-pg', orderSpec('postgres')));
    assert.equal(applied.code, 0, applied.stderr);
    await waitFor(async () => {
      const warnings = (await events('no-pg')).filter((e) => e.type === 'Warning');
      return warnings.some((e) => e.reason === 'PostgresNotConfigured') || JSON.stringify(warnings);
    }, 'a Warning Event PostgresNotConfigured');
    assert.equal(await kubectlJson(['get', 'secret', 'no-pg-conn']), null, 'no Secret without a store');
    const deleted = await cp.kubectl(['delete', 'dataproduct', 'no-pg', '-n', namespace, '--timeout=90s']);
    assert.equal(deleted.code, 0, deleted.stderr);
  });

  it('kubectl delete: the operator removes the connection Secret at teardown', async () => {
    const deleted = await cp.kubectl(['delete', 'dataproduct', 'shop', '-n', namespace, '--timeout=90s']);
    assert.equal(deleted.code, 0, deleted.stderr);
    assert.equal(await kubectlJson(['get', 'dataproduct', 'shop']), null);
    assert.equal(await kubectlJson(['get', 'secret', 'shop-conn']), null, 'the Secret is gone');
  });
});
