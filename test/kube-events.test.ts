/**
 * Events on a DataProduct, without a cluster: a valid core/v1 Event about the product, repeats
 * counted on one Event (a name derived from what it says), long messages cut to the API's
 * limit, and one Event per transition — Warning for a failure, Normal otherwise, none for mere
 * progress messages.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { DataProductStatus } from '../crds/generated/types.ts';
import {
  MAX_EVENT_MESSAGE,
  desiredEvent,
  eventName,
  transitionEvents,
  type EventInput,
} from '../operator/kube/events.ts';
import {
  StatusBuilder,
  pipelineStatus,
  provisioningStatus,
  storeFailedStatus,
  storeReadyStatus,
} from '../operator/product-status.ts';
import type { PipelineState } from '../worker/pipeline-runner.ts';
import { validateObject } from './helpers/kube-models.ts';

const subject = { metadata: { name: 'eu-orders', namespace: 'checkout', uid: 'u-1' } };
const source = { component: 'offtake-operator', instance: 'offtake-operator-7d9-abc' };
const failed: EventInput = {
  type: 'Warning',
  reason: 'PostgresUnavailable',
  message: 'Cannot reach Postgres.',
};
const t0 = new Date('2030-01-01T00:00:00Z');
const t1 = new Date('2030-01-01T00:05:00Z');

describe('desired event', () => {
  it('is a valid core/v1 Event about the product', async () => {
    const event = desiredEvent(subject, failed, undefined, t0, source);
    await validateObject(event);
    assert.equal(event.metadata.namespace, 'checkout');
    assert.deepEqual(event.involvedObject, {
      apiVersion: 'offtake.dev/v1alpha1',
      kind: 'DataProduct',
      name: 'eu-orders',
      namespace: 'checkout',
      uid: 'u-1',
    });
    assert.deepEqual(
      [event.type, event.reason, event.message, event.count],
      ['Warning', 'PostgresUnavailable', 'Cannot reach Postgres.', 1],
    );
    assert.equal(event.source?.component, 'offtake-operator');
    assert.equal(event.reportingInstance, 'offtake-operator-7d9-abc');
  });

  it('counts a repeat on the same Event, keeping its first timestamp', () => {
    const first = desiredEvent(subject, failed, undefined, t0, source);
    const stored = { ...first, metadata: { ...first.metadata, resourceVersion: '42' }, count: 3 };
    const repeat = desiredEvent(subject, failed, stored, t1, source);
    assert.equal(repeat.metadata.name, first.metadata.name);
    assert.equal(repeat.count, 4);
    assert.equal(repeat.firstTimestamp, t0);
    assert.equal(repeat.lastTimestamp, t1);
    assert.equal(repeat.metadata.resourceVersion, '42', 'the write is guarded by the read version');
  });

  it('is named by product, type, reason and message', () => {
    const name = eventName(subject, failed);
    assert.match(name, /^eu-orders\.[0-9a-f]{16}$/);
    assert.equal(eventName(subject, { ...failed }), name);
    assert.notEqual(eventName(subject, { ...failed, message: 'other' }), name);
    assert.notEqual(eventName(subject, { ...failed, type: 'Normal' }), name);
    assert.notEqual(
      eventName({ metadata: { ...subject.metadata, uid: 'u-2' } }, failed),
      name,
      'a re-created product',
    );
  });

  it('cuts a long message to the API limit', () => {
    const event = desiredEvent(subject, { ...failed, message: 'é'.repeat(2000) }, undefined, t0, source);
    assert.ok(Buffer.byteLength(event.message!, 'utf8') <= MAX_EVENT_MESSAGE);
    assert.ok(event.message!.endsWith('…'));
  });
});

describe('transition events', () => {
  const state = (over: Partial<PipelineState['seed']>): PipelineState => ({
    phase: 'seeding',
    runId: 'r',
    seed: {
      highWaterMark: { orders: '5-0' },
      processed: 10,
      written: 10,
      deadLettered: 0,
      total: 100,
      eventsPerSecond: 1,
      etaSeconds: 90,
      chunks: { total: 1, done: 0 },
      startedAt: '2030-01-01T00:00:00.000Z',
      ...over,
    },
    tail: null,
    lag: null,
    checkpoint: null,
    deadLettered: 0,
    deadLetterStream: 'checkout.eu-orders.dlq',
  });

  it('records each changed condition once per reason, Warning for failures', () => {
    const provisioning = provisioningStatus(new StatusBuilder(undefined, 1, t0), 'the redis store').build();
    assert.deepEqual(transitionEvents(undefined, provisioning), [
      { type: 'Normal', reason: 'Provisioning', message: 'Creating the redis store.' },
      { type: 'Normal', reason: 'WaitingForStore', message: 'The seed starts once the store is ready.' },
    ]);
    const down = storeFailedStatus(new StatusBuilder(provisioning, 1, t1), {
      reason: 'RedisUnavailable',
      message: 'Cannot reach Redis.',
    }).build();
    assert.deepEqual(transitionEvents(provisioning, down), [
      { type: 'Warning', reason: 'RedisUnavailable', message: 'Cannot reach Redis.' },
    ]);
  });

  it('records nothing for progress within the same reason, and the recovery when Ready', () => {
    const base = storeReadyStatus(new StatusBuilder(undefined, 1, t0), 'ok');
    const seeding = pipelineStatus(base, state({}), {
      maxDeadLetterRatio: 0.1,
      minEventsForRatio: 100,
    }).build();
    const further = pipelineStatus(new StatusBuilder(seeding, 1, t1), state({ processed: 50 }), {
      maxDeadLetterRatio: 0.1,
      minEventsForRatio: 100,
    }).build();
    assert.notEqual(
      seeding.conditions!.find((c) => c.type === 'Seeded')!.message,
      further.conditions!.find((c) => c.type === 'Seeded')!.message,
    );
    assert.deepEqual(transitionEvents(seeding, further), []);
    const ready: DataProductStatus = {
      ...further,
      conditions: further.conditions!.map((c) =>
        c.type === 'Ready'
          ? { ...c, status: 'True', reason: 'Current', message: 'Seeded and following the event log.' }
          : c,
      ),
    };
    assert.deepEqual(transitionEvents(further, ready), [
      { type: 'Normal', reason: 'Current', message: 'Seeded and following the event log.' },
    ]);
  });
});
