/**
 * The pipeline runner: what the operator drives to start a product's pipeline (plan the seed,
 * launch its jobs), read its state (seed progress, lag, checkpoint), stop it cleanly and delete
 * its run-time state. It runs no pipeline work itself; {@link PipelineWorker}s do, in this
 * process (embedded mode) or in `offtake worker` processes.
 *
 * A run is planned once: the high-water mark of each source stream is read first and stored
 * with the run, so a restart, a stop and start, or a lost job reuses the same mark. Its jobs
 * form one BullMQ flow per launch: the product's tail job is the parent of its seed chunks and
 * starts only when all of them are done, then writes the high-water mark as its first
 * checkpoint and follows the log from there — no gap and no overlap at the switch.
 */
import { createHash, randomBytes } from 'node:crypto';
import { FlowProducer, Queue, type FlowJobNode } from 'bullmq';
import type { Redis } from 'ioredis';
import {
  compareOffsets,
  offsetTime,
  type EventLog,
  type Offset,
  type StreamInfo,
} from '../lib/eventlog/event-log.ts';
import { OfftakeError, isOfftakeError } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import { CompiledProduct } from './compiled-product.ts';
import {
  pipelineQueues,
  checkProductRef,
  chunkJobId,
  deadLetterStream,
  pipelineKeys,
  queuePrefix,
  tailJobId,
  type PipelineKeys,
  type PipelineQueues,
  type ProductRef,
} from './pipeline-keys.ts';
import {
  PipelineStateStore,
  type ChunkProgress,
  type PipelineProduct,
  type PipelineRun,
} from './pipeline-state-store.ts';
import type { ChunkJobData, TailJobData } from './pipeline-worker.ts';
import type { RedisConnector } from './redis-connector.ts';
import { planSeed, type SeedChunk } from './seed-plan.ts';
import type { Checkpoint } from './sinks/sink.ts';

/** Options of a {@link PipelineRunner}. */
export interface PipelineRunnerOptions {
  connect: RedisConnector;
  eventLog: EventLog;
  logger: Logger;
  /** Key prefix of Offtake's state in Redis (e.g. `offtake`), the same as the workers'. */
  prefix: string;
  /** Aim for seed chunks of about this many events (default 25,000). */
  chunkEvents?: number;
  /** At least this many chunks per stream when the range allows, for parallel seeding (default 4). */
  minChunksPerStream?: number;
  /** Attempts of a failing chunk before the seed fails (default 8), with exponential backoff from `chunkBackoffMs` (default 1000). */
  chunkAttempts?: number;
  chunkBackoffMs?: number;
  /** `lifo` makes workers take the last chunks first (default `fifo`). */
  seedOrder?: 'fifo' | 'lifo';
  /** How long {@link PipelineRunner.stop} waits for running jobs to drain, in ms (default 60000). */
  stopTimeoutMs?: number;
  /** Exact lag counts up to this many events; beyond, an estimate from offset times (default 10,000). */
  lagCountLimit?: number;
  /** A pipeline is reported as waiting for a worker once it has waited this long, in ms (default 3000). */
  waitingGraceMs?: number;
}

/** The phases a pipeline reports. */
export type PipelineStatePhase = 'seeding' | 'tailing' | 'stopping' | 'stopped' | 'failed';

/** A product's pipeline as the operator reports it on the product's status. */
export interface PipelineState {
  phase: PipelineStatePhase;
  runId: string;
  /** The metadata.generation the running spec belongs to, when it was given. */
  generation?: number;
  seed: {
    /** Per source stream, the log's head when the seed began. */
    highWaterMark: Checkpoint;
    /** Events read, records written and events dead-lettered so far. */
    processed: number;
    written: number;
    deadLettered: number;
    /** Events to replay in all (exact once the seed is done). */
    total: number;
    /** Replay rate of the current launch, events per second (0 once done). */
    eventsPerSecond: number;
    /** Seconds until seeded at that rate; null when unknown, 0 once done. */
    etaSeconds: number | null;
    chunks: { total: number; done: number };
    startedAt: string;
    completedAt?: string;
  };
  /** The live tail's counters, once it has run. */
  tail: { processed: number; written: number; deadLettered: number; updatedAt: string } | null;
  /** How far the tail is behind the log; null until the tail starts. */
  lag: { events: number; seconds: number } | null;
  /** The last position durably in the target; null until the tail starts. */
  checkpoint: Checkpoint | null;
  /** Events sent to the dead-letter stream in all (seed and tail), and its name. */
  deadLettered: number;
  deadLetterStream: string;
  /** Why the pipeline failed, or the error it is retrying after. */
  error?: string;
  /** Set when the pipeline cannot move because no worker runs it (for longer than a moment). */
  waiting?: PipelineWaiting;
}

