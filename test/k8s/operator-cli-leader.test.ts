/**
 * `offtake operator` as two processes on one Lease (the CLI's default leader election, default
 * timings), against a real kube-apiserver and the shared test Redis: the Lease names one of them
 * and products get reconciled; the holder killed with SIGKILL (it cannot release the Lease) is
 * replaced once the Lease expires, and a new product still reaches Ready.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { stringify } from 'yaml';
import type { DataProductStatus } from '../../crds/generated/types.ts';
import { createEventLog } from '../../api/server.ts';
import { DEFAULT_CONFIG, loadConfig } from '../../lib/config.ts';
import { dropPrefix, testRedis, TEST_REDIS_URL, uniquePrefix } from '../helpers/redis.ts';
import { freePort } from '../eventlog-helpers.ts';
import { metricValue } from '../helpers/metrics.ts';
import { condition, orderEvents, orderSpec, waitFor } from '../operator-helpers.ts';
import { startControlPlane, type ControlPlane } from './control-plane.ts';
import { createNamespace, installCrd } from './k8s-helpers.ts';

const CLI = fileURLToPath(new URL('../../cli/main.ts', import.meta.url));

describe('offtake operator: two processes with leader election', () => {
  let cp: ControlPlane;
  let redis: Redis;
  let prefix: string;
  let namespace: string;
  let leaseNamespace: string;
  const replicas = new Map<
    string,
    { child: ChildProcess; exited: Promise<unknown>; log: string[]; healthPort: number }
  >();

  /** A replica's `/metrics` (its health port), or its `/readyz` answer. */
  const scrape = async (name: string, path = '/metrics'): Promise<{ status: number; text: string }> => {
    const res = await fetch(`http://127.0.0.1:${replicas.get(name)!.healthPort}${path}`);
    return { status: res.status, text: await res.text() };
  };

  const startReplica = async (name: string) => {
    const healthPort = await freePort();
    const child = spawn(
      process.execPath,
      [CLI, 'operator', '--kubeconfig', cp.kubeconfigPath, '--lease-namespace', leaseNamespace],
      {
        env: {
          ...process.env,
          POD_NAME: name,
          OFFTAKE_REDIS_URL: TEST_REDIS_URL,
          OFFTAKE_REDIS_PREFIX: prefix,
          OFFTAKE_POSTGRES_URL: '',
          OFFTAKE_EVENTLOG_DURABILITY: 'none',
          OFFTAKE_LOG_LEVEL: 'info',
          OFFTAKE_OPERATOR_HEALTH_PORT: String(healthPort),
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    const log: string[] = [];
    child.stdout.on('data', (chunk: Buffer) => log.push(chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => log.push(chunk.toString()));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    replicas.set(name, { child, exited, log, healthPort });
  };

  const holder = async (): Promise<string> => {
    const got = await cp.kubectl(['get', 'lease', 'offtake-operator', '-n', leaseNamespace, '-o', 'json']);
    if (got.code !== 0) return '';
    return (JSON.parse(got.stdout) as { spec: { holderIdentity?: string } }).spec.holderIdentity ?? '';
  };

  const applyAndWaitReady = async (name: string): Promise<void> => {
    const manifest = stringify({
      apiVersion: 'offtake.dev/v1alpha1',
      kind: 'DataProduct',
      metadata: { name, namespace },
      spec: orderSpec('redis'),
    });
    const applied = await cp.kubectl(['apply', '-f', '-'], manifest);
    assert.equal(applied.code, 0, applied.stderr);
    await waitFor(
      async () => {
        const got = await cp.kubectl(['get', 'dataproduct', name, '-n', namespace, '-o', 'json']);
        const status = (JSON.parse(got.stdout) as { status?: DataProductStatus }).status;
        return condition(status, 'Ready')?.status === 'True' || JSON.stringify(status ?? null);
      },
      `${name} Ready`,
      120_000,
    );
  };

  before(async () => {
    cp = await startControlPlane();
    await installCrd(cp);
    namespace = await createNamespace(cp, 'op');
    leaseNamespace = await createNamespace(cp, 'offtake-system');
    redis = testRedis();
    prefix = uniquePrefix('k8s-cli-leader');
    const config = loadConfig(
      {},
      {
        redisUrl: TEST_REDIS_URL,
        redisPrefix: prefix,
        eventLog: { ...DEFAULT_CONFIG.eventLog, durability: 'none' },
      },
    );
    const eventLog = await createEventLog(redis, config);
    await eventLog.append('orders', orderEvents(0, 100));
    await eventLog.close();
  });

  after(async () => {
    for (const { child, exited } of replicas.values()) {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    }
    if (redis !== undefined) {
      await dropPrefix(redis, prefix);
      redis.disconnect();
    }
    await cp?.stop();
  });

  it('one process holds the Lease; SIGKILLed, the other takes over and reconciles', async () => {
    await startReplica('replica-a');
    await startReplica('replica-b');
    let first = '';
    await waitFor(
      async () => {
        first = await holder();
        return first !== '' || 'no holder yet';
      },
      'a Lease holder',
      60_000,
    );
    const leaderName = first.split('_')[0];
    assert.ok(replicas.has(leaderName), `the holder ${first} is one of the replicas`);
    const followerName = leaderName === 'replica-a' ? 'replica-b' : 'replica-a';
    await applyAndWaitReady('before-kill');
    assert.equal(await holder(), first);
    const leaderLog = replicas.get(leaderName)!.log.join('');
    assert.match(leaderLog, /leading: reconciling DataProducts/);
    assert.doesNotMatch(replicas.get(followerName)!.log.join(''), /leading: reconciling DataProducts/);
    // Each replica says on its health port whether it leads; only the leader reconciles.
    for (const name of [leaderName, followerName]) {
      await waitFor(
        async () => (await scrape(name, '/readyz')).status === 200 || `${name} not ready`,
        `${name} ready`,
      );
    }
    const leaderMetrics = (await scrape(leaderName)).text;
    const followerMetrics = (await scrape(followerName)).text;
    assert.equal(metricValue(leaderMetrics, 'offtake_operator_leader'), 1);
    assert.equal(metricValue(followerMetrics, 'offtake_operator_leader'), 0);
    const reconciles = (text: string) =>
      ['done', 'requeued', 'failed'].reduce(
        (sum, outcome) => sum + (metricValue(text, 'offtake_operator_reconciles_total', { outcome }) ?? 0),
        0,
      );
    assert.ok(reconciles(leaderMetrics) >= 1, 'the leader reconciled');
    assert.equal(reconciles(followerMetrics), 0, 'the standby did not');

    // SIGKILL: no release; the follower waits out the Lease (15 s by default) and takes it.
    const leader = replicas.get(leaderName)!;
    leader.child.kill('SIGKILL');
    await leader.exited;
    await waitFor(
      async () => {
        const now = await holder();
        return now.startsWith(`${followerName}_`) || `holder ${now}`;
      },
      'the follower holds the Lease',
      90_000,
    );
    await applyAndWaitReady('after-kill');
    assert.match(replicas.get(followerName)!.log.join(''), /leading: reconciling DataProducts/);
  });
});
