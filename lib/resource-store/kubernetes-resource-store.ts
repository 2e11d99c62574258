/**
 * The Kubernetes resource store: DataProducts as custom resources (`dataproducts.offtake.dev`,
 * v1alpha1, with the status subresource) in the cluster's API server, behind the same
 * {@link ResourceStore} interface as the embedded store.
 *
 * The API server owns the semantics the embedded store imitates: uid, resourceVersion,
 * generation (rising only with the spec), finalizers, deletionTimestamp, and deletion once the
 * last finalizer of a deleting object is gone. This class only maps the interface onto it:
 * - spec, labels and annotations by PUT of the whole object, carrying the resourceVersion it read;
 * - status through the status subresource, and finalizers by JSON patch of that one field, each
 *   guarded, when the caller gave a resourceVersion, by a patch of `/metadata/resourceVersion` to
 *   it: the API server then refuses the write with 409 Conflict if the object moved on;
 * - watches with the client's Watch, resumed from the last resourceVersion, 410 Gone ending them
 *   with `watch-expired` so the controller lists again;
 * - the API server's errors as the catalogue's codes (see kubernetes-errors.ts).
 */
import { checkedName, checkedRef } from './checked-names.ts';
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { API_VERSION, GROUP, KIND, PLURAL, VERSION } from '../../crds/dataproduct.schema.ts';
import type { DataProductSpec, DataProductStatus } from '../../crds/generated/types.ts';
import { OfftakeError, isOfftakeError } from '../errors.ts';
import { kubeError } from './kubernetes-errors.ts';
import { KubernetesWatch } from './kubernetes-watch.ts';
import type {
  DataProductInput,
  ListOptions,
  ListResult,
  ResourceStore,
  StoredDataProduct,
  StoredMetadata,
  Watch,
} from './resource-store.ts';

/** Options of a {@link KubernetesResourceStore}. */
export interface KubernetesResourceStoreOptions {
  /** The field manager named on every write (server-side field ownership). Default `offtake`. */
  fieldManager?: string;
  /** Items fetched per page of a list (default 500). */
  listPageSize?: number;
  /** How long one watch request stays open before it is resumed, in seconds (default 25). */
  watchRequestSeconds?: number;
}

/** A DataProduct as the API server sends it: Kubernetes metadata, with fields Offtake does not model. */
interface KubeDataProduct {
  apiVersion: string;
  kind: string;
  metadata: {
    name: string;
    namespace: string;
    uid: string;
    resourceVersion: string;
    generation?: number;
    creationTimestamp: string;
    deletionTimestamp?: string;
    finalizers?: string[];
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
    [field: string]: unknown;
  };
  spec: DataProductSpec;
  status?: DataProductStatus;
}

/** A list as the API server sends it. */
interface KubeList {
  metadata: { resourceVersion: string; continue?: string };
  items: KubeDataProduct[];
}

/** One operation of a JSON patch (RFC 6902). */
interface PatchOperation {
  op: 'add' | 'replace' | 'remove' | 'test';
  path: string;
  value?: unknown;
}

/** Retries of a replace without a client-given resourceVersion that keeps losing races. */
const MAX_ATTEMPTS = 32;

/**
 * The {@link ResourceStore} of Kubernetes mode, over DataProduct custom resources. The
 * KubeConfig says which cluster and as whom; the CRD must be installed
 * (`crds/offtake.dev_dataproducts.yaml`). `close()` ends the store's watches.
 */
export class KubernetesResourceStore implements ResourceStore {
  private readonly kubeConfig: KubeConfig;
  private readonly api: CustomObjectsApi;
  private readonly fieldManager: string;
  private readonly listPageSize: number;
  private readonly watchRequestSeconds: number;
  private readonly watches = new Set<KubernetesWatch>();

  constructor(kubeConfig: KubeConfig, opts: KubernetesResourceStoreOptions = {}) {
    this.kubeConfig = kubeConfig;
    this.api = kubeConfig.makeApiClient(CustomObjectsApi);
    this.fieldManager = opts.fieldManager ?? 'offtake';
    this.listPageSize = opts.listPageSize ?? 500;
    this.watchRequestSeconds = opts.watchRequestSeconds ?? 25;
  }

