/**
 * The DataProduct reconciler: `reconcile(namespace, name)` reads the product's current state from
 * the resource store and makes the world match it — the finalizer, the store and its credential,
 * the pipeline, and the status — whatever events brought it there. Level-based and idempotent:
 * running it twice, or again after a crash anywhere in it, does no harm.
 *
 * Errors decide retries: a failure the reconciler can retry (a server down, a permission the
 * platform lacks) is written to the status and thrown, so the controller retries with backoff; a
 * failure only a new spec can fix is written to the status and not retried; "look again soon"
 * (seed progress, lag) is a returned `requeueAfterMs`, not an error.
 */
import { isDeepStrictEqual } from 'node:util';
import type { DataProductSpec, DataProductStatus } from '../crds/generated/types.ts';
import { isOfftakeError } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import type { ResourceStore, StoredDataProduct } from '../lib/resource-store/resource-store.ts';
import type { ProductRef } from '../worker/pipeline-keys.ts';
import { specFingerprint, type PipelineRunner, type PipelineState } from '../worker/pipeline-runner.ts';
import type { PipelineProduct } from '../worker/pipeline-state-store.ts';
import { classifyFailure, type ClassifiedFailure } from './failures.ts';
import {
  DELETING,
  READY,
  SEEDED,
  STORE_READY,
  StatusBuilder,
  findCondition,
  isProgressReason,
  pipelineStatus,
  provisioningStatus,
  rebuildStatus,
  storeFailedStatus,
  storeReadyStatus,
  type PipelineHealth,
} from './product-status.ts';
import {
  storeKind,
  type BuildRecord,
  type ProductBuilds,
  type ProductRecords,
  type StoreKind,
} from './product-records.ts';
import type { Provisioner } from './provisioner.ts';
import { ProvisioningError } from './provisioning-error.ts';
import { productStoreNames } from './store-names.ts';

/** The finalizer the operator puts on every product: deletion waits for its teardown. */
export const FINALIZER = 'offtake.dev/teardown';

/** What a reconcile asks of the controller. */
export interface ReconcileResult {
  /** Reconcile again after this many ms (counted from the start of this reconcile). */
  requeueAfterMs?: number;
}

/** What the reconciler needs of the pipeline runtime. */
export type PipelineControl = Pick<PipelineRunner, 'start' | 'state' | 'stop' | 'deleteRuntimeState'>;

/** Options of a {@link DataProductReconciler}. */
export interface DataProductReconcilerOptions {
  store: ResourceStore;
  runner: PipelineControl;
  records: ProductRecords;
  /** One per kind of store this Offtake can provide; a missing one makes such products fail visibly. */
  provisioners: Partial<Record<StoreKind, Provisioner>>;
  /** How often a store that is still starting (dedicated placement) is looked at again, in ms (default 2000). */
  storeWaitMs?: number;
  /** The platform's Redis key prefix, for naming (e.g. `offtake`). */
  platformPrefix: string;
  logger: Logger;
  clock?: () => Date;
  /** How often status shows seed progress while seeding, in ms (default 500: at least once a second). */
  progressIntervalMs?: number;
  /** How often status shows the lag once tailing, in ms (default 5000). */
  statusIntervalMs?: number;
  /** How often a ready store is checked (and repaired) again, in ms (default 60000). */
  verifyIntervalMs?: number;
  /** How long a teardown waits for the pipeline to drain before it says so and retries, in ms (default 15000). */
  stopTimeoutMs?: number;
  /** When too many dead letters make a product not Ready (default: more than 10 % of at least 100 events). */
  health?: PipelineHealth;
}

/** A build's store known to be in place: checked at `at` for this uid and spec. */
interface Verified {
  uid: string;
  fingerprint: string;
  at: number;
  description: string;
}

/** A build as its pipeline and provisioner see it. */
function buildProduct(ref: ProductRef, uid: string, build: BuildRecord): PipelineProduct {
  return { ...ref, build: build.build, uid, generation: build.generation, spec: build.spec };
}

/** The spec as the pipeline sees it: `deletionPolicy` changes nothing it does, so it does not re-seed. */
export function pipelineSpec(spec: DataProductSpec): DataProductSpec {
  const copy = structuredClone(spec);
  delete copy.deletionPolicy;
  return copy;
}

