/**
 * The thin I/O layer under the operator's desired-state functions: it applies the objects they
 * render with server-side apply under the one field manager `offtake-operator`, and reads, lists
 * and deletes them. Server-side apply makes every write declarative and idempotent: the operator
 * sends the whole object it wants, the API server merges it field by field, and fields other
 * managers set (an HPA's replicas, a user's annotation) are left alone.
 */
import {
  AppsV1Api,
  CoreV1Api,
  PatchStrategy,
  PolicyV1Api,
  setHeaderOptions,
  type KubeConfig,
  type V1Deployment,
  type V1PodDisruptionBudget,
  type V1Secret,
  type V1Service,
  type V1StatefulSet,
} from '@kubernetes/client-node';
import { isNotFound, kubeFailure } from './api-errors.ts';
import { FIELD_MANAGER } from './ownership.ts';

/** The kinds the operator owns, by kind name. */
export interface OwnedKinds {
  Secret: V1Secret;
  Service: V1Service;
  StatefulSet: V1StatefulSet;
  Deployment: V1Deployment;
  PodDisruptionBudget: V1PodDisruptionBudget;
}

/** A kind the operator owns. */
export type OwnedKind = keyof OwnedKinds;

/** One of the objects the operator owns, as rendered (kind and metadata set). */
export type OwnedObject = OwnedKinds[OwnedKind];

/** The calls of one kind. */
interface KindCalls<T> {
  patch(name: string, namespace: string, body: unknown, request: PatchRequest): Promise<T>;
  read(name: string, namespace: string): Promise<T>;
  remove(name: string, namespace: string): Promise<unknown>;
  list(namespace: string, labelSelector: string): Promise<T[]>;
}

/** Options of {@link OwnedObjects}. */
export interface OwnedObjectsOptions {
  /** The field manager of every apply (default `offtake-operator`). */
  fieldManager?: string;
  /** Send every apply as a server-side dry run: validated and admitted, never stored. */
  dryRun?: boolean;
}

/** How one patch is sent. */
interface PatchRequest {
  dryRun: string | undefined;
  /** Only for server-side apply. */
  force: boolean | undefined;
  options: ReturnType<typeof setHeaderOptions>;
}

const APPLY = setHeaderOptions('Content-Type', PatchStrategy.ServerSideApply);
const MERGE = setHeaderOptions('Content-Type', PatchStrategy.MergePatch);

/** Applies, reads, lists and deletes the objects the operator owns. */
export class OwnedObjects {
  private readonly calls: { [K in OwnedKind]: KindCalls<OwnedKinds[K]> };
  private readonly fieldManager: string;
  private readonly dryRun: string | undefined;

  constructor(kubeConfig: KubeConfig, options: OwnedObjectsOptions = {}) {
    const { fieldManager, dryRun } = { fieldManager: FIELD_MANAGER, dryRun: false, ...options };
    this.fieldManager = fieldManager;
    this.dryRun = dryRun ? 'All' : undefined;
    const core = kubeConfig.makeApiClient(CoreV1Api);
    const apps = kubeConfig.makeApiClient(AppsV1Api);
    const policy = kubeConfig.makeApiClient(PolicyV1Api);
    // Deletes use the default (background) propagation: the garbage collector removes the pods
    // and ReplicaSets after their owner, and no object waits on a foregroundDeletion finalizer.
    const fm = fieldManager;
    this.calls = {
      Secret: {
        patch: (name, namespace, body, { dryRun, force, options }) =>
          core.patchNamespacedSecret({ name, namespace, body, dryRun, fieldManager: fm, force }, options),
        read: (name, namespace) => core.readNamespacedSecret({ name, namespace }),
        remove: (name, namespace) => core.deleteNamespacedSecret({ name, namespace }),
        list: async (namespace, labelSelector) =>
          (await core.listNamespacedSecret({ namespace, labelSelector })).items,
      },
      Service: {
        patch: (name, namespace, body, { dryRun, force, options }) =>
          core.patchNamespacedService({ name, namespace, body, dryRun, fieldManager: fm, force }, options),
        read: (name, namespace) => core.readNamespacedService({ name, namespace }),
        remove: (name, namespace) => core.deleteNamespacedService({ name, namespace }),
        list: async (namespace, labelSelector) =>
          (await core.listNamespacedService({ namespace, labelSelector })).items,
      },
      StatefulSet: {
        patch: (name, namespace, body, { dryRun, force, options }) =>
          apps.patchNamespacedStatefulSet(
            { name, namespace, body, dryRun, fieldManager: fm, force },
            options,
          ),
        read: (name, namespace) => apps.readNamespacedStatefulSet({ name, namespace }),
        remove: (name, namespace) => apps.deleteNamespacedStatefulSet({ name, namespace }),
        list: async (namespace, labelSelector) =>
          (await apps.listNamespacedStatefulSet({ namespace, labelSelector })).items,
      },
      Deployment: {
        patch: (name, namespace, body, { dryRun, force, options }) =>
          apps.patchNamespacedDeployment({ name, namespace, body, dryRun, fieldManager: fm, force }, options),
        read: (name, namespace) => apps.readNamespacedDeployment({ name, namespace }),
        remove: (name, namespace) => apps.deleteNamespacedDeployment({ name, namespace }),
        list: async (namespace, labelSelector) =>
          (await apps.listNamespacedDeployment({ namespace, labelSelector })).items,
      },
      PodDisruptionBudget: {
        patch: (name, namespace, body, { dryRun, force, options }) =>
          policy.patchNamespacedPodDisruptionBudget(
            { name, namespace, body, dryRun, fieldManager: fm, force },
            options,
          ),
        read: (name, namespace) => policy.readNamespacedPodDisruptionBudget({ name, namespace }),
        remove: (name, namespace) => policy.deleteNamespacedPodDisruptionBudget({ name, namespace }),
        list: async (namespace, labelSelector) =>
          (await policy.listNamespacedPodDisruptionBudget({ namespace, labelSelector })).items,
      },
    };
  }

