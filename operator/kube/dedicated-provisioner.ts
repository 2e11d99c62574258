/**
 * Dedicated placement as a {@link Provisioner}: the reconciler drives it exactly like the shared
 * ones. `ensure` applies a product build's server (StatefulSet, Service, credentials,
 * PodDisruptionBudget) and its worker Deployment, and answers once both run: until then it throws
 * a {@link ProvisioningError} with a progress reason (`WaitingForStore`, `WaitingForWorker`), which
 * the reconciler shows on StoreReady and looks at again shortly; a stalled rollout is a failure.
 *
 * Each build has its own server and worker, so a spec change seeds beside the running build and
 * the switch is a change of the connection Secret. Dropping a build deletes its objects; dropping
 * the product's data deletes every build's, found by the product's labels.
 */
import type { PipelineProduct } from '../../worker/pipeline-state-store.ts';
import type { ProductRef } from '../../worker/pipeline-keys.ts';
import type { StoreKind } from '../product-records.ts';
import type { Credential, EnsureOptions, ProvisionedStore, Provisioner } from '../provisioner.ts';
import { ProvisioningError } from '../provisioning-error.ts';
import type { DedicatedPlacement } from './dedicated-placement.ts';
import type { DedicatedWorkerAccess } from './dedicated-worker-access.ts';
import type { DedicatedProduct } from './dedicated.ts';

/** Makes and removes the dedicated servers of one store type. */
export class DedicatedProvisioner implements Provisioner {
  readonly type: StoreKind;
  private readonly placement: DedicatedPlacement;
  private readonly access: DedicatedWorkerAccess | undefined;

  /**
   * With `access`, each build's worker reaches the platform with a credential of its own (see
   * `dedicated-worker-access.ts`); without, with the placement's configured URL.
   */
  constructor(placement: DedicatedPlacement, access?: DedicatedWorkerAccess) {
    this.placement = placement;
    this.access = access;
    this.type = `dedicated-${placement.type}`;
  }

  async ensure(
    product: PipelineProduct,
    credential: Credential,
    options: EnsureOptions,
  ): Promise<ProvisionedStore> {
    void options; // Readers switch builds through the connection Secret, which the reconciler writes.
    if (product.uid === undefined) {
      throw new Error(`The product ${product.namespace}/${product.name} has no uid to own its objects.`);
    }
    const dedicated: DedicatedProduct = {
      metadata: { namespace: product.namespace, name: product.name, uid: product.uid },
      spec: product.spec,
      ...(product.build === undefined ? {} : { build: product.build }),
    };
    const platformRedisUrl = await this.access?.ensure(product);
    const applied = await this.placement.apply(
      dedicated,
      credential.password,
      platformRedisUrl === undefined ? {} : { platformRedisUrl },
    );
    if (!applied.readiness.ready) {
      throw new ProvisioningError(applied.readiness.reason, applied.readiness.message);
    }
    return { connection: applied.connection, description: applied.readiness.message };
  }

  /** Stops every build's worker: nothing writes any more; readers keep the store (its own password). */
  async revokeAccess(ref: ProductRef): Promise<void> {
    await this.placement.removeWorkers(ref);
    await this.access?.revoke(ref);
  }

  async dropBuild(product: PipelineProduct): Promise<void> {
    await this.placement.removeWorker(product);
    await this.access?.revoke(product, product.build ?? 1);
    await this.placement.removeStore(product, { retainVolume: false });
  }

  async dropData(ref: ProductRef): Promise<void> {
    await this.placement.removeWorkers(ref);
    await this.access?.revoke(ref);
    await this.placement.removeStores(ref, { retainVolume: false });
  }

  /**
   * Keeps the data: the servers go, their volumes stay (the PersistentVolumeClaims outlive the
   * product, to be mounted again or deleted by hand).
   */
  async retainData(ref: ProductRef): Promise<void> {
    await this.placement.removeWorkers(ref);
    await this.access?.revoke(ref);
    await this.placement.removeStores(ref, { retainVolume: true });
  }
}
