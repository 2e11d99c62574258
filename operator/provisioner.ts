/**
 * The contract of a provisioner: it makes a product's store and its least-privilege credential —
 * in a platform-owned server (shared placement) or as a server of the product's own in the
 * cluster (dedicated placement) — and removes them again. Every method is
 * idempotent and safe after a crash half way: the reconciler simply calls it again.
 */
import type { PipelineProduct } from '../worker/pipeline-state-store.ts';
import type { ProductRef } from '../worker/pipeline-keys.ts';
import type { ProductConnection } from './product-connection.ts';
import type { StoreKind } from './product-records.ts';

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

/** How {@link Provisioner.ensure} treats the build it makes. */
export interface EnsureOptions {
  /**
   * Point the product's readers at this build, atomically (a view swap, a key-prefix pointer).
   * False builds the store beside the one readers use, for a blue/green re-seed.
   */
  publish: boolean;
  /** Earlier builds that readers may still see (a publish replaces them: their postgres views go). */
  replacing?: readonly PipelineProduct[];
}

/**
 * Makes and removes one target type's stores. A product's store may hold several **builds**
 * (`product.build`): the one readers use and, during a spec change, the next one being seeded.
 * Throws {@link ProvisioningError}s.
 */
export interface Provisioner {
  readonly type: StoreKind;
  /** Creates (or repairs) the product's credential and the store of its build; returns how to connect. */
  ensure(product: PipelineProduct, credential: Credential, options: EnsureOptions): Promise<ProvisionedStore>;
  /** Removes the product's credential and ends its sessions; the data stays. */
  revokeAccess(ref: ProductRef): Promise<void>;
  /** Drops one build's data (what its sink wrote, checkpoints included), not what readers use now. */
  dropBuild(product: PipelineProduct): Promise<void>;
  /** Drops the product's data, every build (everything its sinks wrote, checkpoints included). */
  dropData(ref: ProductRef): Promise<void>;
  /** Keeps the data for good, its product being deleted with `deletionPolicy: Retain`. */
  retainData(ref: ProductRef): Promise<void>;
}
