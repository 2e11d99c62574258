/**
 * The status a product should show, as pure functions of what the reconciler observed: no I/O,
 * so every lifecycle rule (which condition, which reason, when lastTransitionTime moves) is
 * tested without a server. Conditions follow the Kubernetes API conventions: one entry per type,
 * a CamelCase reason, a human message, the generation they were computed from, and a
 * lastTransitionTime that changes only when the condition's status flips.
 */
import type { DataProductStatus } from '../crds/generated/types.ts';
import { formatPosition, type PipelineState } from '../worker/pipeline-runner.ts';

/** One status condition. */
export type Condition = NonNullable<DataProductStatus['conditions']>[number];

/** The lifecycle summary shown as `status.phase`. */
export type Phase = NonNullable<DataProductStatus['phase']>;

/** The condition types the operator writes. */
export const STORE_READY = 'StoreReady';
export const SEEDED = 'Seeded';
export const READY = 'Ready';
export const DELETING = 'Deleting';

/** A condition to set: its lastTransitionTime and observedGeneration are filled in by {@link setCondition}. */
export interface ConditionInput {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
}

/** A failure to show: a CamelCase reason and a message a user can act on. */
export interface Failure {
  reason: string;
  message: string;
}

/** Reasons that mean "working on it", not "something is wrong". */
const PROGRESS_REASONS = new Set([
  'Provisioning',
  'Provisioned',
  'WaitingForStore',
  'Replaying',
  'Seeding',
  'SeedComplete',
  'Current',
  'Reseeding',
  'Starting',
  'TearingDown',
  'WaitingForWorker',
  'NoWorkers',
]);

/** Whether a condition reason means "working on it" rather than a failure (Events use it for Normal vs Warning). */
export function isProgressReason(reason: string): boolean {
  return PROGRESS_REASONS.has(reason);
}

/** Now, as Kubernetes writes timestamps: RFC 3339 in UTC, whole seconds. */
export function timestamp(now: Date): string {
  return now.toISOString().replace(/\.\d+Z$/, 'Z');
}

/**
 * The conditions with `input` set: an existing condition of the type keeps its
 * lastTransitionTime unless its status changes. Returns a new array; order is kept, new types
 * go last.
 */
export function setCondition(
  conditions: readonly Condition[] | undefined,
  input: ConditionInput,
  generation: number,
  now: Date,
): Condition[] {
  const list = [...(conditions ?? [])];
  const index = list.findIndex((c) => c.type === input.type);
  const previous = index === -1 ? undefined : list[index];
  const next: Condition = {
    type: input.type,
    status: input.status,
    reason: input.reason,
    message: input.message,
    lastTransitionTime:
      previous !== undefined && previous.status === input.status && previous.lastTransitionTime !== undefined
        ? previous.lastTransitionTime
        : timestamp(now),
    observedGeneration: generation,
  };
  if (index === -1) list.push(next);
  else list[index] = next;
  return list;
}

/** The condition of a type, if set. */
export function findCondition(status: DataProductStatus | undefined, type: string): Condition | undefined {
  return status?.conditions?.find((c) => c.type === type);
}

/** The phase a set of conditions sums up to. */
export function phaseOf(conditions: readonly Condition[]): Phase {
  const get = (type: string) => conditions.find((c) => c.type === type);
  if (get(DELETING)?.status === 'True') return 'Deleting';
  const failed = conditions.some(
    (c) => c.status !== 'True' && c.reason !== undefined && !PROGRESS_REASONS.has(c.reason),
  );
  if (failed) return 'Failed';
  if (get(READY)?.status === 'True') return 'Ready';
  if (get(STORE_READY)?.status !== 'True') return get(STORE_READY) === undefined ? 'Pending' : 'Provisioning';
  return 'Seeding';
}

/** Builds a status step by step from the previous one. */
export class StatusBuilder {
  private readonly status: DataProductStatus;
  private readonly generation: number;
  private readonly now: Date;

  constructor(previous: DataProductStatus | undefined, generation: number, now: Date) {
    this.status = structuredClone(previous ?? {});
    this.generation = generation;
    this.now = now;
  }

  set(input: ConditionInput): this {
    this.status.conditions = setCondition(this.status.conditions, input, this.generation, this.now);
    return this;
  }