/** A product's status as read and written during one reconcile. */
class StatusWriter {
  product: StoredDataProduct;
  private readonly store: ResourceStore;
  private readonly clock: () => Date;

  constructor(store: ResourceStore, product: StoredDataProduct, clock: () => Date) {
    this.store = store;
    this.product = product;
    this.clock = clock;
  }

  builder(): StatusBuilder {
    return new StatusBuilder(this.product.status, this.product.metadata.generation, this.clock());
  }

  /** Writes the status when it differs from the stored one (the store skips no-op writes too). */
  async write(status: DataProductStatus): Promise<void> {
    if (isDeepStrictEqual(this.product.status ?? {}, status)) return;
    const { namespace, name } = this.product.metadata;
    try {
      this.product = await this.store.updateStatus(namespace, name, status);
    } catch (err) {
      // Gone meanwhile: nothing left to show it on.
      if (!isOfftakeError(err, 'not-found')) throw err;
    }
  }
}

/** Reconciles DataProducts. */
export class DataProductReconciler {
  private readonly options: Required<Omit<DataProductReconcilerOptions, 'clock'>> & { clock: () => Date };
  private readonly verified = new Map<string, Verified>();

  constructor(options: DataProductReconcilerOptions) {
    this.options = {
      clock: () => new Date(),
      progressIntervalMs: 500,
      statusIntervalMs: 5000,
      verifyIntervalMs: 60_000,
      stopTimeoutMs: 15_000,
      storeWaitMs: 2000,
      health: { maxDeadLetterRatio: 0.1, minEventsForRatio: 100 },
      ...options,
    };
  }

  /** Makes the world match the product `namespace/name` as it is stored now. */
  async reconcile(namespace: string, name: string): Promise<ReconcileResult> {
    let product: StoredDataProduct;
    try {
      product = await this.options.store.get(namespace, name);
    } catch (err) {
      if (isOfftakeError(err, 'not-found')) {
        this.forget(`${namespace}/${name}`);
        return {};
      }
      throw err;
    }
    if (product.metadata.deletionTimestamp !== undefined) return this.finalize(product);
    if (!product.metadata.finalizers.includes(FINALIZER)) {
      // Before anything is made: whatever exists is then sure to be torn down.
      const updated = await this.options.store.setFinalizers(
        namespace,
        name,
        [...product.metadata.finalizers, FINALIZER],
        product.metadata.resourceVersion,
      );
      if (updated === undefined) return {};
      product = updated;
    }
    return this.reconcileLive(product);
  }

