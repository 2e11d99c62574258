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
  pipelineStatus,
  provisioningStatus,
  storeFailedStatus,
  storeReadyStatus,
  type PipelineHealth,
} from './product-status.ts';
import type { ProductRecords, TargetType } from './product-records.ts';
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
  /** One per target type this Offtake can provide; a missing one makes such products fail visibly. */
  provisioners: Partial<Record<TargetType, Provisioner>>;
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

/** A store known to be in place: checked at `at` for this uid and generation. */
interface Verified {
  uid: string;
  generation: number;
  at: number;
  description: string;
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
        this.verified.delete(`${namespace}/${name}`);
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
    const { records, runner, logger } = this.options;
    const ref: ProductRef = { namespace: product.metadata.namespace, name: product.metadata.name };
    const key = `${ref.namespace}/${ref.name}`;
    const generation = product.metadata.generation;
    const status = new StatusWriter(this.options.store, product, this.options.clock);
    const type = product.spec.target.type;
    const pipelineProduct: PipelineProduct = {
      ...ref,
      uid: product.metadata.uid,
      generation,
      spec: pipelineSpec(product.spec),
    };
    const fingerprint = specFingerprint(pipelineProduct.spec);

    let description: string;
    /** The store was checked in this pass: the pipeline's jobs are checked too (start recreates lost ones). */
    let checked = false;
    try {
      const provisioner = this.provisionerFor(product.spec);
      const started = await records.pipelineFingerprint(ref);
      if (started !== null && started !== fingerprint) {
        await this.reseed(ref, status, type);
      }
      const verified = this.verified.get(key);
      const fresh =
        verified !== undefined &&
        verified.uid === product.metadata.uid &&
        verified.generation === generation &&
        this.options.clock().getTime() - verified.at < this.options.verifyIntervalMs;
      if (fresh) {
        description = verified.description;
      } else {
        if (findCondition(status.product.status, STORE_READY)?.status !== 'True') {
          await status.write(provisioningStatus(status.builder(), `the ${type} store`).build());
        }
        await records.addTarget(ref, type);
        const credential = await records.password(ref);
        const made = await provisioner.ensure(pipelineProduct, credential);
        await records.setConnection(ref, made.connection);
        description = made.description;
        checked = true;
        this.verified.set(key, {
          uid: product.metadata.uid,
          generation,
          at: this.options.clock().getTime(),
          description,
        });
      }
    } catch (err) {
      this.verified.delete(key);
      const failure = classifyFailure(err);
      await status.write(storeFailedStatus(status.builder(), failure).build());
      return this.failed(key, failure, err);
    }

    const names = productStoreNames(this.options.platformPrefix, ref);
    const builder = () =>
      storeReadyStatus(status.builder(), description).fields({
        connection: { secretRef: { name: names.connectionName } },
      });

    let state: PipelineState | null;
    let restartedAfter: PipelineState | undefined;
    try {
      state = await runner.state(ref);
      if (state !== null && state.phase === 'stopping')
        state = await runner.stop(ref, { timeoutMs: this.options.stopTimeoutMs });
      const started = await records.pipelineFingerprint(ref);
      const running = state !== null && (state.phase === 'seeding' || state.phase === 'tailing');
      if (
        state === null ||
        state.phase === 'stopped' ||
        state.phase === 'failed' ||
        started !== fingerprint ||
        checked
      ) {
        if (state?.phase === 'failed') restartedAfter = state;
        await records.setPipelineFingerprint(ref, fingerprint);
        try {
          state = await runner.start(pipelineProduct);
        } catch (err) {
          if (isOfftakeError(err, 'conflict') && err.message.includes('another version')) {
            // A run of a spec this operator has no record of: re-seed on the next pass.
            await records.setPipelineFingerprint(ref, 'unknown');
          }
          throw err;
        }
        if (!running) logger.info({ product: key, generation }, 'pipeline started');
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

    if (restartedAfter !== undefined) {
      // Show why it failed until the relaunch proves itself; retry with backoff, not at once.
      await status.write(pipelineStatus(builder(), restartedAfter, this.options.health).build());
      throw new ProvisioningError(
        'PipelineFailed',
        `The pipeline failed and was restarted: ${restartedAfter.error ?? 'unknown error'}`,
      );
    }
    await status.write(pipelineStatus(builder(), state, this.options.health).build());
    const seeding = state.seed.completedAt === undefined;
    return { requeueAfterMs: seeding ? this.options.progressIntervalMs : this.options.statusIntervalMs };
  }

  /** The spec changed what the pipeline does: stop it, drop its data and runtime state; provisioning and start follow. */
  private async reseed(ref: ProductRef, status: StatusWriter, type: TargetType): Promise<void> {
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
        .fields({ seed: undefined, lag: undefined, checkpoint: undefined })
        .build(),
    );
    logger.info({ product: `${ref.namespace}/${ref.name}` }, 'spec changed: re-seeding');
    await runner.deleteRuntimeState(ref, { timeoutMs: this.options.stopTimeoutMs });
    for (const old of await records.targets(ref)) {
      const provisioner = this.provisioner(old);
      if (old !== type) await provisioner.revokeAccess(ref);
      await provisioner.dropData(ref);
      if (old !== type) await records.removeTarget(ref, old);
    }
    await records.clearConnection(ref);
    await records.setPipelineFingerprint(ref, null);
    this.verified.delete(`${ref.namespace}/${ref.name}`);
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
      await runner.deleteRuntimeState(ref, { timeoutMs: this.options.stopTimeoutMs });
      const types = new Set(await records.targets(ref));
      if (this.options.provisioners[product.spec.target.type] !== undefined)
        types.add(product.spec.target.type);
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
    this.verified.delete(key);
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
      throw new ProvisioningError(
        'DedicatedPlacementUnsupported',
        'placement: dedicated needs Kubernetes mode; this Offtake runs embedded. Use placement: shared.',
        { terminal: true },
      );
    }
    return this.provisioner(spec.target.type, true);
  }

  private provisioner(type: TargetType, terminal = false): Provisioner {
    const provisioner = this.options.provisioners[type];
    if (provisioner === undefined) {
      const setting = type === 'postgres' ? ' (set OFFTAKE_POSTGRES_URL)' : '';
      throw new ProvisioningError(
        `${type[0].toUpperCase()}${type.slice(1)}NotConfigured`,
        `This Offtake has no ${type} store configured${setting}.`,
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