  /** The field manager every apply is sent under. */
  get manager(): string {
    return this.fieldManager;
  }

  /**
   * Applies `object` (server-side apply, forced: the operator is the only rightful manager of
   * the fields it renders, so a conflicting manual edit is taken back rather than failing the
   * reconcile). Returns the object as stored. Throws a {@link ProvisioningError}.
   */
  async apply<K extends OwnedKind>(kind: K, object: OwnedKinds[K]): Promise<OwnedKinds[K]> {
    const { name, namespace } = identity(kind, object);
    const body = { ...object, kind };
    try {
      return await this.calls[kind].patch(name, namespace, body, {
        dryRun: this.dryRun,
        force: true,
        options: APPLY,
      });
    } catch (err) {
      throw kubeFailure(err, `applying ${kind} ${namespace}/${name}`);
    }
  }

  /**
   * Changes a few fields of an existing object with a JSON merge patch, for a change that must
   * not restate the whole object (the operator may not know it any more, e.g. at teardown).
   */
  async mergePatch<K extends OwnedKind>(
    kind: K,
    namespace: string,
    name: string,
    patch: Record<string, unknown>,
  ): Promise<OwnedKinds[K]> {
    try {
      return await this.calls[kind].patch(name, namespace, patch, {
        dryRun: this.dryRun,
        force: undefined,
        options: MERGE,
      });
    } catch (err) {
      throw kubeFailure(err, `patching ${kind} ${namespace}/${name}`);
    }
  }

  /** Reads an object; undefined when it does not exist. */
  async read<K extends OwnedKind>(
    kind: K,
    namespace: string,
    name: string,
  ): Promise<OwnedKinds[K] | undefined> {
    try {
      return await this.calls[kind].read(name, namespace);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw kubeFailure(err, `reading ${kind} ${namespace}/${name}`);
    }
  }

  /** Lists the objects of a kind in a namespace that match a label selector. */
  async list<K extends OwnedKind>(
    kind: K,
    namespace: string,
    labelSelector: string,
  ): Promise<OwnedKinds[K][]> {
    try {
      return await this.calls[kind].list(namespace, labelSelector);
    } catch (err) {
      throw kubeFailure(err, `listing ${kind} in ${namespace}`);
    }
  }

  /** Deletes an object; false when it was already gone. */
  async delete(kind: OwnedKind, namespace: string, name: string): Promise<boolean> {
    try {
      await this.calls[kind].remove(name, namespace);
      return true;
    } catch (err) {
      if (isNotFound(err)) return false;
      throw kubeFailure(err, `deleting ${kind} ${namespace}/${name}`);
    }
  }
}

function identity(kind: string, object: OwnedObject): { name: string; namespace: string } {
  const name = object.metadata?.name;
  const namespace = object.metadata?.namespace;
  if (name === undefined || namespace === undefined) {
    throw new TypeError(`A ${kind} to apply needs metadata.name and metadata.namespace.`);
  }
  return { name, namespace };
}