  async create(input: DataProductInput): Promise<StoredDataProduct> {
    const { namespace, name } = checkedRef(input.metadata.namespace, input.metadata.name);
    const metadata: Record<string, unknown> = {
      name,
      namespace,
      labels: input.metadata.labels ?? {},
      annotations: input.metadata.annotations ?? {},
    };
    if (input.metadata.finalizers !== undefined) metadata.finalizers = unique(input.metadata.finalizers);
    const created = await this.call<KubeDataProduct>(subject(namespace, name), true, () =>
      this.api.createNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural: PLURAL,
        body: { apiVersion: API_VERSION, kind: KIND, metadata, spec: input.spec },
        fieldManager: this.fieldManager,
        fieldValidation: 'Strict',
      }),
    );
    return toStored(created);
  }

  async get(namespace: string, name: string): Promise<StoredDataProduct> {
    return toStored(await this.read(namespace, name));
  }

  async list(opts: ListOptions = {}): Promise<ListResult> {
    const namespace = opts.namespace === undefined ? undefined : checkedName('namespace', opts.namespace);
    const items: StoredDataProduct[] = [];
    let resourceVersion = '';
    let next: string | undefined;
    // Pages of one list share the first page's snapshot, so together they are one consistent read.
    do {
      const page = await this.listPage(namespace, opts.labelSelector, this.listPageSize, next);
      if (resourceVersion === '') resourceVersion = page.metadata.resourceVersion;
      items.push(...page.items.map(toStored));
      next = page.metadata.continue === '' ? undefined : page.metadata.continue;
    } while (next !== undefined);
    return { items, resourceVersion };
  }

  async replace(input: DataProductInput): Promise<StoredDataProduct> {
    const { namespace, name } = checkedRef(input.metadata.namespace, input.metadata.name);
    const precondition = input.metadata.resourceVersion;
    for (let attempt = 1; ; attempt += 1) {
      const current = await this.read(namespace, name);
      const currentVersion = current.metadata.resourceVersion;
      if (precondition !== undefined && precondition !== currentVersion) {
        throw conflict(namespace, name, precondition, currentVersion);
      }
      const metadata = {
        ...current.metadata,
        labels: input.metadata.labels ?? {},
        annotations: input.metadata.annotations ?? {},
        finalizers:
          input.metadata.finalizers === undefined
            ? (current.metadata.finalizers ?? [])
            : unique(input.metadata.finalizers),
      };
      try {
        // The status in the body is ignored by the API server (status is a subresource).
        const replaced = await this.call<KubeDataProduct>(subject(namespace, name), true, () =>
          this.api.replaceNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace,
            plural: PLURAL,
            name,
            body: { ...current, metadata: withoutManagedFields(metadata), spec: input.spec },
            fieldManager: this.fieldManager,
            fieldValidation: 'Strict',
          }),
        );
        return toStored(replaced);
      } catch (err) {
        // Without a version of the caller's, a lost race is retried on the fresh object.
        if (!isOfftakeError(err, 'conflict') || precondition !== undefined || attempt >= MAX_ATTEMPTS)
          throw err;
      }
    }
  }

  async updateStatus(
    namespace: string,
    name: string,
    status: DataProductStatus,
    resourceVersion?: string,
  ): Promise<StoredDataProduct> {
    const ref = checkedRef(namespace, name);
    // `add` replaces /status whole (a merge patch would keep fields the new status dropped).
    const patch = [...guard(resourceVersion), { op: 'add', path: '/status', value: status } as const];
    const updated = await this.call<KubeDataProduct>(subject(ref.namespace, ref.name), true, () =>
      this.api.patchNamespacedCustomObjectStatus({
        group: GROUP,
        version: VERSION,
        namespace: ref.namespace,
        plural: PLURAL,
        name: ref.name,
        body: patch,
        fieldManager: this.fieldManager,
      }),
    );
    return toStored(updated);
  }

  async setFinalizers(
    namespace: string,
    name: string,
    finalizers: string[],
    resourceVersion?: string,
  ): Promise<StoredDataProduct | undefined> {
    const ref = checkedRef(namespace, name);
    const patch = [
      ...guard(resourceVersion),
      { op: 'add', path: '/metadata/finalizers', value: unique(finalizers) } as const,
    ];
    const updated = toStored(
      await this.call<KubeDataProduct>(subject(ref.namespace, ref.name), true, () =>
        this.api.patchNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: ref.namespace,
          plural: PLURAL,
          name: ref.name,
          body: patch,
          fieldManager: this.fieldManager,
        }),
      ),
    );
    // The API server deleted a deleting object whose last finalizer went; it answers with its last state.
    return isReleased(updated) ? undefined : updated;
  }

  async delete(
    namespace: string,
    name: string,
    resourceVersion?: string,
  ): Promise<StoredDataProduct | undefined> {
    const ref = checkedRef(namespace, name);
    const answer = await this.call<unknown>(subject(ref.namespace, ref.name), true, () =>
      this.api.deleteNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ref.namespace,
        plural: PLURAL,
        name: ref.name,
        body: resourceVersion === undefined ? {} : { preconditions: { resourceVersion } },
      }),
    );
    // Gone at once: a Status, or the object as it last was (no finalizers, so nothing held it).
    if (!isDataProduct(answer)) return undefined;
    const object = toStored(answer);
    return object.metadata.deletionTimestamp !== undefined && object.metadata.finalizers.length > 0
      ? object
      : undefined;
  }

  /**
   * Watches changes after `resourceVersion`, or from now when absent (the collection's current
   * resourceVersion is read first: no synthetic ADDED events, as in the embedded store). A
   * resourceVersion the API server no longer keeps fails the first read with `watch-expired`.
   */
  watch(opts: { resourceVersion?: string; namespace?: string } = {}): Watch {
    const namespace = opts.namespace === undefined ? undefined : checkedName('namespace', opts.namespace);
    const requested = opts.resourceVersion;
    const startAfter =
      requested !== undefined && requested !== '' && requested !== '0'
        ? Promise.resolve(requested)
        : this.listPage(namespace, undefined, 1, undefined).then((page) => page.metadata.resourceVersion);
    const path =
      namespace === undefined
        ? `/apis/${GROUP}/${VERSION}/${PLURAL}`
        : `/apis/${GROUP}/${VERSION}/namespaces/${encodeURIComponent(namespace)}/${PLURAL}`;
    const watch: KubernetesWatch = new KubernetesWatch({
      kubeConfig: this.kubeConfig,
      path,
      startAfter,
      decode: (object) => toStored(object as KubeDataProduct),
      requestTimeoutSeconds: this.watchRequestSeconds,
      onClose: () => this.watches.delete(watch),
    });
    this.watches.add(watch);
    return watch;
  }

  /** Ends every open watch. */
  async close(): Promise<void> {
    await Promise.all([...this.watches].map((watch) => watch.close()));
  }

  private async read(namespace: string, name: string): Promise<KubeDataProduct> {
    const ref = checkedRef(namespace, name);
    return this.call<KubeDataProduct>(subject(ref.namespace, ref.name), false, () =>
      this.api.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace: ref.namespace,
        plural: PLURAL,
        name: ref.name,
      }),
    );
  }

  private listPage(
    namespace: string | undefined,
    labelSelector: string | undefined,
    limit: number,
    next: string | undefined,
  ): Promise<KubeList> {
    return this.call<KubeList>('DataProducts', false, () =>
      namespace === undefined
        ? this.api.listCustomObjectForAllNamespaces({
            group: GROUP,
            version: VERSION,
            resourcePlural: PLURAL,
            labelSelector,
            limit,
            _continue: next,
          })
        : this.api.listNamespacedCustomObject({
            group: GROUP,
            version: VERSION,
            namespace,
            plural: PLURAL,
            labelSelector,
            limit,
            _continue: next,
          }),
    );
  }

  /** Runs one API call (the client types custom objects as `any`), its failure mapped to the catalogue's codes. */
  private async call<T>(what: string, write: boolean, request: () => Promise<unknown>): Promise<T> {
    try {
      return (await request()) as T;
    } catch (err) {
      throw kubeError(err, { subject: what, write });
    }
  }
}