  private async reconcileLive(product: StoredDataProduct): Promise<ReconcileResult> {
    const { records } = this.options;
    const ref: ProductRef = { namespace: product.metadata.namespace, name: product.metadata.name };
    const key = `${ref.namespace}/${ref.name}`;
    const status = new StatusWriter(this.options.store, product, this.options.clock);
    const uid = product.metadata.uid;

    let builds: ProductBuilds;
    let active: PipelineProduct;
    let next: PipelineProduct | undefined;
    let description: string;
    /** Stores checked in this pass: their pipelines' jobs are checked too (start recreates lost ones). */
    const checked = new Set<number>();
    /** Why the next build's store is not ready yet, when it is still starting. */
    let nextStoreWaiting: string | undefined;
    try {
      this.provisionerFor(product.spec);
      builds = await this.planBuilds(ref, product, status);
      active = buildProduct(ref, uid, builds.active!);
      next = builds.next === undefined ? undefined : buildProduct(ref, uid, builds.next);
      const credential = await records.password(ref);
      if (!this.isVerified(key, uid, builds.active!)) {
        if (findCondition(status.product.status, STORE_READY)?.status !== 'True') {
          const type = active.spec.target.type;
          await status.write(provisioningStatus(status.builder(), `the ${type} store`).build());
        }
        await records.addTarget(ref, storeKind(active.spec));
        const made = await this.provisioner(storeKind(active.spec)).ensure(active, credential, {
          publish: true,
        });
        await records.setConnection(ref, made.connection);
        this.verify(key, uid, builds.active!, made.description);
        checked.add(active.build!);
      }
      description = this.verified.get(`${key}@${active.build}`)!.description;
      if (next !== undefined && !this.isVerified(key, uid, builds.next!)) {
        await records.addTarget(ref, storeKind(next.spec));
        try {
          const made = await this.provisioner(storeKind(next.spec)).ensure(next, credential, {
            publish: false,
          });
          this.verify(key, uid, builds.next!, made.description);
          checked.add(next.build!);
        } catch (err) {
          const failure = classifyFailure(err);
          if (!isProgressReason(failure.reason)) throw err;
          // The next build's own server is still starting; readers keep the current build meanwhile.
          nextStoreWaiting = failure.message;
        }
      }
    } catch (err) {
      this.forget(key);
      const failure = classifyFailure(err);
      await status.write(storeFailedStatus(status.builder(), failure).build());
      // A store that is still starting (a dedicated server's pods) is progress: look again soon.
      if (isProgressReason(failure.reason)) return { requeueAfterMs: this.options.storeWaitMs };
      return this.failed(key, failure, err);
    }

    const names = productStoreNames(this.options.platformPrefix, ref);
    const builder = () =>
      storeReadyStatus(status.builder(), description).fields({
        connection: { secretRef: { name: names.connectionName } },
      });

    let state: PipelineState;
    let nextState: PipelineState | undefined;
    let restartedAfter: PipelineState | undefined;
    try {
      const run = await this.ensurePipeline(active, checked.has(active.build!));
      state = run.state;
      restartedAfter = run.restartedAfter;
      if (next !== undefined && nextStoreWaiting !== undefined) {
        await status.write(
          pipelineStatus(builder(), state, this.options.health)
            .set({
              type: READY,
              status: 'False',
              reason: 'Reseeding',
              message:
                `The spec changed: the new build's store is starting (${nextStoreWaiting}); ` +
                'readers use the previous build, kept current, until the new one is seeded.',
            })
            .build(),
        );
        return { requeueAfterMs: this.options.storeWaitMs };
      }
      if (next !== undefined) {
        const nextRun = await this.ensurePipeline(next, checked.has(next.build!));
        nextState = nextRun.state;
        restartedAfter ??= nextRun.restartedAfter;
        if (nextState.seed.completedAt !== undefined && nextState.phase === 'tailing') {
          description = await this.switchTo(ref, uid, builds, status);
          [active, state, next, nextState] = [next, nextState, undefined, undefined];
        }
      }
    } catch (err) {
      const failure = classifyFailure(err);
      const shown = { ...failure, reason: failure.terminal ? failure.reason : 'PipelineStartFailed' };
      await status.write(
        builder()
          .set({ type: SEEDED, status: 'False', ...shown })
          .set({ type: READY, status: 'False', ...shown })
          .build(),
      );
      return this.failed(key, failure, err);
    }

    const shown = () => {
      const b = builder().fields({
        builds: {
          active: { build: active.build!, generation: active.generation! },
          ...(next === undefined || nextState === undefined
            ? {}
            : {
                next: {
                  build: next.build!,
                  generation: next.generation!,
                  processed: nextState.seed.processed,
                  total: nextState.seed.total,
                },
              }),
        },
      });
      if (next === undefined || nextState === undefined) return pipelineStatus(b, state, this.options.health);
      return rebuildStatus(b, state, nextState, this.options.health);
    };
    if (restartedAfter !== undefined) {
      // Show why it failed until the relaunch proves itself; retry with backoff, not at once.
      await status.write(shown().build());
      throw new ProvisioningError(
        'PipelineFailed',
        `The pipeline failed and was restarted: ${restartedAfter.error ?? 'unknown error'}`,
      );
    }
    await status.write(shown().build());
    const seeding = (nextState ?? state).seed.completedAt === undefined;
    return { requeueAfterMs: seeding ? this.options.progressIntervalMs : this.options.statusIntervalMs };
  }

