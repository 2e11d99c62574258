/**
 * Leader election on a real kube-apiserver's coordination.k8s.io/v1 Lease: of two candidates
 * exactly one leads and the Lease names it; stopping the leader releases the Lease and the other
 * takes over; a leader killed outright (no release) is replaced once its Lease expires; a
 * candidate that loses the Lease to another stops leading.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { LeaderElector } from '../../operator/kube/leader-election.ts';
import { waitFor } from '../operator-helpers.ts';
import { kubeConfigFor, startControlPlane, type ControlPlane } from './control-plane.ts';
import { createNamespace, getJson } from './cluster-fixtures.ts';

const NAMESPACE = 'offtake-system';
const FIXTURE = fileURLToPath(new URL('../fixtures/leader-elector.ts', import.meta.url));

interface StoredLease {
  spec: { holderIdentity?: string; leaseTransitions?: number; leaseDurationSeconds?: number };
}

/** A candidate in this process that logs when it leads. */
function candidate(cp: ControlPlane, lease: string, identity: string, log: string[]) {
  const errors: unknown[] = [];
  let signal: AbortSignal | undefined;
  const elector = new LeaderElector(kubeConfigFor(cp), {
    namespace: NAMESPACE,
    name: lease,
    identity,
    leaseDurationMs: 3000,
    renewDeadlineMs: 2000,
    retryPeriodMs: 500,
    onStartedLeading: (s) => {
      signal = s;
      log.push(`${identity} started`);
    },
    onStoppedLeading: () => {
      log.push(`${identity} stopped`);
    },
    onError: (err) => errors.push(err),
  });
  return { elector, errors, signal: () => signal };
}

/** Checks that in `log` no two candidates ever led at the same time. */
function assertNeverTwoLeaders(log: string[]): void {
  const leading = new Set<string>();
  for (const entry of log) {
    const [who, what] = entry.split(' ');
    if (what === 'started') {
      assert.equal(leading.size, 0, `${who} started while ${[...leading].join(',')} led: ${log.join('; ')}`);
      leading.add(who);
    } else leading.delete(who);
  }
}

describe('leader election on a real kube-apiserver', () => {
  let cp: ControlPlane;

  before(async () => {
    cp = await startControlPlane();
    await createNamespace(cp, NAMESPACE);
  });

  after(async () => {
    await cp?.stop();
  });

  it('lets exactly one of two candidates lead, and hands over when the leader stops', async () => {
    const log: string[] = [];
    const a = candidate(cp, 'two-candidates', 'a', log);
    const b = candidate(cp, 'two-candidates', 'b', log);
    a.elector.start();
    b.elector.start();
    try {
      await waitFor(() => a.elector.isLeader || b.elector.isLeader, 'a leader', 30_000);
      const [leader, standby] = a.elector.isLeader ? [a, b] : [b, a];
      const leaderId = leader === a ? 'a' : 'b';
      const standbyId = leader === a ? 'b' : 'a';
      await waitFor(() => standby.elector.leader === leaderId, 'the standby to see the leader', 30_000);
      assert.equal(standby.elector.isLeader, false);
      const lease = await getJson<StoredLease>(cp, ['lease', 'two-candidates', '-n', NAMESPACE]);
      assert.equal(lease.spec.holderIdentity, leaderId);
      assert.equal(lease.spec.leaseDurationSeconds, 3);

      const work = leader.signal();
      await leader.elector.stop();
      assert.equal(work?.aborted, true, 'the leader’s work is told to stop');
      assert.equal(leader.elector.isLeader, false);
      await waitFor(() => standby.elector.isLeader, 'the standby to take over', 30_000);
      const after = await getJson<StoredLease>(cp, ['lease', 'two-candidates', '-n', NAMESPACE]);
      assert.equal(after.spec.holderIdentity, standbyId);
      assert.equal(after.spec.leaseTransitions, (lease.spec.leaseTransitions ?? 0) + 1);
      assertNeverTwoLeaders(log);
      assert.deepEqual(log, [`${leaderId} started`, `${leaderId} stopped`, `${standbyId} started`]);
    } finally {
      await a.elector.stop();
      await b.elector.stop();
    }
    assert.deepEqual([...a.errors, ...b.errors], []);
  });

  it('replaces a leader killed without releasing once its Lease expires', async () => {
    const child: ChildProcess = spawn(
      process.execPath,
      [FIXTURE, cp.kubeconfigPath, NAMESPACE, 'killed', 'child'],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    const events: string[] = [];
    createInterface({ input: child.stdout! }).on('line', (line) => {
      events.push((JSON.parse(line) as { event: string }).event);
    });
    const log: string[] = [];
    const survivor = candidate(cp, 'killed', 'survivor', log);
    try {
      await waitFor(() => events.includes('started'), 'the child to lead', 30_000);
      survivor.elector.start();
      await waitFor(() => survivor.elector.leader === 'child', 'the survivor to see the child lead', 30_000);
      assert.equal(survivor.elector.isLeader, false);

      child.kill('SIGKILL');
      await once(child, 'exit');
      const held = await getJson<StoredLease>(cp, ['lease', 'killed', '-n', NAMESPACE]);
      assert.equal(held.spec.holderIdentity, 'child', 'nobody released the Lease');
      await waitFor(() => survivor.elector.isLeader, 'the survivor to take over the expired Lease', 30_000);
      const taken = await getJson<StoredLease>(cp, ['lease', 'killed', '-n', NAMESPACE]);
      assert.equal(taken.spec.holderIdentity, 'survivor');
      assert.equal(taken.spec.leaseTransitions, (held.spec.leaseTransitions ?? 0) + 1);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await survivor.elector.stop();
    }
  });

  it('stops leading when another takes the Lease from it', async () => {
    const log: string[] = [];
    const a = candidate(cp, 'taken', 'a', log);
    a.elector.start();
    try {
      await waitFor(() => a.elector.isLeader, 'a to lead', 30_000);
      const work = a.signal();
      // Someone forcibly takes the Lease (e.g. an operator with a skewed view): a must yield.
      const stored = await getJson<{ metadata: Record<string, unknown>; spec: Record<string, unknown> }>(cp, [
        'lease',
        'taken',
        '-n',
        NAMESPACE,
      ]);
      const result = await cp.kubectl(
        ['replace', '-f', '-'],
        JSON.stringify({
          ...stored,
          spec: { ...stored.spec, holderIdentity: 'intruder', leaseDurationSeconds: 3600 },
        }),
      );
      assert.equal(result.code, 0, result.stderr);
      await waitFor(() => !a.elector.isLeader, 'a to stop leading', 30_000);
      assert.equal(work?.aborted, true);
      assert.equal(a.elector.leader, 'intruder');
      assert.deepEqual(log, ['a started', 'a stopped']);
    } finally {
      await a.elector.stop();
    }
    const lease = await getJson<StoredLease>(cp, ['lease', 'taken', '-n', NAMESPACE]);
    assert.equal(lease.spec.holderIdentity, 'intruder', 'a does not release what is not its own');
  });
});
