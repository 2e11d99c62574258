/**
 * The leader election's decisions, without a cluster: create a missing Lease, renew our own,
 * wait while another holder's term runs (on our clock, from when we saw its record), take over
 * an expired or released one with one more transition, and refuse unsafe durations.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { V1Lease } from '@kubernetes/client-node';
import {
  checkDurations,
  decideLease,
  leaseRecordKey,
  microTime,
  releasedLeaseSpec,
} from '../operator/kube/leader-election.ts';
import { validateObject } from './helpers/kube-models.ts';

const now = new Date('2030-01-01T00:00:10.123Z');
const lease = (spec: V1Lease['spec']): V1Lease => ({
  apiVersion: 'coordination.k8s.io/v1',
  kind: 'Lease',
  metadata: { name: 'offtake-operator', namespace: 'offtake-system', resourceVersion: '7' },
  spec,
});
const held = lease({
  holderIdentity: 'b',
  leaseDurationSeconds: 15,
  acquireTime: '2030-01-01T00:00:00.000000Z' as never,
  renewTime: '2030-01-01T00:00:08.000000Z' as never,
  leaseTransitions: 2,
});
const situation = (over: Partial<Parameters<typeof decideLease>[0]>) => ({
  lease: held,
  identity: 'a',
  leaseDurationSeconds: 15,
  observedAt: now.getTime(),
  now,
  ...over,
});

describe('lease decisions', () => {
  it('writes times as MicroTime (microseconds)', () => {
    assert.equal(microTime(now), '2030-01-01T00:00:10.123000Z');
  });

  it('creates a missing Lease held by us', async () => {
    const d = decideLease(situation({ lease: undefined }));
    assert.equal(d.action, 'create');
    if (d.action !== 'create') return;
    assert.deepEqual(d.spec, {
      holderIdentity: 'a',
      leaseDurationSeconds: 15,
      acquireTime: '2030-01-01T00:00:10.123000Z',
      renewTime: '2030-01-01T00:00:10.123000Z',
      leaseTransitions: 0,
    });
    await validateObject(lease(d.spec));
  });

  it('waits while another holder renewed within its duration (as we observed it)', () => {
    const d = decideLease(situation({ observedAt: now.getTime() - 14_000 }));
    assert.deepEqual(d, { action: 'wait', holder: 'b' });
  });

  it('takes over when the holder has not renewed for its duration, counting a transition', () => {
    const d = decideLease(situation({ observedAt: now.getTime() - 15_001 }));
    assert.equal(d.action, 'update');
    if (d.action !== 'update') return;
    assert.equal(d.acquired, true);
    assert.equal(d.spec.holderIdentity, 'a');
    assert.equal(d.spec.leaseTransitions, 3);
    assert.equal(d.spec.acquireTime, microTime(now));
  });

  it('takes a released Lease at once', () => {
    const released = lease(releasedLeaseSpec(held.spec!, now));
    assert.equal(released.spec!.holderIdentity, '');
    const d = decideLease(situation({ lease: released }));
    assert.equal(d.action, 'update');
    if (d.action === 'update') assert.equal(d.acquired, true);
  });

  it('renews its own Lease, keeping acquireTime and transitions', () => {
    const d = decideLease(situation({ identity: 'b', observedAt: 0 }));
    assert.equal(d.action, 'update');
    if (d.action !== 'update') return;
    assert.equal(d.acquired, false);
    assert.equal(d.spec.renewTime, microTime(now));
    assert.equal(d.spec.acquireTime, held.spec!.acquireTime);
    assert.equal(d.spec.leaseTransitions, 2);
  });

  it('sees any change of the record as a sign of life', () => {
    const renewed = { ...held.spec, renewTime: '2030-01-01T00:00:10.000000Z' as never };
    assert.notEqual(leaseRecordKey(renewed), leaseRecordKey(held.spec));
    assert.equal(leaseRecordKey({ ...held.spec }), leaseRecordKey(held.spec));
  });
});

describe('durations', () => {
  it('require lease duration > renew deadline > 1.2 × retry period', () => {
    assert.doesNotThrow(() =>
      checkDurations({ leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 }),
    );
    assert.throws(
      () => checkDurations({ leaseDurationMs: 10_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 }),
      /leaseDurationMs/,
    );
    assert.throws(
      () => checkDurations({ leaseDurationMs: 15_000, renewDeadlineMs: 2_000, retryPeriodMs: 2_000 }),
      /renewDeadlineMs/,
    );
    assert.throws(
      () => checkDurations({ leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 0 }),
      /retryPeriodMs/,
    );
  });
});
