/**
 * The resource store: where DataProducts live, with Kubernetes semantics. The embedded mode
 * keeps it in Redis (`redis-resource-store.ts`); the Kubernetes mode will implement the same
 * interface over the cluster's custom resources.
 */
import type { DataProduct, DataProductSpec, DataProductStatus } from '../../crds/generated/types.ts';

/** Server-owned metadata of a stored object. */
export interface StoredMetadata {
  name: string;
  namespace: string;
  uid: string;
  /** Opaque token for optimistic concurrency; rises on every write of the object. */
  resourceVersion: string;
  /** Rises on every change of `spec` (not on status or metadata-only writes). */
  generation: number;
  creationTimestamp: string;
  /** Set when deletion was requested on an object that still has finalizers. */
  deletionTimestamp?: string;
  finalizers: string[];
  labels: Record<string, string>;
  annotations: Record<string, string>;
}

/** A DataProduct as stored: full metadata, spec and status. */
export interface StoredDataProduct {
  apiVersion: DataProduct['apiVersion'];
  kind: DataProduct['kind'];
  metadata: StoredMetadata;
  spec: DataProductSpec;
  status?: DataProductStatus;
}

/** What a client submits to create or replace a product. */
export interface DataProductInput {
  metadata: {
    name: string;
    namespace: string;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    /** On replace: the version the client read; a mismatch is a conflict. */
    resourceVersion?: string;
    /** On replace: the finalizers to keep (the operator sets them). Absent = unchanged. */
    finalizers?: string[];
  };
  spec: DataProductSpec;
}

/** A label selector: `key=value`, `key!=value`, `key`, `!key`, `key in (a,b)`, `key notin (a,b)`. */
export type LabelSelector = string;

/** One change delivered by a watch, in resourceVersion order. */
export interface WatchEvent {
  type: 'ADDED' | 'MODIFIED' | 'DELETED';
  object: StoredDataProduct;
}

/** Options of a list call. */
export interface ListOptions {
  /** Only this namespace; all namespaces when absent. */
  namespace?: string;
  labelSelector?: LabelSelector;
}

/** A list answer: the items and the store's resourceVersion at the time of the read. */
export interface ListResult {
  items: StoredDataProduct[];
  resourceVersion: string;
}

/** A running watch: iterate its events; `close()` stops it. */
export interface Watch extends AsyncIterable<WatchEvent> {
  close(): Promise<void>;
}

/**
 * The interface both modes implement. All methods throw {@link OfftakeError}s for user-facing
 * failures: `not-found`, `already-exists`, `conflict` (stale resourceVersion), `watch-expired`.
 */
export interface ResourceStore {
  /** Creates a product: generation 1, a new uid and resourceVersion. */
  create(input: DataProductInput): Promise<StoredDataProduct>;
  /** Reads one product, or throws `not-found`. */
  get(namespace: string, name: string): Promise<StoredDataProduct>;
  /** Lists products, filtered by namespace and label selector. */
  list(opts?: ListOptions): Promise<ListResult>;
  /**
   * Replaces spec, labels and annotations (and finalizers when given). Generation rises only
   * when the spec changed. A given `metadata.resourceVersion` must match the stored one.
   */
  replace(input: DataProductInput): Promise<StoredDataProduct>;
  /** Writes only the status; the spec and generation are untouched. */
  updateStatus(
    namespace: string,
    name: string,
    status: DataProductStatus,
    resourceVersion?: string,
  ): Promise<StoredDataProduct>;
  /** Replaces only the finalizers; removing the last one from a deleting object deletes it. */
  setFinalizers(
    namespace: string,
    name: string,
    finalizers: string[],
    resourceVersion?: string,
  ): Promise<StoredDataProduct | undefined>;
  /**
   * Requests deletion: without finalizers the object is gone at once (returns undefined);
   * with finalizers it only gets a deletionTimestamp (returns the marked object).
   */
  delete(namespace: string, name: string, resourceVersion?: string): Promise<StoredDataProduct | undefined>;
  /** Every change after `resourceVersion` (or from now), in order, none missed across a reconnect. */
  watch(opts?: { resourceVersion?: string; namespace?: string }): Watch;
  /** Releases connections. */
  close(): Promise<void>;
}
