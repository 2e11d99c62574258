/**
 * The I/O side of dedicated placement: applies what `dedicated.ts` renders with server-side apply
 * (field manager `offtake-operator`), reads the workloads back to judge their readiness, and
 * removes them. The reconciler calls {@link DedicatedPlacement.apply} on every pass (it is
 * idempotent) and shows the readiness on StoreReady: `WaitingForStore`/`WaitingForWorker` are
 * progress reasons, so the product stays Provisioning until both are ready.
 */
import type { V1Secret } from '@kubernetes/client-node';
import type { ProductRef } from '../../worker/pipeline-keys.ts';
import type { ProductConnection } from '../product-connection.ts';
import {
  DEFAULT_DEDICATED_OPTIONS,
  dedicatedConnection,
  dedicatedNames,
  dedicatedReadiness,
  desiredDedicatedObjects,
  type DedicatedOptions,
  type DedicatedProduct,
  type DedicatedReadiness,
  type DedicatedStoreType,
} from './dedicated.ts';
import type { OwnedKind, OwnedObjects } from './owned-objects.ts';
import { PRODUCT_LABEL, checkOwnership, isControlledBy } from './ownership.ts';

/** What {@link DedicatedPlacement.apply} did. */
export interface AppliedDedicated {
  /** The store's password (what its connection Secret must hold). */
  password: string;
  /** How to connect to the store. */
  connection: ProductConnection;
  readiness: DedicatedReadiness;
}

/** Applies, reads and removes the dedicated objects of products of one store type. */
export class DedicatedPlacement {
  readonly type: DedicatedStoreType;
  private readonly objects: OwnedObjects;
  private readonly options: DedicatedOptions;

  constructor(objects: OwnedObjects, type: DedicatedStoreType, options: Partial<DedicatedOptions> = {}) {
    this.objects = objects;
    this.type = type;
    this.options = { ...DEFAULT_DEDICATED_OPTIONS, ...options };
  }

  /**
   * Applies the product's objects. The store's password is the one its credentials Secret
   * already holds (the store was initialised with it), else `password`.
   */
  async apply(product: DedicatedProduct, password: string): Promise<AppliedDedicated> {
    const names = dedicatedNames(product.metadata, this.type);
    const { namespace } = product.metadata;
    const existing = await this.objects.read('Secret', namespace, names.credentials);
    checkOwnership('Secret', existing, product);
    for (const [kind, name] of [
      ['Service', names.store],
      ['StatefulSet', names.store],
      ['PodDisruptionBudget', names.store],
      ['Deployment', names.worker],
    ] as const) {
      checkOwnership(kind, await this.objects.read(kind, namespace, name), product);
    }
    const kept = storedPassword(existing);
    const objects = desiredDedicatedObjects(product, kept ?? password, this.options);
    await this.objects.apply('Secret', objects.credentials);
    await this.objects.apply('Service', objects.service);
    const statefulSet = await this.objects.apply('StatefulSet', objects.statefulSet);
    await this.objects.apply('PodDisruptionBudget', objects.disruptionBudget);
    const worker = await this.objects.apply('Deployment', objects.worker);
    await this.prune(product);
    return {
      password: kept ?? password,
      connection: dedicatedConnection(product, kept ?? password),
      readiness: dedicatedReadiness(statefulSet, worker),
    };
  }

  /** Reads the product's workloads and judges their readiness. */
  async readiness(ref: ProductRef): Promise<DedicatedReadiness> {
    const names = dedicatedNames(ref, this.type);
    const [statefulSet, worker] = await Promise.all([
      this.objects.read('StatefulSet', ref.namespace, names.store),
      this.objects.read('Deployment', ref.namespace, names.worker),
    ]);
    return dedicatedReadiness(statefulSet, worker);
  }

  /** Deletes the worker: nothing writes to the store any more. */
  async removeWorker(ref: ProductRef): Promise<void> {
    await this.objects.delete('Deployment', ref.namespace, dedicatedNames(ref, this.type).worker);
  }

  /**
   * Deletes the store (StatefulSet, Service, PodDisruptionBudget, credentials). Its volume goes
   * with it unless the StatefulSet's retention policy keeps it; `retainVolume` sets that policy
   * first, whatever the spec said when the StatefulSet was applied.
   */
  async removeStore(ref: ProductRef, opts: { retainVolume: boolean }): Promise<void> {
    const names = dedicatedNames(ref, this.type);
    if (opts.retainVolume) await this.retainVolume(ref, names.store);
    await this.objects.delete('PodDisruptionBudget', ref.namespace, names.store);
    await this.objects.delete('StatefulSet', ref.namespace, names.store);
    await this.objects.delete('Service', ref.namespace, names.store);
    await this.objects.delete('Secret', ref.namespace, names.credentials);
  }

  private async retainVolume(ref: ProductRef, name: string): Promise<void> {
    const current = await this.objects.read('StatefulSet', ref.namespace, name);
    if (current === undefined || current.spec?.persistentVolumeClaimRetentionPolicy?.whenDeleted === 'Retain')
      return;
    await this.objects.mergePatch('StatefulSet', ref.namespace, name, {
      spec: { persistentVolumeClaimRetentionPolicy: { whenDeleted: 'Retain' } },
    });
  }

  /**
   * Deletes objects of the product that it no longer wants: those of another store type after the
   * target type changed. Only objects controlled by this very product are touched.
   */
  private async prune(product: DedicatedProduct): Promise<void> {
    const { namespace, name } = product.metadata;
    const keep = dedicatedNames(product.metadata, this.type);
    const kinds: [OwnedKind, string][] = [
      ['StatefulSet', keep.store],
      ['Service', keep.store],
      ['PodDisruptionBudget', keep.store],
      ['Secret', keep.credentials],
    ];
    for (const [kind, wanted] of kinds) {
      const found = await this.objects.list(
        kind,
        namespace,
        `${PRODUCT_LABEL}=${name},app.kubernetes.io/component=store`,
      );
      for (const object of found) {
        const objectName = object.metadata?.name;
        if (objectName !== undefined && objectName !== wanted && isControlledBy(object.metadata, product))
          await this.objects.delete(kind, namespace, objectName);
      }
    }
  }
}

function storedPassword(secret: V1Secret | undefined): string | undefined {
  const value = secret?.data?.password;
  return value === undefined ? undefined : Buffer.from(value, 'base64').toString('utf8');
}
