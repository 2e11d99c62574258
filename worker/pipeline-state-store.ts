/**
 * The run-time state of product pipelines in Redis: the run (product, seed plan, phase, stop
 * request), each seed chunk's progress and the live tail's counters. Written by the runner and
 * the workers, read by the runner to report a product's state. Every write from a worker names
 * the run it belongs to and is dropped when that run is gone, so a straggler from a deleted
 * run cannot touch its successor's state.
 */
import type { Redis } from 'ioredis';
import type { DataProductSpec } from '../crds/generated/types.ts';
import type { Offset } from '../lib/eventlog/event-log.ts';
import type { PipelineKeys, ProductRef } from './pipeline-keys.ts';
import type { SeedPlan } from './seed-plan.ts';
import type { Checkpoint } from './sinks/sink.ts';

/** A product as the pipeline needs it: where it lives and its spec. */
export interface PipelineProduct extends ProductRef {
  /** The product's uid, when the resource store has one. */
  uid?: string;
  /** The metadata.generation the spec belongs to. */
  generation?: number;
  spec: DataProductSpec;
}

/** The phases of a pipeline. */
export type PipelinePhase = 'seeding' | 'tailing' | 'stopping' | 'stopped' | 'failed';

/** One run of a product's pipeline: a seed plan, then the tail. */
export interface PipelineRun {
  /** Identifies the run; a new run (after deleteRuntimeState) gets a new id. */
  runId: string;
  /** Rises each time the run's jobs are (re)created: after a stop, a failure or lost jobs. */
  launch: number;
  product: PipelineProduct;
  /** A hash of the spec the run was planned from. */
  fingerprint: string;
  plan: SeedPlan;
  phase: PipelinePhase;
  stopRequested: boolean;
  /** When the current launch began, and how many events were already replayed then. */
  launchedAt: string;
  processedAtLaunch: number;
  seedCompletedAt?: string;
  /** Set once the tail's starting checkpoint (the high-water mark) is in the sink. */
  tailStartedAt?: string;
  error?: string;
}

/** Progress of one seed chunk. */
export interface ChunkProgress {
  /** The last offset whose batch is written, or null before the first. */
  cursor: Offset | null;
  processed: number;
  written: number;
  deadLettered: number;
  done: boolean;
}

/** Counters of the live tail. */
export interface TailProgress {
  /** The last checkpoint committed with the sink. */
  checkpoint: Checkpoint;
  processed: number;
  written: number;
  deadLettered: number;
  /** When the tail last committed, RFC 3339. */
  updatedAt: string;
  /** The last error the tail hit and is retrying after, if any. */
  error?: string;
}

/** A chunk that has not started. */
export const NO_PROGRESS: Readonly<ChunkProgress> = Object.freeze({
  cursor: null,
  processed: 0,
  written: 0,
  deadLettered: 0,
  done: false,
});

const RUN_FIELDS = [
  'runId',
  'launch',
  'product',
  'fingerprint',
  'plan',
  'phase',
  'stopRequested',
  'launchedAt',
  'processedAtLaunch',
  'seedCompletedAt',
  'tailStartedAt',
  'error',
] as const;

type RunField = (typeof RUN_FIELDS)[number];

/** Creates the run only if none exists. */
const CREATE_RUN = `
if redis.call('HEXISTS', KEYS[1], 'runId') == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1`;

/** Sets fields of the run only while it is the run named by ARGV[1]. */
const UPDATE_RUN = `
if redis.call('HGET', KEYS[1], 'runId') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3, 2 + tonumber(ARGV[2]) * 2))
local unset = 3 + tonumber(ARGV[2]) * 2
if #ARGV >= unset then redis.call('HDEL', KEYS[1], unpack(ARGV, unset)) end
return 1`;

/** Removes the run's error while the run is ARGV[1] and the error starts with ARGV[2]. */
const CLEAR_ERROR = `
if redis.call('HGET', KEYS[1], 'runId') ~= ARGV[1] then return 0 end
local error = redis.call('HGET', KEYS[1], 'error')
if error and string.sub(error, 1, #ARGV[2]) == ARGV[2] then redis.call('HDEL', KEYS[1], 'error') return 1 end
return 0`;

/** Sets one field of KEYS[2] only while the run in KEYS[1] is ARGV[1]. */
const SET_IF_RUN = `
if redis.call('HGET', KEYS[1], 'runId') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1`;

function encode(field: RunField, value: unknown): string {
  if (field === 'stopRequested') return value === true ? '1' : '0';
  if (field === 'launch' || field === 'processedAtLaunch') return String(value);
  if (field === 'product' || field === 'plan') return JSON.stringify(value);
  return String(value);
}

/** Reads and writes pipeline run-time state. */
export class PipelineStateStore {
  private readonly redis: Redis;

  /** @param redis a connection the caller owns. */
  constructor(redis: Redis) {
    this.redis = redis;
  }

