/**
 * Kubernetes Events on a DataProduct: one for each transition and failure of its conditions, so
 * `kubectl describe dataproduct x` (and `kubectl events --for dataproduct/x`) tells the story
 * next to the status. core/v1 Events, aggregated the way kubectl shows them: a repeat of the same
 * type, reason and message on the same product raises `count` and `lastTimestamp` of one Event
 * instead of making another. The Event's name is derived from exactly those, so the aggregation
 * holds across operator restarts and replicas too.
 */
import { createHash } from 'node:crypto';
import { CoreV1Api, type CoreV1Event, type KubeConfig } from '@kubernetes/client-node';
import { API_VERSION, KIND } from '../../crds/dataproduct.schema.ts';
import type { DataProductStatus } from '../../crds/generated/types.ts';
import { isConflict, isNotFound } from './api-errors.ts';
import { isProgressReason } from '../product-status.ts';

/** What an Event says. */
export interface EventInput {
  /** Normal for progress, Warning for a failure the user should look at. */
  type: 'Normal' | 'Warning';
  /** CamelCase, e.g. `Provisioned`, `SeedFailed`. */
  reason: string;
  message: string;
}

/** The product an Event is about. */
export interface EventSubject {
  metadata: { name: string; namespace: string; uid: string };
}

/** Who records the Events. */
export interface EventSource {
  /** `source.component` / `reportingComponent`, e.g. `offtake-operator`. */
  component: string;
  /** `reportingInstance`: which replica (its pod name). */
  instance?: string;
}

/** The longest message an Event keeps (the API server's limit for an event note). */
export const MAX_EVENT_MESSAGE = 1024;
/** The longest reason the API server accepts. */
const MAX_EVENT_REASON = 128;

/**
 * The name of the Event for `input` on `subject`: the product's name and a hash of its uid and
 * the Event's type, reason and message. Equal inputs share one Event, which counts them.
 */
export function eventName(subject: EventSubject, input: EventInput): string {
  const hash = createHash('sha256')
    .update([subject.metadata.uid, input.type, input.reason, truncate(input.message)].join('\n'))
    .digest('hex')
    .slice(0, 16);
  return `${subject.metadata.name}.${hash}`;
}

function truncate(message: string): string {
  if (Buffer.byteLength(message, 'utf8') <= MAX_EVENT_MESSAGE) return message;
  let cut = message.slice(0, MAX_EVENT_MESSAGE - 1);
  while (Buffer.byteLength(cut, 'utf8') > MAX_EVENT_MESSAGE - 3) cut = cut.slice(0, -1);
  return `${cut}…`;
}

/**
 * The Event to write for `input` on `subject` at `now`: a new one (count 1), or `existing` —
 * the same Event recorded before — with its count raised and lastTimestamp moved. Pure.
 */
export function desiredEvent(
  subject: EventSubject,
  input: EventInput,
  existing: CoreV1Event | undefined,
  now: Date,
  source: EventSource,
): CoreV1Event {
  const { name, namespace, uid } = subject.metadata;
  const event: CoreV1Event = {
    apiVersion: 'v1',
    kind: 'Event',
    metadata: { name: eventName(subject, input), namespace },
    involvedObject: { apiVersion: API_VERSION, kind: KIND, name, namespace, uid },
    type: input.type,
    reason: input.reason.slice(0, MAX_EVENT_REASON),
    message: truncate(input.message),
    source: { component: source.component },
    reportingComponent: source.component,
    reportingInstance: source.instance ?? '',
    firstTimestamp: now,
    lastTimestamp: now,
    count: 1,
  };
  if (existing === undefined) return event;
  return {
    ...event,
    metadata: { ...event.metadata, resourceVersion: existing.metadata?.resourceVersion },
    firstTimestamp: existing.firstTimestamp ?? now,
    count: (existing.count ?? 1) + 1,
  };
}

