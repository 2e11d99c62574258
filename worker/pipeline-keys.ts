/**
 * Names of everything a product's pipeline keeps at run time: its Redis keys, its BullMQ job ids
 * and its dead-letter stream. Every name is built from a checked namespace and name, so nothing
 * a user typed reaches a key unchecked.
 */
import { createHash } from 'node:crypto';
import { DNS1123_LABEL } from '../crds/dataproduct.schema.ts';
import { MAX_STREAM_NAME_LENGTH } from '../lib/eventlog/event-log.ts';
import { OfftakeError } from '../lib/errors.ts';

/**
 * Which product: its namespace and name (DNS-1123 labels) — and, where it matters, which
 * **build** of its store: a spec change builds the store anew beside the current one (build 2,
 * 3, …) and switches readers to it once it is seeded. Absent means build 1.
 */
export interface ProductRef {
  namespace: string;
  name: string;
  build?: number;
}

/** The build a reference names (1 when it names none). */
export function buildOf(ref: ProductRef): number {
  return ref.build ?? 1;
}

const LABEL = new RegExp(DNS1123_LABEL);

/** Checks a product reference; throws `invalid-name` (400) when either part is not a DNS-1123 label. */
export function checkProductRef(ref: ProductRef): ProductRef {
  for (const part of ['namespace', 'name'] as const) {
    const value: unknown = ref?.[part];
    if (typeof value !== 'string' || value.length > 63 || !LABEL.test(value)) {
      throw new OfftakeError('invalid-name', `The product ${part} is not a DNS-1123 label.`, {
        errors: [{ pointer: `/metadata/${part}`, message: 'must be a DNS-1123 label', kind: 'name' }],
      });
    }
  }
  if (ref.build !== undefined && (!Number.isSafeInteger(ref.build) || ref.build < 1)) {
    throw new RangeError('A build number is a positive integer.');
  }
  return ref;
}

/**
 * The pipeline id of a product's build: `<namespace>.<name>` for build 1, `<namespace>.<name>.b<N>`
 * for later ones. Labels hold no ".", so the id is unique, and it is valid in a Redis key, a
 * BullMQ job id (no ":") and a stream name.
 */
export function pipelineId(ref: ProductRef): string {
  checkProductRef(ref);
  const build = buildOf(ref);
  return build === 1 ? `${ref.namespace}.${ref.name}` : `${ref.namespace}.${ref.name}.b${build}`;
}

/**
 * The dead-letter stream of a product's build: `<pipeline id>.dlq`, shortened with a hash when that
 * would pass the stream-name length limit (two 63-character labels).
 */
export function deadLetterStream(ref: ProductRef): string {
  const full = `${pipelineId(ref)}.dlq`;
  if (full.length <= MAX_STREAM_NAME_LENGTH) return full;
  const hash = createHash('sha256').update(full).digest('hex').slice(0, 12);
  return `${full.slice(0, MAX_STREAM_NAME_LENGTH - 18).replace(/[._-]+$/, '')}-${hash}.dlq`;
}

/** Queue names of the pipeline runtime (under the BullMQ prefix). */
export const SEED_QUEUE = 'seed';
export const TAIL_QUEUE = 'tail';

/** The queues a product's jobs go to. */
export interface PipelineQueues {
  seed: string;
  tail: string;
}

/**
 * The queues of a product build's jobs: the shared ones that every shared worker takes jobs from,
 * or, for a product with dedicated placement, queues of the build's own (`seed-<pipeline id>`),
 * which only its dedicated worker reads — the one process that can reach that build's store.
 */
export function pipelineQueues(ref: ProductRef, dedicated: boolean): PipelineQueues {
  if (!dedicated) return { seed: SEED_QUEUE, tail: TAIL_QUEUE };
  const id = pipelineId(ref);
  return { seed: `${SEED_QUEUE}-${id}`, tail: `${TAIL_QUEUE}-${id}` };
}

/** The name a pipeline's tail checkpoint is stored under in its sink. */
export const CHECKPOINT_NAME = 'pipeline';

/** Redis keys and job ids of one product's pipeline under a key prefix. */
export interface PipelineKeys {
  id: string;
  /** Hash: run id, product, plan, phase, stop request, times, error. */
  state: string;
  /** Hash: `chunk:<index>` → JSON progress of that seed chunk. */
  seed: string;
  /** Hash: the live tail's checkpoint and counters. */
  tail: string;
}

/** The Redis keys of a product's pipeline under `prefix` (e.g. `offtake`). */
export function pipelineKeys(prefix: string, ref: ProductRef): PipelineKeys {
  const id = pipelineId(ref);
  const base = `${prefix}:pipeline:${id}`;
  return { id, state: `${base}:state`, seed: `${base}:seed`, tail: `${base}:tail` };
}

/** The BullMQ key prefix of the pipeline queues under `prefix`. */
export function queuePrefix(prefix: string): string {
  return `${prefix}:bull`;
}

/** The job id of a launch's tail job (the parent of its seed chunks). */
export function tailJobId(id: string, runId: string, launch: number): string {
  return `${id}.${runId}.${launch}.tail`;
}

/** The job id of one seed chunk of a launch. */
export function chunkJobId(id: string, runId: string, launch: number, index: number): string {
  return `${id}.${runId}.${launch}.chunk-${index}`;
}