  remove(type: string): this {
    if (this.status.conditions !== undefined) {
      this.status.conditions = this.status.conditions.filter((c) => c.type !== type);
    }
    return this;
  }

  /** Merges top-level fields (seed, lag, checkpoint, connection); `undefined` removes one. */
  fields(fields: Partial<DataProductStatus>): this {
    for (const [key, value] of Object.entries(fields) as [keyof DataProductStatus, unknown][]) {
      if (value === undefined) delete this.status[key];
      else (this.status as Record<string, unknown>)[key] = value;
    }
    return this;
  }

  /** The status, with observedGeneration and the phase filled in. */
  build(): DataProductStatus {
    const conditions = this.status.conditions ?? [];
    return { ...this.status, observedGeneration: this.generation, phase: phaseOf(conditions) };
  }
}

/** Status while the store is being made (or re-made). */
export function provisioningStatus(b: StatusBuilder, what: string): StatusBuilder {
  return b
    .set({ type: STORE_READY, status: 'False', reason: 'Provisioning', message: `Creating ${what}.` })
    .set({
      type: SEEDED,
      status: 'False',
      reason: 'WaitingForStore',
      message: 'The seed starts once the store is ready.',
    })
    .set({
      type: READY,
      status: 'False',
      reason: 'Provisioning',
      message: 'The store is being provisioned.',
    });
}

/** Status when the store cannot be made: the failure on StoreReady and Ready. */
export function storeFailedStatus(b: StatusBuilder, failure: Failure): StatusBuilder {
  return b
    .set({ type: STORE_READY, status: 'False', ...failure })
    .set({
      type: SEEDED,
      status: 'False',
      reason: 'WaitingForStore',
      message: 'The seed starts once the store is ready.',
    })
    .set({ type: READY, status: 'False', ...failure });
}

/** Status when the store is ready. */
export function storeReadyStatus(b: StatusBuilder, description: string): StatusBuilder {
  return b.set({ type: STORE_READY, status: 'True', reason: 'Provisioned', message: description });
}

/** Thresholds of the pipeline's health. */
export interface PipelineHealth {
  /** Above this share of dead-lettered events (of those processed) the product is not Ready. */
  maxDeadLetterRatio: number;
  /** The ratio is judged only once this many events were processed. */
  minEventsForRatio: number;
}

/**
 * The share of the seed replayed, in whole percent for `kubectl get`: rounded down, so it shows
 * 100 only once the seed is complete (the total can grow while a seed of "latest" settles).
 */
export function seedPercent(processed: number, total: number, completed: boolean): number {
  if (completed) return 100;
  if (total <= 0) return 0;
  return Math.min(99, Math.floor((100 * processed) / total));
}

/** The `deadLetters` block of a status: the build's dead-letter stream and how many it holds. */
export function deadLettersStatus(state: PipelineState): NonNullable<DataProductStatus['deadLetters']> {
  return { stream: state.deadLetterStream, count: state.deadLettered };
}

/** The `seed` block of a status from the pipeline's state. */
export function seedStatus(state: PipelineState): NonNullable<DataProductStatus['seed']> {
  const seed: NonNullable<DataProductStatus['seed']> = {
    processed: state.seed.processed,
    written: state.seed.written,
    deadLettered: state.seed.deadLettered,
    total: state.seed.total,
    percent: seedPercent(state.seed.processed, state.seed.total, state.seed.completedAt !== undefined),
    eventsPerSecond: state.seed.eventsPerSecond,
    startedAt: state.seed.startedAt,
  };
  const hwm = formatPosition(state.seed.highWaterMark);
  if (hwm !== undefined) seed.highWaterMark = hwm;
  if (state.seed.etaSeconds !== null) seed.etaSeconds = state.seed.etaSeconds;
  if (state.seed.completedAt !== undefined) seed.completedAt = state.seed.completedAt;
  return seed;
}

/**
 * Status from the pipeline's state: seed progress while seeding, Seeded and Ready once tailing,
 * and the failure (pipeline failed, tail retrying an error, too many dead letters) otherwise.
 */
