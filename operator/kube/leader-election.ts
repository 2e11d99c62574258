/**
 * Leader election on a coordination.k8s.io/v1 Lease, so that of several operator replicas only
 * one reconciles at a time. The algorithm is client-go's (`tools/leaderelection`):
 *
 * - A candidate takes the Lease when it does not exist, has no holder (released), or its holder
 *   has not renewed it for `leaseDuration` — measured on the candidate's own clock from when it
 *   first saw the current record, so clock skew between machines does not matter.
 * - The leader renews every `retryPeriod`. If it cannot renew for `renewDeadline` (shorter than
 *   the lease duration) it stops leading — before anyone else may take over.
 * - On stop, the leader releases the Lease (no holder), so a successor takes over at once.
 *
 * Every write is guarded by the Lease's resourceVersion: of two candidates racing for an expired
 * Lease, one wins and the other gets a 409 and stays a candidate.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { CoordinationV1Api, type KubeConfig, type V1Lease, type V1LeaseSpec } from '@kubernetes/client-node';
import { isConflict, isNotFound } from './api-errors.ts';

/** Options of a {@link LeaderElector}. */
export interface LeaderElectionOptions {
  /** Where the Lease lives and its name, e.g. `offtake-system` / `offtake-operator`. */
  namespace: string;
  name: string;
  /** This replica's identity, unique among candidates (e.g. `<pod name>_<random>`). */
  identity: string;
  /** How long a Lease is valid without renewal, in ms (default 15000; rounded up to whole seconds). */
  leaseDurationMs?: number;
  /** How long the leader keeps trying to renew before it gives up leading, in ms (default 10000). */
  renewDeadlineMs?: number;
  /** How often candidates try to acquire and the leader renews, in ms (default 2000). */
  retryPeriodMs?: number;
  /** Release the Lease when stopped while leading (default true). */
  releaseOnStop?: boolean;
  /**
   * Called when this replica starts leading. `signal` aborts when it stops leading: the work it
   * starts must end then. A rejected promise goes to `onError`.
   */
  onStartedLeading: (signal: AbortSignal) => void | Promise<void>;
  /**
   * Called when this replica stops leading (lost the Lease, or stopped). On {@link
   * LeaderElector.stop} the Lease is released only after a returned promise settles, so the
   * successor never overlaps work still finishing here.
   */
  onStoppedLeading: () => void | Promise<void>;
  /** Called when a replica (this one or another) is first seen holding the Lease. */
  onNewLeader?: (identity: string) => void;
  /** Called with the errors of the background loop (API failures are retried). */
  onError?: (err: unknown) => void;
}

/** The durations the election runs with. */
interface Durations {
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
}

/** client-go's jitter on the candidates' retry period, so candidates do not act in lockstep. */
const JITTER = 1.2;

/** Checks that the durations keep the election safe, as client-go does. */
export function checkDurations(d: Durations): void {
  if (!(d.retryPeriodMs > 0)) throw new RangeError('retryPeriodMs must be positive.');
  if (!(d.renewDeadlineMs > JITTER * d.retryPeriodMs))
    throw new RangeError(`renewDeadlineMs must be greater than ${JITTER} × retryPeriodMs.`);
  if (!(d.leaseDurationMs > d.renewDeadlineMs))
    throw new RangeError('leaseDurationMs must be greater than renewDeadlineMs.');
}