/** Why a pipeline waits for a worker, for the product's status. */
export interface PipelineWaiting {
  /** `NoWorkers`: no pipeline worker is connected; `WaitingForWorker`: every worker's tail slots are taken. */
  reason: 'NoWorkers' | 'WaitingForWorker';
  message: string;
}

/**
 * Renders a per-stream position for a status field: the offset alone for one stream,
 * `stream@offset` pairs joined by "," for several.
 */
export function formatPosition(position: Checkpoint | null): string | undefined {
  if (position === null) return undefined;
  const entries = Object.entries(position);
  if (entries.length === 1) return entries[0][1];
  return entries.map(([stream, offset]) => `${stream}@${offset}`).join(',');
}

/** A stable hash of a spec: JSON with sorted keys. */
export function specFingerprint(spec: unknown): string {
  const canonical = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(canonical);
    if (typeof value !== 'object' || value === null) return value;
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, canonical((value as Record<string, unknown>)[k])]),
    );
  };
  return createHash('sha256')
    .update(JSON.stringify(canonical(spec)))
    .digest('hex')
    .slice(0, 32);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function isDedicated(product: PipelineProduct): boolean {
  return product.spec.target.placement === 'dedicated';
}

function queuesOf(product: PipelineProduct): PipelineQueues {
  return pipelineQueues(product, isDedicated(product));
}

/** How long a count of live workers is reused, in ms. */
const WORKER_COUNT_TTL_MS = 2000;

/** Starts, reports, stops and deletes product pipelines. */
export class PipelineRunner {
  private readonly options: Required<PipelineRunnerOptions>;
  private readonly redis: Redis;
  private readonly store: PipelineStateStore;
  private readonly connections: Redis[] = [];
  private flowProducer: FlowProducer | undefined;
  private readonly tailQueues = new Map<string, Queue>();
  private queueConnection: Redis | undefined;
  /** Live workers, counted from CLIENT LIST at most every {@link WORKER_COUNT_TTL_MS}; null when not allowed. */
  private readonly workerCounts = new Map<string, { value: number | null; at: number }>();
  /** Since when each product's pipeline has been seen waiting, and for what. */
  private readonly waitingSince = new Map<string, { reason: PipelineWaiting['reason']; since: number }>();

  constructor(options: PipelineRunnerOptions) {
    this.options = {
      chunkEvents: 25_000,
      minChunksPerStream: 4,
      chunkAttempts: 8,
      chunkBackoffMs: 1000,
      seedOrder: 'fifo',
      stopTimeoutMs: 60_000,
      lagCountLimit: 10_000,
      waitingGraceMs: 3000,
      ...options,
    };
    this.redis = this.connection('pipeline-runner');
    this.store = new PipelineStateStore(this.redis);
  }

  private connection(role: string): Redis {
    const redis = this.options.connect(role);
    redis.on('error', () => undefined);
    this.connections.push(redis);
    return redis;
  }

  private flows(): FlowProducer {
    this.flowProducer ??= new FlowProducer({
      connection: this.connection('pipeline-flows'),
      prefix: queuePrefix(this.options.prefix),
    });
    return this.flowProducer;
  }

  /** The tail queue of a run's product: the shared one, or its own under dedicated placement. */
  private tails(product: PipelineProduct): Queue {
    const name = queuesOf(product).tail;
    let queue = this.tailQueues.get(name);
    if (queue === undefined) {
      this.queueConnection ??= this.connection('pipeline-queue');
      queue = new Queue(name, { connection: this.queueConnection, prefix: queuePrefix(this.options.prefix) });
      this.tailQueues.set(name, queue);
    }
    return queue;
  }

