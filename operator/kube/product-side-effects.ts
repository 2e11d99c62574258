/**
 * What Kubernetes mode adds to the shared reconciler's writes, without touching the reconciler
 * (embedded mode runs it unchanged): a resource store that passes every call through to the
 * cluster's DataProducts and, on the side,
 *
 * - records an Event on the product for each condition transition or failure a status write
 *   makes (`kubectl describe dataproduct x` tells the story);
 * - once the store is ready (StoreReady True, `status.connection.secretRef` set), applies the
 *   connection Secret `<name>-conn`, owned by the product, from the connection details the
 *   reconciler recorded — again when they change (a blue/green switch);
 * - deletes that Secret at teardown, before the finalizer is released: the owner reference lets
 *   the garbage collector remove it too, but the operator does not rely on one running.
 *
 * Events and the Secret never fail a status write (they are logged and retried on the next read
 * of the product); a Secret that cannot be deleted holds the finalizer, so teardown retries.
 */
import type { DataProductStatus } from '../../crds/generated/types.ts';
import type { Logger } from '../../lib/logger.ts';
import type {
  DataProductInput,
  ListOptions,
  ListResult,
  ResourceStore,
  StoredDataProduct,
  Watch,
} from '../../lib/resource-store/resource-store.ts';
import type { ConnectionReader } from '../product-connection.ts';
import { FINALIZER } from '../reconciler.ts';
import { connectionSecretName, type ConnectionSecrets } from './connection-secret.ts';
import type { EventRecorder } from './events.ts';
import type { OwnedObjects } from './owned-objects.ts';
import { PRODUCT_LABEL } from './ownership.ts';

/** What a {@link SideEffectsStore} works with. */
export interface SideEffectsStoreOptions {
  /** The cluster's DataProducts. */
  store: ResourceStore;
  events: EventRecorder;
  secrets: ConnectionSecrets;
  /** The owned objects' API (to check a Secret is ours before deleting it). */
  objects: OwnedObjects;
  /** The connection details the reconciler recorded for each product. */
  connections: ConnectionReader;
  logger: Logger;
}

/** A product as last seen: which one (uid) and its status. */
interface Seen {
  uid: string;
  status: DataProductStatus | undefined;
  deleting: boolean;
}

/** A {@link ResourceStore} over the cluster's DataProducts that records Events and keeps connection Secrets. */
export class SideEffectsStore implements ResourceStore {
  private readonly options: SideEffectsStoreOptions;
  private readonly inner: ResourceStore;
  /** By `namespace/name`: the product as last read or written through this store. */
  private readonly seen = new Map<string, Seen>();
  /** By product uid: the connection (as JSON) last applied to its Secret. */
  private readonly applied = new Map<string, string>();

  constructor(options: SideEffectsStoreOptions) {
    this.options = options;
    this.inner = options.store;
  }

  create(input: DataProductInput): Promise<StoredDataProduct> {
    return this.inner.create(input);
  }

  async get(namespace: string, name: string): Promise<StoredDataProduct> {
    const product = await this.inner.get(namespace, name);
    this.remember(product);
    await this.ensureSecret(product);
    return product;
  }

  list(opts?: ListOptions): Promise<ListResult> {
    return this.inner.list(opts);
  }

  replace(input: DataProductInput): Promise<StoredDataProduct> {
    return this.inner.replace(input);
  }

  async updateStatus(
    namespace: string,
    name: string,
    status: DataProductStatus,
    resourceVersion?: string,
  ): Promise<StoredDataProduct> {
    const before = this.seen.get(`${namespace}/${name}`);
    const product = await this.inner.updateStatus(namespace, name, status, resourceVersion);
    this.remember(product);
    const previous = before?.uid === product.metadata.uid ? before.status : undefined;
    await this.options.events.recordTransition(product, previous, product.status);
    await this.ensureSecret(product);
    return product;
  }

  async setFinalizers(
    namespace: string,
    name: string,
    finalizers: string[],
    resourceVersion?: string,
  ): Promise<StoredDataProduct | undefined> {
    const key = `${namespace}/${name}`;
    const seen = this.seen.get(key);
    if (seen?.deleting === true && !finalizers.includes(FINALIZER)) {
      await this.deleteSecret(namespace, name);
      this.applied.delete(seen.uid);
    }
    const product = await this.inner.setFinalizers(namespace, name, finalizers, resourceVersion);
    if (product === undefined) this.seen.delete(key);
    else this.remember(product);
    return product;
  }

  delete(namespace: string, name: string, resourceVersion?: string): Promise<StoredDataProduct | undefined> {
    return this.inner.delete(namespace, name, resourceVersion);
  }

  watch(opts?: { resourceVersion?: string; namespace?: string }): Watch {
    return this.inner.watch(opts);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private remember(product: StoredDataProduct): void {
    const { namespace, name, uid, deletionTimestamp } = product.metadata;
    this.seen.set(`${namespace}/${name}`, {
      uid,
      status: product.status,
      deleting: deletionTimestamp !== undefined,
    });
  }

  /** Applies the product's connection Secret when its store is ready and the Secret is not current. */
  private async ensureSecret(product: StoredDataProduct): Promise<void> {
    const { namespace, name, uid, deletionTimestamp } = product.metadata;
    const status = product.status;
    const storeReady = status?.conditions?.find((c) => c.type === 'StoreReady')?.status === 'True';
    if (deletionTimestamp !== undefined || !storeReady) return;
    if (status?.connection?.secretRef?.name !== connectionSecretName(name)) return;
    try {
      const connection = await this.options.connections.getConnection(namespace, name);
      if (connection === null) return;
      const json = JSON.stringify(connection);
      if (this.applied.get(uid) === json) return;
      await this.options.secrets.apply(product, connection);
      this.applied.set(uid, json);
    } catch (err) {
      const message = `The connection Secret ${connectionSecretName(name)} cannot be written: ${(err as Error).message}`;
      this.options.logger.warn({ product: `${namespace}/${name}`, err: (err as Error).message }, message);
      await this.options.events.record(product, {
        type: 'Warning',
        reason: 'ConnectionSecretFailed',
        message,
      });
    }
  }

  /** Deletes the product's connection Secret, if it is the operator's (a user's Secret of that name stays). */
  private async deleteSecret(namespace: string, name: string): Promise<void> {
    const secret = await this.options.objects.read('Secret', namespace, connectionSecretName(name));
    if (secret?.metadata?.labels?.[PRODUCT_LABEL] !== name) return;
    await this.options.secrets.delete({ namespace, name });
  }
}