export function pipelineStatus(
  b: StatusBuilder,
  state: PipelineState,
  health: PipelineHealth,
): StatusBuilder {
  const lag = state.lag === null ? undefined : { events: state.lag.events, seconds: state.lag.seconds };
  b.fields({
    seed: seedStatus(state),
    lag,
    checkpoint: formatPosition(state.checkpoint),
    deadLetters: deadLettersStatus(state),
  });
  const seeded = state.seed.completedAt !== undefined;
  const { processed, total } = state.seed;
  if (!seeded) {
    if (state.phase === 'failed') {
      const failure = { reason: 'SeedFailed', message: `The seed failed: ${state.error ?? 'unknown error'}` };
      return b
        .set({ type: SEEDED, status: 'False', ...failure })
        .set({ type: READY, status: 'False', ...failure });
    }
    if (state.waiting !== undefined) {
      const { reason, message } = state.waiting;
      return b
        .set({
          type: SEEDED,
          status: 'False',
          reason,
          message: `${processed} of ${total} events; ${message}`,
        })
        .set({ type: READY, status: 'False', reason, message });
    }
    const retrying = state.error === undefined ? '' : ` (retrying after: ${state.error})`;
    return b
      .set({
        type: SEEDED,
        status: 'False',
        reason: 'Replaying',
        message: `${processed} of ${total} events${retrying}`,
      })
      .set({
        type: READY,
        status: 'False',
        reason: 'Seeding',
        message: 'The store is being seeded from the event log.',
      });
  }
  b.set({
    type: SEEDED,
    status: 'True',
    reason: 'SeedComplete',
    message: `Replayed ${processed} events up to the high-water mark.`,
  });
  const deadLettered = state.deadLettered;
  const seen = processed + (state.tail?.processed ?? 0);
  if (state.phase === 'failed') {
    return b.set({
      type: READY,
      status: 'False',
      reason: 'TailFailed',
      message: `The live tail failed: ${state.error ?? 'unknown error'}`,
    });
  }
  if (state.waiting !== undefined) {
    // Nobody tails the log: the store falls behind while this lasts.
    return b.set({ type: READY, status: 'False', ...state.waiting });
  }
  if (state.error !== undefined) {
    return b.set({
      type: READY,
      status: 'False',
      reason: 'TailFailing',
      message: `The live tail is retrying after an error: ${state.error}`,
    });
  }
  if (seen >= health.minEventsForRatio && deadLettered / seen > health.maxDeadLetterRatio) {
    const percent = ((100 * deadLettered) / seen).toFixed(1);
    return b.set({
      type: READY,
      status: 'False',
      reason: 'DeadLetterRateHigh',
      message:
        `${deadLettered} of ${seen} events (${percent}%) could not be transformed or written and went to the ` +
        `dead-letter stream ${state.deadLetterStream}; the limit is ${(100 * health.maxDeadLetterRatio).toFixed(1)}%. ` +
        'Fix the filter or transform.',
    });
  }
  return b.set({
    type: READY,
    status: 'True',
    reason: 'Current',
    message: 'Seeded and following the event log.',
  });
}

/**
 * Status while a spec change is seeded beside the store readers use (blue/green): seed progress
 * and Seeded are the next build's; Ready says readers are still served by the previous build,
 * which its own live tail keeps current until the switch.
 */
export function rebuildStatus(
  b: StatusBuilder,
  active: PipelineState,
  next: PipelineState,
  health: PipelineHealth,
): StatusBuilder {
  pipelineStatus(b, next, health);
  const lag = active.lag === null ? undefined : { events: active.lag.events, seconds: active.lag.seconds };
  const failed = next.phase === 'failed';
  return b
    .fields({ lag, checkpoint: formatPosition(active.checkpoint), deadLetters: deadLettersStatus(active) })
    .set({
      type: READY,
      status: 'False',
      reason: failed ? 'ReseedFailed' : 'Reseeding',
      message: failed
        ? `The spec changed and the new build failed (${next.error ?? 'unknown error'}); readers still use the previous build.`
        : `The spec changed: a new build is seeding (${next.seed.processed} of ${next.seed.total} events); ` +
          'readers use the previous build, kept current, until it is ready.' +
          (next.waiting === undefined ? '' : ` ${next.waiting.message}`),
    });
}
