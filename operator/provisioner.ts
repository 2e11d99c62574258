/**
 * The contract of a shared-placement provisioner: it makes a product's store and its
 * least-privilege credential in a platform-owned server, and removes them again. Every method is
 * idempotent and safe after a crash half way: the reconciler simply calls it again.
 */
import type { PipelineProduct } from '../worker/pipeline-state-store.ts';
import type { ProductRef } from '../worker/pipeline-keys.ts';
import type { ProductConnection } from './product-connection.ts';
import type { TargetType } from './product-records.ts';

/** The product's credential: its password, and whether it was just generated (so any existing login must take it). */
export interface Credential {
  password: string;
  created: boolean;
}

/** What {@link Provisioner.ensure} made. */
export interface ProvisionedStore {
  connection: ProductConnection;
  /** One sentence for the StoreReady condition, e.g. "Schema dp_x and role dp_x are ready." */
  description: string;
}

/** Makes and removes one target type's stores. Throws {@link ProvisioningError}s. */
export interface Provisioner {
  readonly type: TargetType;
  /** Creates (or repairs) the store and the product's credential; returns how to connect. */
  ensure(product: PipelineProduct, credential: Credential): Promise<ProvisionedStore>;
  /** Removes the product's credential and ends its sessions; the data stays. */
  revokeAccess(ref: ProductRef): Promise<void>;
  /** Drops the product's data (everything its sink wrote, checkpoints included). */
  dropData(ref: ProductRef): Promise<void>;
  /** Keeps the data for good, its product being deleted with `deletionPolicy: Retain`. */
  retainData(ref: ProductRef): Promise<void>;
}
