/**
 * The pipeline worker: BullMQ workers for the seed queue (one job per chunk) and the tail queue
 * (one long-running job per product, the parent of its chunks, so it starts when the last chunk
 * is done). Any number of worker processes may run; a chunk or tail whose worker dies is picked
 * up again by another after its lock expires and resumes from its cursor or checkpoint.
 *
 * A job stops in one of three ways: the runner asks the product to stop (chunks park themselves
 * as delayed jobs with their cursor saved, the tail commits and completes), this worker closes
 * (the job goes back to the queue for another worker), or the run it belongs to is gone (the job
 * completes without doing anything).
 */
import { setTimeout as delay } from 'node:timers/promises';
import { EventEmitter } from 'node:events';
import { DelayedError, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { EventLog } from '../lib/eventlog/event-log.ts';
import type { Logger } from '../lib/logger.ts';
import type { PipelineMetrics } from '../lib/metrics.ts';
import { ChunkReplay } from './chunk-replay.ts';
import { CompiledProduct } from './compiled-product.ts';
import { DeadLetterQueue } from './dead-letter-queue.ts';
import { LiveTail, type TailBatchReport } from './live-tail.ts';
import {
  CHECKPOINT_NAME,
  SEED_QUEUE,
  TAIL_QUEUE,
  deadLetterStream,
  pipelineKeys,
  queuePrefix,
  type PipelineKeys,
  type PipelineQueues,
  type ProductRef,
} from './pipeline-keys.ts';
import {
  PipelineStateStore,
  type PipelineProduct,
  type PipelineRun,
  type TailProgress,
} from './pipeline-state-store.ts';
import type { RedisConnector } from './redis-connector.ts';
import type { Checkpoint, Sink } from './sinks/sink.ts';

/** Builds the sink of a product's target. Called once per product run in each worker process. */
export type SinkFactory = (product: PipelineProduct) => Sink | Promise<Sink>;

/** The data of a seed-chunk job. */
export interface ChunkJobData extends ProductRef {
  runId: string;
  launch: number;
  index: number;
}

/** The data of a tail job. */
export interface TailJobData extends ProductRef {
  runId: string;
  launch: number;
}

/** Options of a {@link PipelineWorker}. */
export interface PipelineWorkerOptions {
  connect: RedisConnector;
  eventLog: EventLog;
  sinkFactory: SinkFactory;
  logger: Logger;
  /** Key prefix of Offtake's state in Redis (e.g. `offtake`), the same as the runner's. */
  prefix: string;
  /**
   * The queues to take jobs from (default: the shared ones). A dedicated product's worker takes
   * only its product build's queues (`pipelineQueues` in `pipeline-keys.ts`).
   */
  queues?: PipelineQueues;
  /** Seed chunks processed at once by this worker (default 2). */
  seedConcurrency?: number;
  /** Product tails run at once by this worker (default 1000; a waiting tail costs no connection). */
  tailConcurrency?: number;
  /** Events per read while seeding (default 1000). */
  seedBatchSize?: number;
  /** Most events per batch while tailing (default 1000). */
  tailBatchSize?: number;
  /** How long a job's lock lasts without renewal, in ms: how soon a dead worker's job is taken over (default 30000). */
  lockDurationMs?: number;
  /** How often to look for jobs of dead workers, in ms (default 15000). */
  stalledIntervalMs?: number;
  /** How often a running job checks for a stop request, in ms (default 250). */
  stopPollMs?: number;
  /** How often the tail saves its counters for the runner, in ms (default 500). */
  progressIntervalMs?: number;
  /**
   * How long a deleted key's tombstone outlives the tail's passing it on every stream, in ms
   * (default 3600000); then the tail purges it (see `LiveTail`).
   */
  tombstoneRetentionMs?: number;
  /** How often a tail purges tombstones at most, in ms (default 60000). */
  tombstonePurgeIntervalMs?: number;
  /** Told of every written batch and purge, when given. */
  metrics?: PipelineMetrics;
  /** First and longest pause before the tail retries after an error, in ms (default 500 and 30000). */
  tailRetryMinMs?: number;
  tailRetryMaxMs?: number;
}

type AbortReason = 'stop' | 'stale' | 'shutdown' | 'cancelled';

interface ProductContext {
  runId: string;
  compiled: CompiledProduct;
  sink: Sink;
  deadLetters: DeadLetterQueue;
}

interface ContextEntry {
  runId: string;
  refs: number;
  ready: Promise<ProductContext>;
}

interface ActiveJob {
  keys: PipelineKeys;
  runId: string;
  controller: AbortController;
}

/** A parked chunk stays delayed this long; the runner removes it well before. */
const PARK_MS = 7 * 24 * 3600 * 1000;

function reasonOf(signal: AbortSignal): AbortReason {
  const reason: unknown = signal.reason;
  return reason === 'stop' || reason === 'stale' || reason === 'shutdown' ? reason : 'cancelled';
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Sleeps `ms`, or less when `signal` aborts (never rejects). */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return delay(ms, undefined, { signal }).catch(() => undefined);
}

/**
 * Runs seed chunks and product tails from the pipeline queues. Emits `error` for failures of
 * its background work (they are also logged); jobs retry on their own.
 */
export class PipelineWorker extends EventEmitter {
  private readonly options: Required<Omit<PipelineWorkerOptions, 'metrics'>> &
    Pick<PipelineWorkerOptions, 'metrics'>;
  private readonly store: PipelineStateStore;
  private readonly redis: Redis;
  private readonly connections: Redis[] = [];
  private readonly contexts = new Map<string, ContextEntry>();
  private readonly active = new Set<ActiveJob>();
  private workers: Worker[] = [];
  private stopTimer: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;

  constructor(options: PipelineWorkerOptions) {
    super();
    this.options = {
      seedConcurrency: 2,
      tailConcurrency: 1000,
      seedBatchSize: 1000,
      tailBatchSize: 1000,
      lockDurationMs: 30_000,
      stalledIntervalMs: 15_000,
      stopPollMs: 250,
      progressIntervalMs: 500,
      tombstoneRetentionMs: 3_600_000,
      tombstonePurgeIntervalMs: 60_000,
      tailRetryMinMs: 500,
      tailRetryMaxMs: 30_000,
      queues: { seed: SEED_QUEUE, tail: TAIL_QUEUE },
      // An option given as undefined takes its default, as one left out does.
      ...(Object.fromEntries(
        Object.entries(options).filter(([, value]) => value !== undefined),
      ) as PipelineWorkerOptions),
    };
    this.redis = this.connection('pipeline-worker');
    this.store = new PipelineStateStore(this.redis);
  }

  private connection(role: string): Redis {
    const redis = this.options.connect(role);
    // Errors surface through the commands that fail; an idle connection's must not crash us.
    redis.on('error', () => undefined);
    this.connections.push(redis);
    return redis;
  }

  /** Starts taking jobs from the seed and tail queues. */
  async start(): Promise<void> {
    const { seedConcurrency, tailConcurrency, lockDurationMs, stalledIntervalMs, prefix, queues } =
      this.options;
    const common = {
      prefix: queuePrefix(prefix),
      lockDuration: lockDurationMs,
      stalledInterval: stalledIntervalMs,
      autorun: false,
    };
    const seed = new Worker<ChunkJobData>(
      queues.seed,
      (job, token, signal) => this.processChunk(job, token, signal),
      {
        ...common,
        connection: this.connection('seed-worker'),
        concurrency: seedConcurrency,
        // Replaying a chunk again is always safe; only a chunk that keeps crashing its worker gives up.
        maxStalledCount: 20,
      },
    );
    const tail = new Worker<TailJobData>(
      queues.tail,
      (job, token, signal) => this.processTail(job, token, signal),
      {
        ...common,
        connection: this.connection('tail-worker'),
        concurrency: tailConcurrency,
        // A tail runs for as long as its product lives; every crash of its worker is one stall.
        maxStalledCount: 1_000_000,
      },
    );
    this.workers = [seed, tail];
    for (const worker of this.workers) {
      worker.on('error', (err) => this.report(err, `${worker.name} worker`));
      // A job whose lock could not be renewed may already run elsewhere: stop our copy.
      worker.on('lockRenewalFailed', (ids) => {
        for (const id of ids) worker.cancelJob(id, 'lock lost');
      });
    }
    this.stopTimer = setInterval(() => void this.pollStops(), this.options.stopPollMs);
    this.stopTimer.unref();
    for (const worker of this.workers) {
      worker.run().catch((err: unknown) => this.report(err, `${worker.name} worker loop`));
    }
    await Promise.all(this.workers.map((w) => w.waitUntilReady()));
  }

  /** Whether {@link close} has begun: the worker takes no new jobs and drains the running ones. */
  get closingDown(): boolean {
    return this.closing !== undefined;
  }

  /**
   * Stops taking jobs; running chunks save their cursor and tails their checkpoint, and their
   * jobs go back to the queues for other workers. Closes the sinks and connections it opened.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    clearInterval(this.stopTimer);
    for (const job of this.active) job.controller.abort('shutdown');
    await Promise.allSettled(this.workers.map((w) => w.close()));
    const contexts = [...this.contexts.values()];
    this.contexts.clear();
    for (const entry of contexts) {
      await entry.ready.then(
        (context) => context.sink.close(),
        () => undefined,
      );
    }
    for (const redis of this.connections) redis.disconnect();
  }

  private report(err: unknown, where: string): void {
    this.options.logger.error({ err, where }, 'pipeline worker error');
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }

  /** Checks the stop requests of every product with a running job. */
  private async pollStops(): Promise<void> {
    const byKey = new Map<string, ActiveJob[]>();
    for (const job of this.active) {
      const list = byKey.get(job.keys.state) ?? [];
      list.push(job);
      byKey.set(job.keys.state, list);
    }
    for (const jobs of byKey.values()) {
      try {
        const control = await this.store.runControl(jobs[0].keys);
        for (const job of jobs) {
          if (control.runId !== job.runId) job.controller.abort('stale');
          else if (control.stopRequested) job.controller.abort('stop');
        }
      } catch (err) {
        this.report(err, 'stop poll');
      }
    }
  }

  /** Registers a running job; its signal aborts on stop, staleness, shutdown or BullMQ's cancel. */
  private track(keys: PipelineKeys, runId: string, cancel: AbortSignal | undefined): ActiveJob {
    const controller = new AbortController();
    if (cancel !== undefined) {
      if (cancel.aborted) controller.abort('cancelled');
      else cancel.addEventListener('abort', () => controller.abort('cancelled'), { once: true });
    }
    if (this.closing !== undefined) controller.abort('shutdown');
    const job: ActiveJob = { keys, runId, controller };
    this.active.add(job);
    return job;
  }

  /** The compiled spec, sink and dead-letter queue of a run, shared by its jobs in this process. */
  private async acquire(run: PipelineRun): Promise<ProductContext> {
    const id = pipelineKeys(this.options.prefix, run.product).id;
    let entry = this.contexts.get(id);
    if (entry !== undefined && entry.runId !== run.runId) {
      // A newer run replaced this product: its old sink goes once its last job lets go.
      this.contexts.delete(id);
      entry = undefined;
    }
    if (entry === undefined) {
      const ready = (async (): Promise<ProductContext> => {
        const compiled = CompiledProduct.compile(run.product.spec);
        const sink = await this.options.sinkFactory(run.product);
        try {
          await sink.prepare();
        } catch (err) {
          await sink.close().catch(() => undefined);
          throw err;
        }
        const deadLetters = new DeadLetterQueue(this.options.eventLog, deadLetterStream(run.product), id);
        return { runId: run.runId, compiled, sink, deadLetters };
      })();
      entry = { runId: run.runId, refs: 0, ready };
      this.contexts.set(id, entry);
      // A failed set-up is retried by the next job, not cached.
      ready.catch(() => {
        if (this.contexts.get(id) === entry) this.contexts.delete(id);
      });
    }
    entry.refs++;
    try {
      return await entry.ready;
    } catch (err) {
      entry.refs--;
      throw err;
    }
  }

  private async release(run: PipelineRun): Promise<void> {
    const id = pipelineKeys(this.options.prefix, run.product).id;
    const entry = this.contexts.get(id);
    if (entry === undefined || entry.runId !== run.runId) return;
    entry.refs--;
    if (entry.refs > 0) return;
    this.contexts.delete(id);
    const context = await entry.ready;
    await context.sink.close();
  }

  /** Loads the run a job belongs to, or null when the job is stale (its run was replaced or deleted). */
  private async runOf(keys: PipelineKeys, data: TailJobData): Promise<PipelineRun | null> {
    const run = await this.store.loadRun(keys);
    if (run === null || run.runId !== data.runId || run.launch !== data.launch) return null;
    return run;
  }

  /** Puts a job back: delayed by `delayMs`, keeping its attempts, for this or another worker. */
  private async putBack(job: Job, token: string | undefined, delayMs: number): Promise<never> {
    await job.moveToDelayed(Date.now() + delayMs, token);
    throw new DelayedError();
  }

  private async processChunk(
    job: Job<ChunkJobData>,
    token: string | undefined,
    cancel: AbortSignal | undefined,
  ): Promise<{ processed: number }> {
    const data = job.data;
    const keys = pipelineKeys(this.options.prefix, data);
    const run = await this.runOf(keys, data);
    if (run === null) return { processed: 0 };
    if (run.stopRequested) return this.putBack(job, token, PARK_MS);
    const chunk = run.plan.chunks[data.index];
    if (chunk === undefined) throw new UnrecoverableError(`The seed plan has no chunk ${data.index}.`);
    const active = this.track(keys, run.runId, cancel);
    let acquired = false;
    try {
      const context = await this.acquire(run);
      acquired = true;
      const progress = await this.store.oneChunk(keys, data.index);
      const replay = new ChunkReplay({
        eventLog: this.options.eventLog,
        sink: context.sink,
        product: context.compiled,
        deadLetters: context.deadLetters,
        batchSize: this.options.seedBatchSize,
      });
      let last = progress;
      const result = await replay.run(chunk, progress, active.controller.signal, async (p, seconds) => {
        if (seconds !== undefined) {
          this.options.metrics?.batch(
            'seed',
            data,
            {
              processed: p.processed - last.processed,
              written: p.written - last.written,
              deadLettered: p.deadLettered - last.deadLettered,
            },
            seconds,
          );
        }
        last = p;
        if (!(await this.store.saveChunk(keys, run.runId, data.index, p))) active.controller.abort('stale');
      });
      if (result.done) {
        // A chunk that failed before and now succeeded no longer explains anything.
        await this.store.clearError(keys, run.runId, `seed chunk ${data.index}:`);
        return { processed: result.processed };
      }
      const reason = reasonOf(active.controller.signal);
      if (reason === 'stale') return { processed: result.processed };
      if (reason === 'stop') return await this.putBack(job, token, PARK_MS);
      if (reason === 'shutdown') return await this.putBack(job, token, 0);
      throw new Error('The chunk was cancelled (its lock was lost); it is retried.');
    } catch (err) {
      if (!(err instanceof DelayedError)) {
        await this.store
          .updateRun(keys, run.runId, { error: `seed chunk ${data.index}: ${message(err)}` })
          .catch(() => undefined);
      }
      throw err;
    } finally {
      this.active.delete(active);
      if (acquired) await this.release(run).catch((err: unknown) => this.report(err, 'sink close'));
    }
  }

  private async processTail(
    job: Job<TailJobData>,
    token: string | undefined,
    cancel: AbortSignal | undefined,
  ): Promise<{ stopped: boolean }> {
    const data = job.data;
    const keys = pipelineKeys(this.options.prefix, data);
    const run = await this.runOf(keys, data);
    if (run === null) return { stopped: false };
    if (run.stopRequested) return { stopped: true };
    const progress = await this.store.chunkProgress(keys);
    const unfinished = run.plan.chunks.filter((c) => progress.get(c.index)?.done !== true);
    if (unfinished.length > 0) {
      // BullMQ starts the tail only after every chunk completed; a chunk without its "done" mark
      // would mean the seed has a hole, and tailing from the high-water mark would hide it.
      throw new UnrecoverableError(
        `The seed is incomplete: ${unfinished.length} chunk(s) are not done (first: ${unfinished[0].index}).`,
      );
    }
    const active = this.track(keys, run.runId, cancel);
    let acquired = false;
    try {
      const context = await this.acquire(run);
      acquired = true;
      const hwm = run.plan.highWaterMark;
      if (run.tailStartedAt === undefined) {
        // Every chunk is written: the data now stands for everything up to the high-water mark.
        await context.sink.write([], { name: CHECKPOINT_NAME, position: hwm });
        const now = new Date().toISOString();
        let processed = 0;
        for (const p of progress.values()) processed += p.processed;
        await this.store.updateRun(keys, run.runId, {
          phase: 'tailing',
          seedCompletedAt: now,
          tailStartedAt: now,
          plan: { ...run.plan, total: processed },
          error: undefined,
        });
      } else if (run.phase !== 'tailing') {
        await this.store.updateRun(keys, run.runId, { phase: 'tailing' });
      }
      await this.tail(run, keys, context, active.controller);
      const reason = reasonOf(active.controller.signal);
      if (reason === 'stop') return { stopped: true };
      if (reason === 'stale') return { stopped: false };
      if (reason === 'shutdown') return await this.putBack(job, token, 0);
      throw new Error('The tail was cancelled (its lock was lost); it is retried.');
    } finally {
      this.active.delete(active);
      if (acquired) await this.release(run).catch((err: unknown) => this.report(err, 'sink close'));
    }
  }

  /** Runs the tail until `signal` aborts, retrying with backoff from the committed checkpoint after errors. */
  private async tail(
    run: PipelineRun,
    keys: PipelineKeys,
    context: ProductContext,
    controller: AbortController,
  ): Promise<void> {
    const signal = controller.signal;
    const { tailRetryMinMs, tailRetryMaxMs, progressIntervalMs } = this.options;
    const hwm = run.plan.highWaterMark;
    const saved = await this.store.loadTail(keys);
    const counters: TailProgress = {
      checkpoint: saved?.checkpoint ?? hwm,
      processed: saved?.processed ?? 0,
      written: saved?.written ?? 0,
      deadLettered: saved?.deadLettered ?? 0,
      updatedAt: new Date().toISOString(),
    };
    let lastSave = 0;
    let trailing: NodeJS.Timeout | undefined;
    const save = async (force: boolean) => {
      const now = Date.now();
      if (!force && now - lastSave < progressIntervalMs) {
        // The last batch of a burst is saved too, once the interval has passed.
        trailing ??= setTimeout(
          () => {
            trailing = undefined;
            save(true).catch((err: unknown) => this.report(err, 'tail progress'));
          },
          progressIntervalMs - (now - lastSave),
        );
        return;
      }
      clearTimeout(trailing);
      trailing = undefined;
      lastSave = now;
      counters.updatedAt = new Date(now).toISOString();
      if (!(await this.store.saveTail(keys, run.runId, counters))) controller.abort('stale');
    };
    const tail = new LiveTail({
      eventLog: this.options.eventLog,
      sink: context.sink,
      product: context.compiled,
      deadLetters: context.deadLetters,
      checkpointName: CHECKPOINT_NAME,
      batchSize: this.options.tailBatchSize,
      tombstonePurge: {
        retentionMs: this.options.tombstoneRetentionMs,
        intervalMs: this.options.tombstonePurgeIntervalMs,
      },
      onPurgeError: (err) => this.report(err, `tombstone purge of ${keys.id}`),
    });
    let retryMs = tailRetryMinMs;
    while (!signal.aborted) {
      try {
        const stored = await context.sink.readCheckpoint(CHECKPOINT_NAME);
        const start: Checkpoint = { ...hwm, ...(stored ?? {}) };
        counters.checkpoint = start;
        await tail.run(start, signal, async (report: TailBatchReport) => {
          counters.checkpoint = report.checkpoint;
          counters.processed += report.processed;
          counters.written += report.written;
          counters.deadLettered += report.deadLettered;
          this.options.metrics?.batch('tail', run.product, report, report.seconds);
          if (report.tombstonesPurged > 0) {
            this.options.metrics?.tombstonesPurged(run.product, report.tombstonesPurged);
            this.options.logger.info(
              { product: keys.id, purged: report.tombstonesPurged },
              'tombstones purged',
            );
          }
          if (counters.error !== undefined) {
            delete counters.error;
            await save(true);
          } else {
            await save(false);
          }
          retryMs = tailRetryMinMs;
        });
      } catch (err) {
        if (signal.aborted) break;
        this.report(err, `tail of ${keys.id}`);
        counters.error = message(err);
        await save(true).catch(() => undefined);
        await pause(retryMs, signal);
        retryMs = Math.min(tailRetryMaxMs, retryMs * 2);
      }
    }
    await save(true).catch((err: unknown) => this.report(err, 'tail progress'));
    clearTimeout(trailing);
  }
}