type Condition = NonNullable<DataProductStatus['conditions']>[number];

/**
 * The Events a status change deserves: one per condition whose status or reason changed (a new
 * message alone — seed progress — is no transition). A failure reason makes a Warning, anything
 * else a Normal Event; conditions that changed to the same reason at once share one Event.
 */
export function transitionEvents(
  previous: DataProductStatus | undefined,
  next: DataProductStatus | undefined,
): EventInput[] {
  const before = new Map<string, Condition>((previous?.conditions ?? []).map((c) => [c.type, c]));
  const events: EventInput[] = [];
  const seen = new Set<string>();
  for (const condition of next?.conditions ?? []) {
    const old = before.get(condition.type);
    if (old !== undefined && old.status === condition.status && old.reason === condition.reason) continue;
    const reason = condition.reason ?? `${condition.type}${condition.status}`;
    const failure = condition.status !== 'True' && !isProgressReason(reason);
    const type = failure ? 'Warning' : 'Normal';
    if (seen.has(`${type}/${reason}`)) continue;
    seen.add(`${type}/${reason}`);
    const message = condition.message ?? `${condition.type} is ${condition.status}.`;
    events.push({ type, reason, message });
  }
  return events;
}

/** Options of an {@link EventRecorder}. */
export interface EventRecorderOptions {
  /** The recording component (default `offtake-operator`). */
  component?: string;
  /** This replica's name, e.g. the pod name (default: none). */
  instance?: string;
  clock?: () => Date;
  /**
   * Called when an Event cannot be written. Events are a courtesy next to the status, never a
   * reason to fail a reconcile, so {@link EventRecorder.record} does not throw.
   */
  onError?: (err: unknown, event: EventInput) => void;
}

/** How often a write that lost a race (409) is tried again with a fresh read. */
const ATTEMPTS = 4;

/** Records Events on DataProducts through the core/v1 Events API. */
export class EventRecorder {
  private readonly api: CoreV1Api;
  private readonly options: Required<Omit<EventRecorderOptions, 'instance'>> & { instance?: string };

  constructor(kubeConfig: KubeConfig, options: EventRecorderOptions = {}) {
    this.api = kubeConfig.makeApiClient(CoreV1Api);
    this.options = {
      component: 'offtake-operator',
      clock: () => new Date(),
      onError: () => undefined,
      ...options,
    };
  }

  /** Records `input` on `subject` (a repeat raises the count); never throws. */
  async record(subject: EventSubject, input: EventInput): Promise<CoreV1Event | undefined> {
    try {
      return await this.write(subject, input);
    } catch (err) {
      this.options.onError(err, input);
      return undefined;
    }
  }

  /** Records the Events of a status change ({@link transitionEvents}); never throws. */
  async recordTransition(
    subject: EventSubject,
    previous: DataProductStatus | undefined,
    next: DataProductStatus | undefined,
  ): Promise<void> {
    for (const input of transitionEvents(previous, next)) await this.record(subject, input);
  }

  private async write(subject: EventSubject, input: EventInput): Promise<CoreV1Event> {
    const namespace = subject.metadata.namespace;
    const name = eventName(subject, input);
    const source = { component: this.options.component, instance: this.options.instance };
    for (let attempt = 1; ; attempt++) {
      let existing: CoreV1Event | undefined;
      try {
        existing = await this.api.readNamespacedEvent({ name, namespace });
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      const body = desiredEvent(subject, input, existing, this.options.clock(), source);
      try {
        return existing === undefined
          ? await this.api.createNamespacedEvent({ namespace, body })
          : await this.api.replaceNamespacedEvent({ name, namespace, body });
      } catch (err) {
        // Another replica (or an earlier pass) wrote it meanwhile, or its TTL ran out: read again.
        const raced = isConflict(err) || (existing !== undefined && isNotFound(err));
        if (!raced || attempt >= ATTEMPTS) throw err;
      }
    }
  }
}