  /** Stores a new run unless one exists; returns whether this call created it. */
  async createRun(keys: PipelineKeys, run: PipelineRun): Promise<boolean> {
    const args: string[] = [];
    for (const field of RUN_FIELDS) {
      const value = run[field];
      if (value !== undefined) args.push(field, encode(field, value));
    }
    return (await this.redis.eval(CREATE_RUN, 1, keys.state, ...args)) === 1;
  }

  /** The current run, or null. */
  async loadRun(keys: PipelineKeys): Promise<PipelineRun | null> {
    const raw = await this.redis.hgetall(keys.state);
    if (raw.runId === undefined || raw.plan === undefined || raw.product === undefined) return null;
    const run: PipelineRun = {
      runId: raw.runId,
      launch: Number(raw.launch ?? 0),
      product: JSON.parse(raw.product) as PipelineProduct,
      fingerprint: raw.fingerprint ?? '',
      plan: JSON.parse(raw.plan) as SeedPlan,
      phase: (raw.phase ?? 'seeding') as PipelinePhase,
      stopRequested: raw.stopRequested === '1',
      launchedAt: raw.launchedAt ?? '',
      processedAtLaunch: Number(raw.processedAtLaunch ?? 0),
    };
    if (raw.seedCompletedAt !== undefined) run.seedCompletedAt = raw.seedCompletedAt;
    if (raw.tailStartedAt !== undefined) run.tailStartedAt = raw.tailStartedAt;
    if (raw.error !== undefined) run.error = raw.error;
    return run;
  }

  /** The run id and stop request only (cheap; polled by workers). */
  async runControl(keys: PipelineKeys): Promise<{ runId: string | null; stopRequested: boolean }> {
    const [runId, stop] = await this.redis.hmget(keys.state, 'runId', 'stopRequested');
    return { runId, stopRequested: stop === '1' };
  }

  /**
   * Updates fields of run `runId` (`undefined` values are removed); returns false, changing
   * nothing, when the stored run is another one or gone.
   */
  async updateRun(
    keys: PipelineKeys,
    runId: string,
    fields: Partial<Omit<PipelineRun, 'runId'>>,
  ): Promise<boolean> {
    const set: string[] = [];
    const unset: string[] = [];
    for (const [field, value] of Object.entries(fields) as [RunField, unknown][]) {
      if (value === undefined) unset.push(field);
      else set.push(field, encode(field, value));
    }
    const reply = await this.redis.eval(
      UPDATE_RUN,
      1,
      keys.state,
      runId,
      String(set.length / 2),
      ...set,
      ...unset,
    );
    return reply === 1;
  }

  /** Removes the error of run `runId` if it starts with `prefix` (the part that recovered). */
  async clearError(keys: PipelineKeys, runId: string, prefix: string): Promise<void> {
    await this.redis.eval(CLEAR_ERROR, 1, keys.state, runId, prefix);
  }

  /** Every chunk's progress, by chunk index. */
  async chunkProgress(keys: PipelineKeys): Promise<Map<number, ChunkProgress>> {
    const raw = await this.redis.hgetall(keys.seed);
    const out = new Map<number, ChunkProgress>();
    for (const [field, value] of Object.entries(raw)) {
      if (field.startsWith('chunk:')) out.set(Number(field.slice(6)), JSON.parse(value) as ChunkProgress);
    }
    return out;
  }

  /** One chunk's progress (or {@link NO_PROGRESS}). */
  async oneChunk(keys: PipelineKeys, index: number): Promise<ChunkProgress> {
    const raw = await this.redis.hget(keys.seed, `chunk:${index}`);
    return raw === null ? { ...NO_PROGRESS } : (JSON.parse(raw) as ChunkProgress);
  }

  /** Saves a chunk's progress while `runId` is the current run; false when it is not. */
  async saveChunk(
    keys: PipelineKeys,
    runId: string,
    index: number,
    progress: ChunkProgress,
  ): Promise<boolean> {
    const reply = await this.redis.eval(
      SET_IF_RUN,
      2,
      keys.state,
      keys.seed,
      runId,
      `chunk:${index}`,
      JSON.stringify(progress),
    );
    return reply === 1;
  }

  /** Saves the tail's progress while `runId` is the current run; false when it is not. */
  async saveTail(keys: PipelineKeys, runId: string, progress: TailProgress): Promise<boolean> {
    const reply = await this.redis.eval(
      SET_IF_RUN,
      2,
      keys.state,
      keys.tail,
      runId,
      'progress',
      JSON.stringify(progress),
    );
    return reply === 1;
  }

  /** The tail's last reported progress, or null. */
  async loadTail(keys: PipelineKeys): Promise<TailProgress | null> {
    const raw = await this.redis.hget(keys.tail, 'progress');
    return raw === null ? null : (JSON.parse(raw) as TailProgress);
  }

  /** Deletes the run and its progress. */
  async delete(keys: PipelineKeys): Promise<void> {
    await this.redis.unlink(keys.state, keys.seed, keys.tail);
  }
}