  /**
   * Reads the product's builds and brings them in line with its spec: finishes dropping retired
   * builds, makes build 1 on the first pass, and on a spec change plans the next build beside the
   * active one (cancelling a next build of an older spec) — or, for topics, which readers follow
   * as one stream, rebuilds in place. Every change is recorded before it is acted on.
   */
  private async planBuilds(
    ref: ProductRef,
    product: StoredDataProduct,
    status: StatusWriter,
  ): Promise<ProductBuilds> {
    const { records } = this.options;
    const uid = product.metadata.uid;
    const generation = product.metadata.generation;
    const spec = pipelineSpec(product.spec);
    const fingerprint = specFingerprint(spec);
    const wanted = (build: number): BuildRecord => ({ build, generation, fingerprint, spec });
    let builds = await records.builds(ref);
    // Build numbers only rise: a cancelled build's number is never reused (stale jobs can't mix in).
    const highest = Math.max(
      0,
      ...[builds.active, builds.next, ...builds.retired].map((b) => b?.build ?? 0),
      builds.highest ?? 0,
    );
    for (const old of [...builds.retired]) builds = await this.retire(ref, uid, builds, old);
    const active = builds.active;
    if (active === undefined) {
      builds = { ...builds, active: wanted(1) };
    } else if (active.fingerprint === fingerprint) {
      // Back to the spec readers have (or only the generation moved): no next build is needed.
      if (builds.next !== undefined) builds = await this.retire(ref, uid, builds, builds.next);
      if (active.generation !== generation) builds = { ...builds, active: { ...active, generation } };
    } else if (active.spec.target.type === 'topic' || spec.target.type === 'topic') {
      if (builds.next !== undefined) await this.retire(ref, uid, builds, builds.next);
      await this.rebuildInPlace(ref, uid, active, status);
      builds = { retired: [], active: wanted(highest + 1) };
    } else if (builds.next?.fingerprint !== fingerprint) {
      if (builds.next !== undefined) builds = await this.retire(ref, uid, builds, builds.next);
      const number = highest + 1;
      builds = { ...builds, next: wanted(number) };
      this.options.logger.info(
        { product: `${ref.namespace}/${ref.name}`, build: number },
        'spec changed: seeding the next build beside the current one',
      );
    } else if (builds.next.generation !== generation) {
      builds = { ...builds, next: { ...builds.next, generation } };
    }
    builds = { ...builds, highest: Math.max(highest, builds.active?.build ?? 0, builds.next?.build ?? 0) };
    await records.setBuilds(ref, builds);
    return builds;
  }

  /**
   * Drops a build readers no longer use (or never did): marked retired first, so a crash half-way
   * finishes the job on the next pass. A target type no remaining build uses loses its access and
   * all its data; otherwise only this build's data goes.
   */
  private async retire(
    ref: ProductRef,
    uid: string,
    builds: ProductBuilds,
    old: BuildRecord,
  ): Promise<ProductBuilds> {
    const { records, runner } = this.options;
    let marked: ProductBuilds = {
      active: builds.active?.build === old.build ? undefined : builds.active,
      next: builds.next?.build === old.build ? undefined : builds.next,
      retired: [...builds.retired.filter((b) => b.build !== old.build), old],
      highest: Math.max(builds.highest ?? 0, old.build),
    };
    await records.setBuilds(ref, marked);
    const p = buildProduct(ref, uid, old);
    await runner.deleteRuntimeState(p, { timeoutMs: this.options.stopTimeoutMs });
    const type = storeKind(old.spec);
    const stillUsed = [marked.active, marked.next].some((b) => b !== undefined && storeKind(b.spec) === type);
    if (stillUsed) {
      await this.provisioner(type).dropBuild(p);
    } else {
      await this.provisioner(type).revokeAccess(ref);
      await this.provisioner(type).dropData(ref);
      await records.removeTarget(ref, type);
    }
    this.verified.delete(`${ref.namespace}/${ref.name}@${old.build}`);
    marked = { ...marked, retired: marked.retired.filter((b) => b.build !== old.build) };
    await records.setBuilds(ref, marked);
    return marked;
  }