  /**
   * Makes the product's pipeline run: plans and launches a new run when there is none, relaunches
   * a stopped or failed one (chunks resume from their cursors, the tail from its checkpoint), and
   * recreates lost jobs. Idempotent. Throws `invalid-spec` when an expression does not compile
   * and `conflict` when a run of another spec exists (stop it and delete its runtime state, and
   * the product's data, first) or a stop is still draining.
   */
  async start(product: PipelineProduct): Promise<PipelineState> {
    checkProductRef(product);
    CompiledProduct.compile(product.spec);
    const keys = pipelineKeys(this.options.prefix, product);
    const fingerprint = specFingerprint(product.spec);
    let run = await this.store.loadRun(keys);
    await this.registerDeadLetterStream(product);
    if (run === null) {
      run = await this.plan(keys, product, fingerprint);
    } else if (run.fingerprint !== fingerprint) {
      throw new OfftakeError(
        'conflict',
        'The pipeline runs another version of this spec; stop it and delete its runtime state (and the data it wrote) before starting the new one.',
      );
    }
    await this.ensureLaunched(keys, run);
    return (await this.state(product))!;
  }

  /**
   * Makes sure the product's dead-letter stream exists before any worker appends to it, so a
   * worker needs no right to register streams (a dedicated worker's credential has none).
   */
  private async registerDeadLetterStream(ref: ProductRef): Promise<void> {
    const stream = deadLetterStream(ref);
    try {
      await this.options.eventLog.describe(stream);
    } catch (err) {
      if (!isOfftakeError(err, 'stream-not-found')) throw err;
      await this.options.eventLog.setRetention(stream, null);
    }
  }

  /** Plans a new run: high-water marks first, then the chunks. */
  private async plan(
    keys: PipelineKeys,
    product: PipelineProduct,
    fingerprint: string,
  ): Promise<PipelineRun> {
    const streams = new Map<string, StreamInfo | null>();
    for (const stream of product.spec.source.streams) {
      try {
        streams.set(stream, await this.options.eventLog.describe(stream));
      } catch (err) {
        if (!isOfftakeError(err, 'stream-not-found')) throw err;
        streams.set(stream, null);
      }
    }
    const plan = planSeed(product.spec, streams, {
      chunkEvents: this.options.chunkEvents,
      minChunksPerStream: this.options.minChunksPerStream,
    });
    const run: PipelineRun = {
      runId: randomBytes(6).toString('hex'),
      launch: 0,
      product: {
        namespace: product.namespace,
        name: product.name,
        ...(product.build === undefined ? {} : { build: product.build }),
        ...(product.uid === undefined ? {} : { uid: product.uid }),
        ...(product.generation === undefined ? {} : { generation: product.generation }),
        spec: product.spec,
      },
      fingerprint,
      plan,
      phase: 'seeding',
      stopRequested: false,
      launchedAt: plan.plannedAt,
      processedAtLaunch: 0,
    };
    if (await this.store.createRun(keys, run)) {
      this.options.logger.info(
        { product: keys.id, runId: run.runId, chunks: plan.chunks.length, total: plan.total },
        'pipeline planned',
      );
      return run;
    }
    // Someone else planned it at the same time: theirs stands.
    const existing = await this.store.loadRun(keys);
    if (existing === null)
      throw new OfftakeError('conflict', 'The pipeline was deleted while it was being started.');
    if (existing.fingerprint !== fingerprint) {
      throw new OfftakeError(
        'conflict',
        'The pipeline was started with another version of this spec meanwhile.',
      );
    }
    return existing;
  }