/** The store's shape of an object from the API server: the metadata Offtake models, spec, status. */
function toStored(object: KubeDataProduct): StoredDataProduct {
  const m = object.metadata;
  const metadata: StoredMetadata = {
    name: m.name,
    namespace: m.namespace,
    uid: m.uid,
    resourceVersion: m.resourceVersion,
    generation: m.generation ?? 1,
    creationTimestamp: m.creationTimestamp,
    finalizers: m.finalizers ?? [],
    labels: m.labels ?? {},
    annotations: m.annotations ?? {},
  };
  if (m.deletionTimestamp !== undefined) metadata.deletionTimestamp = m.deletionTimestamp;
  const stored: StoredDataProduct = {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata,
    spec: object.spec,
  };
  if (object.status !== undefined) stored.status = object.status;
  return stored;
}

/** Metadata without managedFields: the API server keeps and updates them itself. */
function withoutManagedFields(metadata: KubeDataProduct['metadata']): KubeDataProduct['metadata'] {
  const copy = { ...metadata };
  delete copy.managedFields;
  return copy;
}

function isDataProduct(value: unknown): value is KubeDataProduct {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as { kind?: unknown }).kind === KIND &&
    typeof (value as { metadata?: unknown }).metadata === 'object'
  );
}

/** Whether a write answered an object that the API server deleted: deleting, no finalizer left. */
function isReleased(object: StoredDataProduct): boolean {
  return object.metadata.deletionTimestamp !== undefined && object.metadata.finalizers.length === 0;
}

/**
 * The patch operation that makes a patch conditional: the patched object carries `resourceVersion`,
 * and the API server refuses to store an object whose resourceVersion is not the current one.
 */
function guard(resourceVersion: string | undefined): PatchOperation[] {
  return resourceVersion === undefined
    ? []
    : [{ op: 'replace', path: '/metadata/resourceVersion', value: resourceVersion }];
}

/** A finalizer listed twice is one finalizer. */
function unique(finalizers: string[]): string[] {
  return [...new Set(finalizers)];
}

function subject(namespace: string, name: string): string {
  return `DataProduct ${namespace}/${name}`;
}

function conflict(namespace: string, name: string, sent: string, current: string): OfftakeError {
  return new OfftakeError(
    'conflict',
    `DataProduct ${namespace}/${name} has been modified: you sent resourceVersion ${sent}, the current one is ${current}. Read it again and retry.`,
  );
}
