/**
 * What every workload the operator renders shares: hardened security contexts, the headless
 * Service of a store, its PodDisruptionBudget and its credentials Secret. The templates take
 * plain parameters (names, labels, images, sizes) and know nothing of DataProducts;
 * `operator/kube/dedicated.ts` decides which product gets which.
 */
import type {
  V1ObjectMeta,
  V1PodDisruptionBudget,
  V1PodSecurityContext,
  V1Secret,
  V1SecurityContext,
  V1Service,
} from '@kubernetes/client-node';

/** The uid and gid the official redis and postgres (Debian) images run their server as. */
export const STORE_USER_ID = 999;
/** The uid of the `node` user in the project's image (node:24). */
export const WORKER_USER_ID = 1000;

/** The pod security context of a workload running as `uid`: non-root, default seccomp profile. */
export function podSecurityContext(uid: number): V1PodSecurityContext {
  return {
    runAsNonRoot: true,
    runAsUser: uid,
    runAsGroup: uid,
    // Makes the data volume writable by the server without a root init container.
    fsGroup: uid,
    fsGroupChangePolicy: 'OnRootMismatch',
    seccompProfile: { type: 'RuntimeDefault' },
  };
}

/** A container that cannot gain privileges, holds no capabilities and writes only its volumes. */
export function containerSecurityContext(): V1SecurityContext {
  return {
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ['ALL'] },
  };
}

/** Parameters of {@link storeService}. */
export interface StoreServiceInput {
  metadata: V1ObjectMeta;
  selector: Record<string, string>;
  port: { name: string; port: number };
}

/**
 * The headless Service of a store: the StatefulSet's governing Service, and the stable DNS name
 * (`<name>.<namespace>.svc`) clients connect to. Headless, so a client reaches the pod directly
 * and only once it is ready.
 */
export function storeService(input: StoreServiceInput): V1Service {
  return {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: input.metadata,
    spec: {
      clusterIP: 'None',
      selector: input.selector,
      ports: [{ name: input.port.name, port: input.port.port, targetPort: input.port.name, protocol: 'TCP' }],
      publishNotReadyAddresses: false,
    },
  };
}

/** Parameters of {@link storeDisruptionBudget}. */
export interface DisruptionBudgetInput {
  metadata: V1ObjectMeta;
  selector: Record<string, string>;
}

/**
 * The PodDisruptionBudget of a single-replica store: a voluntary eviction (a node drain) waits
 * until someone moves the store deliberately, rather than cutting its users off. A pod that is
 * not running anyway may always be evicted, so a broken store never blocks a drain.
 */
export function storeDisruptionBudget(input: DisruptionBudgetInput): V1PodDisruptionBudget {
  return {
    apiVersion: 'policy/v1',
    kind: 'PodDisruptionBudget',
    metadata: input.metadata,
    spec: {
      minAvailable: 1,
      selector: { matchLabels: input.selector },
      unhealthyPodEvictionPolicy: 'AlwaysAllow',
    },
  };
}

/** Parameters of {@link credentialsSecret}. */
export interface CredentialsSecretInput {
  metadata: V1ObjectMeta;
  /** Plain-text values; stored base64-encoded in `data`. */
  values: Record<string, string>;
}

/** A store's credentials Secret, read by the store and its worker through secretKeyRefs. */
export function credentialsSecret(input: CredentialsSecretInput): V1Secret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: input.metadata,
    type: 'Opaque',
    data: Object.fromEntries(
      Object.entries(input.values).map(([key, value]) => [
        key,
        Buffer.from(value, 'utf8').toString('base64'),
      ]),
    ),
  };
}