  /** Launches the run's jobs when it has none running: first launch, relaunch after stop or failure, lost jobs. */
  private async ensureLaunched(keys: PipelineKeys, run: PipelineRun): Promise<void> {
    if (run.phase === 'stopping') {
      throw new OfftakeError('conflict', 'The pipeline is stopping; start it again once it has stopped.');
    }
    const queue = this.tails(run.product);
    const queues = queuesOf(run.product);
    let relaunch = run.launch === 0 || run.phase === 'stopped' || run.phase === 'failed' || run.stopRequested;
    if (!relaunch) {
      const state = await queue.getJobState(tailJobId(keys.id, run.runId, run.launch));
      if (state === 'failed') relaunch = true;
      else if (state !== 'unknown') return;
    }
    if (relaunch && run.launch > 0) {
      const code = await queue.remove(tailJobId(keys.id, run.runId, run.launch), { removeChildren: true });
      if (code !== 1)
        throw new OfftakeError('conflict', 'The previous launch of the pipeline is still running.');
    }
    const progress = await this.store.chunkProgress(keys);
    const launch = relaunch ? run.launch + 1 : run.launch;
    if (relaunch) {
      let processed = 0;
      for (const p of progress.values()) processed += p.processed;
      const updated = await this.store.updateRun(keys, run.runId, {
        launch,
        phase: run.tailStartedAt === undefined ? 'seeding' : 'tailing',
        stopRequested: false,
        launchedAt: new Date().toISOString(),
        processedAtLaunch: processed,
        error: undefined,
      });
      if (!updated)
        throw new OfftakeError('conflict', 'The pipeline was deleted while it was being started.');
    }
    const children: FlowJobNode[] = run.plan.chunks
      .filter((chunk) => progress.get(chunk.index)?.done !== true)
      .map((chunk) => ({
        name: 'chunk',
        queueName: queues.seed,
        data: {
          namespace: run.product.namespace,
          name: run.product.name,
          ...(run.product.build === undefined ? {} : { build: run.product.build }),
          runId: run.runId,
          launch,
          index: chunk.index,
        } satisfies ChunkJobData,
        opts: {
          jobId: chunkJobId(keys.id, run.runId, launch, chunk.index),
          attempts: this.options.chunkAttempts,
          backoff: { type: 'exponential', delay: this.options.chunkBackoffMs },
          failParentOnFailure: true,
          removeOnComplete: true,
          removeOnFail: false,
          lifo: this.options.seedOrder === 'lifo',
        },
      }));
    const data: TailJobData = {
      namespace: run.product.namespace,
      name: run.product.name,
      ...(run.product.build === undefined ? {} : { build: run.product.build }),
      runId: run.runId,
      launch,
    };
    await this.flows().add({
      name: 'tail',
      queueName: queues.tail,
      data,
      opts: { jobId: tailJobId(keys.id, run.runId, launch), removeOnComplete: true, removeOnFail: false },
      children,
    });
    this.options.logger.info(
      { product: keys.id, runId: run.runId, launch, chunks: children.length },
      'pipeline launched',
    );
  }

  /** The product's pipeline state, or null when it has none. */
  async state(ref: ProductRef): Promise<PipelineState | null> {
    const keys = pipelineKeys(this.options.prefix, ref);
    const run = await this.store.loadRun(keys);
    if (run === null) return null;
    const [progress, tail] = await Promise.all([this.store.chunkProgress(keys), this.store.loadTail(keys)]);
    let phase: PipelineStatePhase = run.phase;
    let error = run.error;
    let jobState: string | undefined;
    if (phase === 'seeding' || phase === 'tailing') {
      const queue = this.tails(run.product);
      const id = tailJobId(keys.id, run.runId, run.launch);
      // One round trip for the state; the job itself only when its failure is to be shown.
      jobState = await queue.getJobState(id);
      if (jobState === 'failed') {
        phase = 'failed';
        error ??= (await queue.getJob(id))?.failedReason;
      }
    }
    const waiting = await this.waitingFor(keys.id, run.product, phase, jobState);
    if (phase === 'tailing' && tail?.error !== undefined) error = tail.error;
    const seed = this.seedState(run, progress, phase);
    const checkpoint = tail?.checkpoint ?? (run.tailStartedAt === undefined ? null : run.plan.highWaterMark);
    const lag = checkpoint === null ? null : await this.lag(checkpoint, run.product.spec.source.types);
    const state: PipelineState = {
      phase,
      runId: run.runId,
      seed,
      tail:
        tail === null
          ? null
          : {
              processed: tail.processed,
              written: tail.written,
              deadLettered: tail.deadLettered,
              updatedAt: tail.updatedAt,
            },
      lag,
      checkpoint,
      deadLettered: seed.deadLettered + (tail?.deadLettered ?? 0),
      deadLetterStream: deadLetterStream(ref),
    };
    if (run.product.generation !== undefined) state.generation = run.product.generation;
    if (error !== undefined && (phase === 'failed' || phase === 'tailing' || phase === 'seeding')) {
      state.error = error;
    }
    if (waiting !== undefined) state.waiting = waiting;
    return state;
  }