  /**
   * Switches readers to the seeded next build: publishes it (a view swap, a pointer), records it
   * as active with the old one retired (one write), then drops the old one.
   */
  private async switchTo(
    ref: ProductRef,
    uid: string,
    builds: ProductBuilds,
    status: StatusWriter,
  ): Promise<string> {
    const { records, logger } = this.options;
    const key = `${ref.namespace}/${ref.name}`;
    const next = builds.next!;
    const old = builds.active!;
    const nextProduct = buildProduct(ref, uid, next);
    const made = await this.provisioner(storeKind(next.spec)).ensure(
      nextProduct,
      await records.password(ref),
      { publish: true, replacing: [buildProduct(ref, uid, old)] },
    );
    await records.setConnection(ref, made.connection);
    const switched: ProductBuilds = {
      active: next,
      retired: [...builds.retired, old],
      highest: Math.max(builds.highest ?? 0, next.build),
    };
    await records.setBuilds(ref, switched);
    this.verify(key, uid, next, made.description);
    logger.info({ product: key, from: old.build, to: next.build }, 'readers switched to the next build');
    await status.write(
      status
        .builder()
        .fields({ builds: { active: { build: next.build, generation: next.generation } } })
        .build(),
    );
    await this.retire(ref, uid, switched, old);
    return made.description;
  }

  /** Starts a build's pipeline unless it runs; restarts a failed or stopped one. */
  private async ensurePipeline(
    product: PipelineProduct,
    storeChecked: boolean,
  ): Promise<{ state: PipelineState; restartedAfter?: PipelineState }> {
    const { runner, logger } = this.options;
    let state = await runner.state(product);
    if (state !== null && state.phase === 'stopping')
      state = await runner.stop(product, { timeoutMs: this.options.stopTimeoutMs });
    const running = state !== null && (state.phase === 'seeding' || state.phase === 'tailing');
    if (running && !storeChecked) return { state: state! };
    const restartedAfter = state?.phase === 'failed' ? state : undefined;
    try {
      state = await runner.start(product);
    } catch (err) {
      if (isOfftakeError(err, 'conflict') && err.message.includes('another version')) {
        // Runtime state of this build from a spec this operator has no record of: start it afresh.
        await runner.deleteRuntimeState(product, { timeoutMs: this.options.stopTimeoutMs });
      }
      throw err;
    }
    if (!running)
      logger.info(
        {
          product: `${product.namespace}/${product.name}`,
          build: product.build,
          generation: product.generation,
        },
        'pipeline started',
      );
    return { state, restartedAfter };
  }

  /** A topic's spec changed: readers follow one stream, so it is emptied and seeded again in place. */
  private async rebuildInPlace(
    ref: ProductRef,
    uid: string,
    active: BuildRecord,
    status: StatusWriter,
  ): Promise<void> {
    const { records, runner, logger } = this.options;
    await status.write(
      status
        .builder()
        .set({
          type: SEEDED,
          status: 'False',
          reason: 'Reseeding',
          message: 'The spec changed: the store is emptied and seeded again.',
        })
        .set({
          type: READY,
          status: 'False',
          reason: 'Reseeding',
          message: 'The spec changed: the store is being rebuilt.',
        })
        .fields({ seed: undefined, lag: undefined, checkpoint: undefined, deadLetters: undefined })
        .build(),
    );
    logger.info({ product: `${ref.namespace}/${ref.name}` }, 'spec changed: re-seeding a topic in place');
    await runner.deleteRuntimeState(buildProduct(ref, uid, active), {
      timeoutMs: this.options.stopTimeoutMs,
    });
    for (const old of await records.targets(ref)) {
      await this.provisioner(old).revokeAccess(ref);
      await this.provisioner(old).dropData(ref);
      await records.removeTarget(ref, old);
    }
    await records.clearConnection(ref);
    this.forget(`${ref.namespace}/${ref.name}`);
  }

  private isVerified(key: string, uid: string, build: BuildRecord): boolean {
    const verified = this.verified.get(`${key}@${build.build}`);
    return (
      verified !== undefined &&
      verified.uid === uid &&
      verified.fingerprint === build.fingerprint &&
      this.options.clock().getTime() - verified.at < this.options.verifyIntervalMs
    );
  }

  private verify(key: string, uid: string, build: BuildRecord, description: string): void {
    this.verified.set(`${key}@${build.build}`, {
      uid,
      fingerprint: build.fingerprint,
      at: this.options.clock().getTime(),
      description,
    });
  }