/** A Lease time as the API wants it: RFC 3339 with microseconds (`MicroTime`). */
export function microTime(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** A record as compared between observations: any change means the holder is alive. */
export function leaseRecordKey(spec: V1LeaseSpec | undefined): string {
  const time = (t: unknown) => (t instanceof Date ? t.toISOString() : typeof t === 'string' ? t : '');
  return JSON.stringify([
    spec?.holderIdentity ?? '',
    time(spec?.renewTime),
    time(spec?.acquireTime),
    spec?.leaseDurationSeconds ?? 0,
    spec?.leaseTransitions ?? 0,
  ]);
}

/** What a candidate or leader should do with the Lease as it found it. */
export type LeaseDecision =
  | { action: 'create'; spec: V1LeaseSpec }
  | { action: 'update'; spec: V1LeaseSpec; acquired: boolean }
  | { action: 'wait'; holder: string };

/** The inputs of {@link decideLease}. */
export interface LeaseSituation {
  /** The Lease as read; undefined when it does not exist. */
  lease: V1Lease | undefined;
  identity: string;
  /** The duration this candidate writes into the Lease, in whole seconds. */
  leaseDurationSeconds: number;
  /** When (this process's clock, ms) the current record was first observed. */
  observedAt: number;
  now: Date;
}

/**
 * What to do with the Lease: create it, update it (renew it, or take it over — `acquired`), or
 * wait for its holder's term to run out. Pure.
 */
export function decideLease(s: LeaseSituation): LeaseDecision {
  const now = microTime(s.now);
  const fresh: V1LeaseSpec = {
    holderIdentity: s.identity,
    leaseDurationSeconds: s.leaseDurationSeconds,
    // The API's MicroTime fields; the client passes a string through unchanged.
    acquireTime: now as unknown as V1LeaseSpec['acquireTime'],
    renewTime: now as unknown as V1LeaseSpec['renewTime'],
    leaseTransitions: 0,
  };
  if (s.lease === undefined) return { action: 'create', spec: fresh };
  const spec = s.lease.spec ?? {};
  const holder = spec.holderIdentity ?? '';
  if (holder === s.identity) {
    return {
      action: 'update',
      acquired: false,
      spec: {
        ...spec,
        leaseDurationSeconds: s.leaseDurationSeconds,
        renewTime: fresh.renewTime,
        acquireTime: spec.acquireTime ?? fresh.acquireTime,
      },
    };
  }
  const durationMs = 1000 * (spec.leaseDurationSeconds ?? s.leaseDurationSeconds);
  if (holder !== '' && s.observedAt + durationMs > s.now.getTime()) return { action: 'wait', holder };
  return {
    action: 'update',
    acquired: true,
    spec: { ...fresh, leaseTransitions: (spec.leaseTransitions ?? 0) + 1 },
  };
}

/** The Lease spec a leader leaves behind when it steps down: no holder, so a successor need not wait. */
export function releasedLeaseSpec(spec: V1LeaseSpec, now: Date): V1LeaseSpec {
  const time = microTime(now) as unknown as V1LeaseSpec['renewTime'];
  return { ...spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: time, acquireTime: time };
}

/** Runs one candidate of a leader election. */
export class LeaderElector {
  private readonly api: CoordinationV1Api;
  private readonly options: LeaderElectionOptions & Durations & { releaseOnStop: boolean };
  private readonly leaseDurationSeconds: number;
  private observedKey: string | undefined;
  private observedAt = 0;
  private observedHolder: string | undefined;
  /** The Lease as this replica last read or wrote it. */
  private lease: V1Lease | undefined;
  private leading: AbortController | undefined;
  private lastRenewal = 0;
  private running: Promise<void> | undefined;
  private readonly stopping = new AbortController();

  constructor(kubeConfig: KubeConfig, options: LeaderElectionOptions) {
    this.api = kubeConfig.makeApiClient(CoordinationV1Api);
    this.options = {
      leaseDurationMs: 15_000,
      renewDeadlineMs: 10_000,
      retryPeriodMs: 2_000,
      releaseOnStop: true,
      ...options,
    };
    checkDurations(this.options);
    this.leaseDurationSeconds = Math.max(1, Math.ceil(this.options.leaseDurationMs / 1000));
  }

  /** Whether this replica leads now. */
  get isLeader(): boolean {
    return this.leading !== undefined;
  }

  /** The holder last seen on the Lease (this replica or another); undefined before the first read. */
  get leader(): string | undefined {
    return this.observedHolder;
  }

  /** Starts campaigning in the background. */
  start(): void {
    this.running ??= this.run();
  }

  /** Stops campaigning; a leader stops leading and (by default) releases the Lease. */
  async stop(): Promise<void> {
    this.stopping.abort();
    await this.running;
    if (this.leading === undefined) return;
    try {
      await this.stepDown();
    } finally {
      if (this.options.releaseOnStop) await this.release();
    }
  }

  private async run(): Promise<void> {
    const { retryPeriodMs, renewDeadlineMs } = this.options;
    while (!this.stopping.signal.aborted) {
      const leadingBefore = this.leading !== undefined;
      // A leader gives each attempt only the time left before its deadline; a stuck request
      // must not keep it leading past the point where another may take over.
      const budget = leadingBefore
        ? Math.max(1, this.lastRenewal + renewDeadlineMs - Date.now())
        : renewDeadlineMs;
      const outcome = await this.attempt(budget);
      if (this.stopping.signal.aborted) break;
      if (outcome === 'held') {
        this.lastRenewal = Date.now();
        if (!leadingBefore) this.stepUp();
      } else if (leadingBefore && (outcome === 'lost' || Date.now() - this.lastRenewal >= renewDeadlineMs)) {
        this.stepDown()?.catch((err: unknown) => this.options.onError?.(err));
      }
      const pause =
        this.leading === undefined ? retryPeriodMs * (1 + Math.random() * (JITTER - 1)) : retryPeriodMs;
      await sleep(pause, undefined, { signal: this.stopping.signal }).catch(() => undefined);
    }
  }

  /** One try to acquire or renew: `held` (this replica holds the Lease), `lost` (another does), or `failed`. */
  private async attempt(budgetMs: number): Promise<'held' | 'lost' | 'failed'> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<'failed'>((resolve) => {
      timer = setTimeout(() => resolve('failed'), budgetMs);
    });
    try {
      return await Promise.race([this.tryAcquireOrRenew(), timeout]);
    } catch (err) {
      this.options.onError?.(err);
      return 'failed';
    } finally {
      clearTimeout(timer);
    }
  }

  private async tryAcquireOrRenew(): Promise<'held' | 'lost' | 'failed'> {
    const { namespace, name, identity } = this.options;
    let lease: V1Lease | undefined;
    try {
      lease = await this.api.readNamespacedLease({ name, namespace });
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    this.observe(lease);
    const decision = decideLease({
      lease,
      identity,
      leaseDurationSeconds: this.leaseDurationSeconds,
      observedAt: this.observedAt,
      now: new Date(),
    });
    if (decision.action === 'wait') return 'lost';
    try {
      const written =
        decision.action === 'create'
          ? await this.api.createNamespacedLease({
              namespace,
              body: {
                apiVersion: 'coordination.k8s.io/v1',
                kind: 'Lease',
                metadata: { name, namespace },
                spec: decision.spec,
              },
            })
          : await this.api.replaceNamespacedLease({
              name,
              namespace,
              body: { ...lease, spec: decision.spec },
            });
      this.observe(written);
      return 'held';
    } catch (err) {
      // Another candidate wrote first: it holds the Lease now.
      if (isConflict(err)) return 'failed';
      throw err;
    }
  }

  private observe(lease: V1Lease | undefined): void {
    this.lease = lease;
    const key = leaseRecordKey(lease?.spec);
    if (key !== this.observedKey) {
      this.observedKey = key;
      this.observedAt = Date.now();
    }
    const holder = lease?.spec?.holderIdentity ?? '';
    if (holder !== '' && holder !== this.observedHolder) this.options.onNewLeader?.(holder);
    this.observedHolder = holder === '' ? undefined : holder;
  }

  private stepUp(): void {
    const controller = new AbortController();
    this.leading = controller;
    try {
      Promise.resolve(this.options.onStartedLeading(controller.signal)).catch((err: unknown) =>
        this.options.onError?.(err),
      );
    } catch (err) {
      this.options.onError?.(err);
    }
  }

  private stepDown(): Promise<void> | undefined {
    const controller = this.leading;
    if (controller === undefined) return undefined;
    this.leading = undefined;
    controller.abort();
    const done = this.options.onStoppedLeading();
    return done === undefined ? undefined : Promise.resolve(done);
  }

  /** Gives the Lease up, if this replica still holds it as last seen. */
  private async release(): Promise<void> {
    const lease = this.lease;
    if (lease?.spec?.holderIdentity !== this.options.identity) return;
    try {
      this.lease = await this.api.replaceNamespacedLease({
        name: this.options.name,
        namespace: this.options.namespace,
        body: { ...lease, spec: releasedLeaseSpec(lease.spec, new Date()) },
      });
    } catch (err) {
      // Someone else wrote it meanwhile (then it is not ours to release) or the API is down
      // (then the Lease simply expires).
      if (!isConflict(err)) this.options.onError?.(err);
    }
  }
}