  /**
   * Whether a running pipeline is stuck for want of a worker: none connected, or its tail job
   * waiting in the queue because every worker's tail slots are taken. Reported only after it
   * has lasted `waitingGraceMs`, so a worker restart or a job changing hands shows nothing.
   */
  private async waitingFor(
    id: string,
    product: PipelineProduct,
    phase: PipelineStatePhase,
    jobState: string | undefined,
  ): Promise<PipelineWaiting | undefined> {
    let found: PipelineWaiting | undefined;
    if (phase === 'seeding' || phase === 'tailing') {
      if ((await this.liveWorkers(product)) === 0) {
        found = {
          reason: 'NoWorkers',
          message: isDedicated(product)
            ? 'Its dedicated worker is not connected (the Deployment runs `offtake worker` for this product alone).'
            : 'No pipeline worker is running: start `offtake worker` against this Offtake (or run `offtake up` ' +
              'without --no-workers).',
        };
      } else if (jobState === 'waiting' || jobState === 'prioritized') {
        found = {
          reason: 'WaitingForWorker',
          message:
            'Every running worker has all its tail slots taken (OFFTAKE_WORKER_TAIL_CONCURRENCY products ' +
            'per worker): start another `offtake worker` or raise that setting.',
        };
      }
    }
    if (found === undefined) {
      this.waitingSince.delete(id);
      return undefined;
    }
    const now = Date.now();
    const seen = this.waitingSince.get(id);
    if (seen?.reason !== found.reason) {
      this.waitingSince.set(id, { reason: found.reason, since: now });
      return this.options.waitingGraceMs <= 0 ? found : undefined;
    }
    return now - seen.since >= this.options.waitingGraceMs ? found : undefined;
  }

  /** How many pipeline workers are connected, or null when the server does not say (CLIENT LIST refused). */
  private async liveWorkers(product: PipelineProduct): Promise<number | null> {
    const now = Date.now();
    const queue = this.tails(product);
    const cached = this.workerCounts.get(queue.name);
    if (cached !== undefined && now - cached.at < WORKER_COUNT_TTL_MS) return cached.value;
    let value: number | null;
    try {
      value = await queue.getWorkersCount();
    } catch {
      value = null;
    }
    this.workerCounts.set(queue.name, { value, at: now });
    return value;
  }

  private seedState(
    run: PipelineRun,
    progress: Map<number, ChunkProgress>,
    phase: PipelineStatePhase,
  ): PipelineState['seed'] {
    let processed = 0;
    let written = 0;
    let deadLettered = 0;
    let done = 0;
    for (const chunk of run.plan.chunks) {
      const p = progress.get(chunk.index);
      if (p === undefined) continue;
      processed += p.processed;
      written += p.written;
      deadLettered += p.deadLettered;
      if (p.done) done++;
    }
    const complete = run.seedCompletedAt !== undefined;
    // With a type list the seed reads only those events, so `processed` counts them while the
    // plan's total counts every event: progress is then measured by how far each chunk's cursor
    // has come through its range, and the total extrapolated from it.
    const fraction = complete ? 1 : coverage(run.plan.chunks, progress);
    let total = run.plan.total;
    if (complete) total = processed;
    else if (run.product.spec.source.types !== undefined && fraction > 0) {
      total = Math.round(processed / fraction);
    }
    total = Math.max(total, processed);
    let eventsPerSecond = 0;
    let etaSeconds: number | null = complete ? 0 : null;
    if (!complete && phase === 'seeding') {
      const elapsed = (Date.now() - Date.parse(run.launchedAt)) / 1000;
      const replayed = processed - run.processedAtLaunch;
      if (elapsed > 0 && replayed > 0) {
        eventsPerSecond = Math.round(replayed / elapsed);
        etaSeconds = Math.ceil((total - processed) / (replayed / elapsed));
      }
    }
    const seed: PipelineState['seed'] = {
      highWaterMark: run.plan.highWaterMark,
      processed,
      written,
      deadLettered,
      total,
      eventsPerSecond,
      etaSeconds,
      chunks: { total: run.plan.chunks.length, done },
      startedAt: run.plan.plannedAt,
    };
    if (run.seedCompletedAt !== undefined) seed.completedAt = run.seedCompletedAt;
    return seed;
  }

  /**
   * Events of the product's types in the log after the checkpoint (the tail follows only those,
   * so the checkpoint stays on the last of them), and the age of the oldest: counted up to
   * `lagCountLimit`, estimated from the stream's length and offset times beyond.
   */
  private async lag(
    checkpoint: Checkpoint,
    types: readonly string[] | undefined,
  ): Promise<{ events: number; seconds: number }> {
    let events = 0;
    let oldest: number | null = null;
    for (const [stream, position] of Object.entries(checkpoint)) {
      let info: StreamInfo;
      try {
        info = await this.options.eventLog.describe(stream);
      } catch (err) {
        if (isOfftakeError(err, 'stream-not-found')) continue;
        throw err;
      }
      if (info.lastOffset === null || compareOffsets(info.lastOffset, position) <= 0) continue;
      let counted = 0;
      let cursor: Offset | null = position;
      while (cursor !== null && counted < this.options.lagCountLimit) {
        const page = await this.options.eventLog.read(stream, {
          after: cursor,
          limit: Math.min(1000, this.options.lagCountLimit - counted),
          types,
        });
        if (page.events.length > 0 && counted === 0) {
          const first = offsetTime(page.events[0].offset);
          oldest = oldest === null ? first : Math.min(oldest, first);
        }
        counted += page.events.length;
        cursor = page.next;
      }
      events += cursor === null ? counted : Math.max(counted, estimateAfter(info, position));
    }
    const seconds = oldest === null ? 0 : Math.max(0, Math.round((Date.now() - oldest) / 1000));
    return { events, seconds };
  }