  /** Forgets every verified build of a product. */
  private forget(key: string): void {
    for (const k of [...this.verified.keys()]) if (k.startsWith(`${key}@`)) this.verified.delete(k);
  }

  /** Tears down what the product has (by its records, so nothing made is forgotten), then releases it. */
  private async finalize(product: StoredDataProduct): Promise<ReconcileResult> {
    const { records, runner, store, logger } = this.options;
    const { namespace, name, finalizers } = product.metadata;
    if (!finalizers.includes(FINALIZER)) return {};
    const ref: ProductRef = { namespace, name };
    const key = `${namespace}/${name}`;
    const retain = product.spec.deletionPolicy === 'Retain';
    const status = new StatusWriter(store, product, this.options.clock);
    const step = async (message: string) =>
      status.write(
        status.builder().set({ type: DELETING, status: 'True', reason: 'TearingDown', message }).build(),
      );
    try {
      await step('Stopping the pipeline.');
      const builds = await records.builds(ref);
      for (const build of [builds.active, builds.next, ...builds.retired]) {
        if (build === undefined) continue;
        await runner.deleteRuntimeState(buildProduct(ref, product.metadata.uid, build), {
          timeoutMs: this.options.stopTimeoutMs,
        });
      }
      await runner.deleteRuntimeState(ref, { timeoutMs: this.options.stopTimeoutMs });
      const types = new Set(await records.targets(ref));
      if (this.options.provisioners[storeKind(product.spec)] !== undefined)
        types.add(storeKind(product.spec));
      await step(
        retain ? 'Removing access; the data is retained.' : 'Removing access and dropping the store.',
      );
      for (const type of types) await this.provisioner(type).revokeAccess(ref);
      for (const type of types) {
        if (retain) await this.provisioner(type).retainData(ref);
        else await this.provisioner(type).dropData(ref);
      }
      await records.delete(ref);
    } catch (err) {
      const failure = classifyFailure(err);
      await status.write(
        status
          .builder()
          .set({
            type: DELETING,
            status: 'True',
            reason: failure.reason,
            message: `Teardown cannot finish yet: ${failure.message}`,
          })
          .build(),
      );
      logger.warn({ product: key, reason: failure.reason }, 'teardown failed; retrying');
      throw err;
    }
    this.forget(key);
    await store.setFinalizers(
      namespace,
      name,
      status.product.metadata.finalizers.filter((f) => f !== FINALIZER),
    );
    logger.info({ product: key, retain }, 'product torn down');
    return {};
  }

  private provisionerFor(spec: DataProductSpec): Provisioner {
    if (spec.target.placement === 'dedicated') {
      if (spec.target.type === 'topic') {
        throw new ProvisioningError(
          'DedicatedTopicUnsupported',
          'A topic is a stream in the event log, which has no dedicated server; use placement: shared for topic targets.',
          { terminal: true },
        );
      }
      if (this.options.provisioners[storeKind(spec)] === undefined) {
        throw new ProvisioningError(
          'DedicatedPlacementUnsupported',
          'placement: dedicated needs Kubernetes mode; this Offtake runs embedded. Use placement: shared.',
          { terminal: true },
        );
      }
    }
    return this.provisioner(storeKind(spec), true);
  }

  private provisioner(kind: StoreKind, terminal = false): Provisioner {
    const provisioner = this.options.provisioners[kind];
    if (provisioner === undefined) {
      const setting = kind === 'postgres' ? ' (set OFFTAKE_POSTGRES_URL)' : '';
      const name = kind
        .split('-')
        .map((part) => `${part[0].toUpperCase()}${part.slice(1)}`)
        .join('');
      throw new ProvisioningError(
        `${name}NotConfigured`,
        `This Offtake has no ${kind.replace('-', ' ')} store configured${setting}.`,
        { terminal },
      );
    }
    return provisioner;
  }

  /** Ends a failed reconcile: a terminal failure stays shown without retries, any other is thrown for backoff. */
  private failed(key: string, failure: ClassifiedFailure, err: unknown): ReconcileResult {
    if (failure.terminal) {
      this.options.logger.info({ product: key, reason: failure.reason }, 'product needs a spec change');
      return {};
    }
    throw err;
  }
}
