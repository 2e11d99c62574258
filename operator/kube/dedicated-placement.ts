/**
 * The I/O side of dedicated placement: applies what `dedicated.ts` renders with server-side apply
 * (field manager `offtake-operator`), reads the workloads back to judge their readiness, and
 * removes them — one build at a time, or every build of a product by its labels. The dedicated
 * provisioner calls {@link DedicatedPlacement.apply} on every pass (it is idempotent) and shows
 * the readiness on StoreReady: `WaitingForStore`/`WaitingForWorker` are progress reasons, so the
 * product stays Provisioning until both are ready.
 */
import type { V1Secret } from '@kubernetes/client-node';
import type { ProductRef } from '../../worker/pipeline-keys.ts';
import type { ProductConnection } from '../product-connection.ts';
import {
  DEFAULT_DEDICATED_OPTIONS,
  STORE_TYPE_LABEL,
  dedicatedConnection,
  dedicatedRef,
  dedicatedNames,
  dedicatedReadiness,
  desiredDedicatedObjects,
  type DedicatedOptions,
  type DedicatedProduct,
  type DedicatedReadiness,
  type DedicatedStoreType,
} from './dedicated.ts';
import type { OwnedKind, OwnedObjects } from './owned-objects.ts';
import { FIELD_MANAGER, PRODUCT_LABEL, checkOwnership } from './ownership.ts';

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
   * Applies the objects of the product's build. The store's password is the one its credentials
   * Secret already holds (the store was initialised with it), else `password`. The worker reaches
   * the platform with `access.platformRedisUrl` (its own credential), else the configured URL.
   */
  async apply(
    product: DedicatedProduct,
    password: string,
    access: { platformRedisUrl?: string } = {},
  ): Promise<AppliedDedicated> {
    const names = dedicatedNames(dedicatedRef(product), this.type);
    const { namespace } = product.metadata;
    const existing = await this.objects.read('Secret', namespace, names.credentials);
    checkOwnership('Secret', existing, product);
    for (const [kind, name] of [
      ['Secret', names.platform],
      ['Service', names.store],
      ['StatefulSet', names.store],
      ['PodDisruptionBudget', names.store],
      ['Deployment', names.worker],
    ] as const) {
      checkOwnership(kind, await this.objects.read(kind, namespace, name), product);
    }
    const kept = storedPassword(existing);
    const options = access.platformRedisUrl === undefined ? this.options : { ...this.options, ...access };
    const objects = desiredDedicatedObjects(product, kept ?? password, options);
    if (objects.platform !== undefined) await this.objects.apply('Secret', objects.platform);
    await this.objects.apply('Secret', objects.credentials);
    await this.objects.apply('Service', objects.service);
    const statefulSet = await this.objects.apply('StatefulSet', objects.statefulSet);
    await this.objects.apply('PodDisruptionBudget', objects.disruptionBudget);
    const worker = await this.objects.apply('Deployment', objects.worker);
    return {
      password: kept ?? password,
      connection: dedicatedConnection(product, kept ?? password),
      readiness: dedicatedReadiness(statefulSet, worker),
    };
  }

  /** Reads the workloads of the product's build and judges their readiness. */
  async readiness(ref: ProductRef): Promise<DedicatedReadiness> {
    const names = dedicatedNames(ref, this.type);
    const [statefulSet, worker] = await Promise.all([
      this.objects.read('StatefulSet', ref.namespace, names.store),
      this.objects.read('Deployment', ref.namespace, names.worker),
    ]);
    return dedicatedReadiness(statefulSet, worker);
  }

  /** Deletes the build's worker and its platform settings: nothing writes to its store any more. */
  async removeWorker(ref: ProductRef): Promise<void> {
    const names = dedicatedNames(ref, this.type);
    await this.objects.delete('Deployment', ref.namespace, names.worker);
    await this.objects.delete('Secret', ref.namespace, names.platform);
  }

  /**
   * Deletes the build's store (StatefulSet, Service, PodDisruptionBudget, credentials). Its volume
   * goes with it unless the StatefulSet's retention policy keeps it; `retainVolume` sets that
   * policy first, whatever the spec said when the StatefulSet was applied.
   */
  async removeStore(ref: ProductRef, opts: { retainVolume: boolean }): Promise<void> {
    const names = dedicatedNames(ref, this.type);
    if (opts.retainVolume) await this.retainVolume(ref, names.store);
    await this.objects.delete('PodDisruptionBudget', ref.namespace, names.store);
    await this.objects.delete('StatefulSet', ref.namespace, names.store);
    await this.objects.delete('Service', ref.namespace, names.store);
    await this.objects.delete('Secret', ref.namespace, names.credentials);
  }

  /**
   * Deletes the workers of every build of the product (found by its labels, whatever builds the
   * records remember): its stores stay, unwritten.
   */
  async removeWorkers(ref: ProductRef): Promise<void> {
    for (const kind of ['Deployment', 'Secret'] as const) {
      for (const name of await this.ownedNames(kind, ref, 'worker'))
        await this.objects.delete(kind, ref.namespace, name);
    }
  }

  /** Deletes every build's store of this type (found by the product's labels), keeping volumes on `retainVolume`. */
  async removeStores(ref: ProductRef, opts: { retainVolume: boolean }): Promise<void> {
    if (opts.retainVolume) {
      for (const name of await this.ownedNames('StatefulSet', ref, 'store'))
        await this.retainVolume(ref, name);
    }
    for (const kind of ['PodDisruptionBudget', 'StatefulSet', 'Service', 'Secret'] as const) {
      for (const name of await this.ownedNames(kind, ref, 'store'))
        await this.objects.delete(kind, ref.namespace, name);
    }
  }

  /** Names of the product's objects of a kind and component, of this store type (every build). */
  private async ownedNames(
    kind: OwnedKind,
    ref: ProductRef,
    component: 'store' | 'worker',
  ): Promise<string[]> {
    const found = await this.objects.list(
      kind,
      ref.namespace,
      `${PRODUCT_LABEL}=${ref.name},${STORE_TYPE_LABEL}=${this.type},app.kubernetes.io/component=${component},` +
        `app.kubernetes.io/managed-by=${FIELD_MANAGER}`,
    );
    return found.flatMap((object) => (object.metadata?.name === undefined ? [] : [object.metadata.name]));
  }

  private async retainVolume(ref: ProductRef, name: string): Promise<void> {
    const current = await this.objects.read('StatefulSet', ref.namespace, name);
    if (current === undefined || current.spec?.persistentVolumeClaimRetentionPolicy?.whenDeleted === 'Retain')
      return;
    await this.objects.mergePatch('StatefulSet', ref.namespace, name, {
      spec: { persistentVolumeClaimRetentionPolicy: { whenDeleted: 'Retain' } },
    });
  }
}

function storedPassword(secret: V1Secret | undefined): string | undefined {
  const value = secret?.data?.password;
  return value === undefined ? undefined : Buffer.from(value, 'base64').toString('utf8');
}