  /**
   * Stops the product's pipeline cleanly: running chunks finish their batch and save their
   * cursor, the tail commits its checkpoint, and the jobs are removed. Resolves with the state
   * (null when there is no pipeline); throws `unavailable` when jobs are still running after
   * `timeoutMs` (calling again continues the wait).
   */
  async stop(ref: ProductRef, options: { timeoutMs?: number } = {}): Promise<PipelineState | null> {
    const keys = pipelineKeys(this.options.prefix, ref);
    const run = await this.store.loadRun(keys);
    if (run === null) return null;
    if (run.phase !== 'stopped') {
      await this.store.updateRun(keys, run.runId, { stopRequested: true, phase: 'stopping' });
      await this.removeJobs(keys, run, options.timeoutMs ?? this.options.stopTimeoutMs);
      await this.store.updateRun(keys, run.runId, { phase: 'stopped' });
      this.options.logger.info({ product: keys.id, runId: run.runId }, 'pipeline stopped');
    }
    return this.state(ref);
  }

  /** Removes the current launch's jobs, waiting while any is still running (locked). */
  private async removeJobs(keys: PipelineKeys, run: PipelineRun, timeoutMs: number): Promise<void> {
    if (run.launch === 0) return;
    const id = tailJobId(keys.id, run.runId, run.launch);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if ((await this.tails(run.product).remove(id, { removeChildren: true })) === 1) return;
      if (Date.now() > deadline) {
        throw new OfftakeError(
          'unavailable',
          'The pipeline is still draining its running batches; its stop continues and can be awaited again.',
        );
      }
      await sleep(100);
    }
  }

  /**
   * Deletes the product's run-time state: stops the pipeline, removes its jobs, progress and run
   * keys and its dead-letter stream. The target's data and checkpoint belong to the store and
   * are removed with it.
   */
  async deleteRuntimeState(ref: ProductRef, options: { timeoutMs?: number } = {}): Promise<void> {
    const keys = pipelineKeys(this.options.prefix, ref);
    const run = await this.store.loadRun(keys);
    if (run !== null) await this.stop(ref, options);
    await this.store.delete(keys);
    await this.options.eventLog.deleteStream(deadLetterStream(ref));
    this.options.logger.info({ product: keys.id }, 'pipeline runtime state deleted');
  }

  /** Closes the runner's queue connections. */
  async close(): Promise<void> {
    await Promise.allSettled([
      this.flowProducer?.close(),
      ...[...this.tailQueues.values()].map((q) => q.close()),
    ]);
    for (const redis of this.connections) redis.disconnect();
  }
}

/** How much of the seed's ranges the chunks' cursors have covered (0-1), weighted by their estimated events. */
function coverage(chunks: readonly SeedChunk[], progress: ReadonlyMap<number, ChunkProgress>): number {
  let weight = 0;
  let covered = 0;
  for (const chunk of chunks) {
    const w = Math.max(1, chunk.estimatedEvents);
    weight += w;
    const p = progress.get(chunk.index);
    if (p?.done === true) covered += w;
    if (p === undefined || p.done || p.cursor === null) continue;
    const from = offsetTime(chunk.from);
    const span = offsetTime(chunk.to) - from + 1;
    covered += w * Math.min(1, Math.max(0, (offsetTime(p.cursor) - from + 1) / span));
  }
  return weight === 0 ? 1 : covered / weight;
}

/** Events of a stream after `position`, estimated from its length and the offsets' times. */
function estimateAfter(info: StreamInfo, position: Offset): number {
  if (info.firstOffset === null || info.lastOffset === null) return 0;
  const t0 = offsetTime(info.firstOffset);
  const t1 = offsetTime(info.lastOffset);
  if (t1 <= t0) return info.length;
  const share = (t1 - Math.max(t0, offsetTime(position))) / (t1 - t0);
  return Math.round(info.length * Math.min(1, Math.max(0, share)));
}
