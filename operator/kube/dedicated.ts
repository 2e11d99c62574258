/**
 * Dedicated placement, as pure desired-state functions: which objects a product with
 * `placement: dedicated` gets — a Redis or Postgres StatefulSet, its headless Service, its
 * credentials Secret, its PodDisruptionBudget and a worker Deployment running `offtake worker` —
 * rendered from `templates/`, labelled, owned by the product, and how ready they are. Data in,
 * data out: `dedicated-placement.ts` applies them.
 */
import { createHash } from 'node:crypto';
import type {
  V1Deployment,
  V1EnvVar,
  V1PodDisruptionBudget,
  V1ResourceRequirements,
  V1Secret,
  V1Service,
  V1StatefulSet,
} from '@kubernetes/client-node';
import type { DataProductSpec } from '../../crds/generated/types.ts';
import { credentialsSecret, storeDisruptionBudget, storeService } from '../../templates/common.ts';
import { POSTGRES_PORT, postgresStatefulSet } from '../../templates/postgres.ts';
import { REDIS_PORT, redisStatefulSet } from '../../templates/redis.ts';
import { secretEnv, type StoreStatefulSetInput } from '../../templates/store-statefulset.ts';
import { workerDeployment } from '../../templates/worker.ts';
import type { ProductRef } from '../../worker/pipeline-keys.ts';
import type { ProductConnection } from '../product-connection.ts';
import { ProvisioningError } from '../provisioning-error.ts';
import { ownedMetadata, productSelector, type OwningProduct } from './ownership.ts';

/**
 * A product as dedicated placement reads it, and which build of its store: each build (a spec
 * change seeds a new one beside the current, blue/green) gets a store and a worker of its own.
 */
export interface DedicatedProduct extends OwningProduct {
  spec: DataProductSpec;
  /** The build (absent: 1). */
  build?: number;
}

/** Label naming the build an object belongs to; part of every dedicated workload's selector. */
export const BUILD_LABEL = 'offtake.dev/build';
/** Label naming the store type (`redis`, `postgres`) a dedicated object serves, worker included. */
export const STORE_TYPE_LABEL = 'offtake.dev/store';

/** The store engines dedicated placement runs. */
export type DedicatedStoreType = 'redis' | 'postgres';

/** Settings of dedicated placement, from the operator's configuration. */
export interface DedicatedOptions {
  /** The project's own image (entrypoint `offtake`), run by the worker Deployment. */
  image: string;
  imagePullPolicy?: string;
  redisImage: string;
  postgresImage: string;
  /** Size of each store's volume, e.g. `10Gi`; and its StorageClass (the cluster default when absent). */
  storageSize: string;
  storageClassName?: string;
  redisResources: V1ResourceRequirements;
  postgresResources: V1ResourceRequirements;
  workerResources: V1ResourceRequirements;
  workerReplicas: number;
  /** Platform settings every dedicated worker gets (e.g. OFFTAKE_REDIS_PREFIX, OFFTAKE_LOG_LEVEL). */
  workerEnv: V1EnvVar[];
  /**
   * The platform Redis URL the worker reads the event log and its queues from. It goes into a
   * Secret in the product's namespace (`<worker>-platform`), never into the Deployment itself.
   */
  platformRedisUrl?: string;
  /** The port of a worker's `/healthz` and `/readyz`. */
  workerHealthPort: number;
}

/** The defaults of {@link DedicatedOptions}. */
export const DEFAULT_DEDICATED_OPTIONS: DedicatedOptions = Object.freeze({
  image: 'offtake:0.1.0',
  redisImage: 'redis:7.4',
  postgresImage: 'postgres:17',
  storageSize: '10Gi',
  redisResources: { requests: { cpu: '100m', memory: '256Mi' }, limits: { cpu: '1', memory: '1Gi' } },
  postgresResources: { requests: { cpu: '250m', memory: '512Mi' }, limits: { cpu: '2', memory: '2Gi' } },
  workerResources: { requests: { cpu: '100m', memory: '256Mi' }, limits: { cpu: '1', memory: '1Gi' } },
  workerReplicas: 1,
  workerEnv: [],
  workerHealthPort: 9090,
});

/** The environment variables through which a dedicated worker learns its product and its store. */
export const WORKER_PRODUCT_ENV = 'OFFTAKE_WORKER_PRODUCT';
export const WORKER_STORE_URI_ENV = 'OFFTAKE_WORKER_STORE_URI';
export const WORKER_HEALTH_PORT_ENV = 'OFFTAKE_WORKER_HEALTH_PORT';
export const WORKER_BUILD_ENV = 'OFFTAKE_WORKER_BUILD';

/** The login and database a dedicated store is initialised with (the whole server is the product's). */
export const DEDICATED_USER = 'offtake';
export const DEDICATED_DATABASE = 'offtake';
/** Where a dedicated Redis keeps records: under this prefix, apart from the sink's own keys. */
export const DEDICATED_REDIS_KEY_PREFIX = 'records:';
/** The schema a dedicated Postgres keeps the product's table (view) in: the whole server is the product's. */
export const DEDICATED_POSTGRES_SCHEMA = 'public';

/** The longest StatefulSet name: its pods' controller-revision-hash label is `<name>-<10 chars>`. */
const MAX_STATEFULSET_NAME = 52;
const MAX_NAME = 63;

/**
 * A Kubernetes object name from a product name and a suffix: at most `max` characters and
 * starting with a letter (Service names are DNS-1035 labels; product names may start with a
 * digit). Too long a name is cut and gets a hash of the full one, so it stays unique.
 */
export function objectName(productName: string, suffix: string, max = MAX_NAME): string {
  const base = /^[a-z]/.test(productName) ? productName : `dp-${productName}`;
  const full = `${base}${suffix}`;
  if (full.length <= max) return full;
  const hash = createHash('sha256').update(full).digest('hex').slice(0, 8);
  return `${base.slice(0, max - suffix.length - hash.length - 1).replace(/-+$/, '')}-${hash}${suffix}`;
}

/** The names of a product build's dedicated objects. */
export interface DedicatedNames {
  /** The StatefulSet, its headless Service and its PodDisruptionBudget: `<name>-<type>` (`-b<N>` after build 1). */
  store: string;
  /** The store's credentials Secret: `<store>-credentials`. */
  credentials: string;
  /** The worker Deployment: `<name>-worker` (`-b<N>` after build 1). */
  worker: string;
  /** The Secret with the worker's platform settings: `<worker>-platform`. */
  platform: string;
}

/**
 * The names of a product build's dedicated objects for a store type. Named by type and build, so
 * a type change or a new build makes new ones beside the old.
 */
export function dedicatedNames(ref: ProductRef, type: DedicatedStoreType): DedicatedNames {
  const build = ref.build ?? 1;
  const suffix = build === 1 ? '' : `-b${build}`;
  const store = objectName(ref.name, `-${type}${suffix}`, MAX_STATEFULSET_NAME);
  const worker = objectName(ref.name, `-worker${suffix}`, MAX_NAME - '-platform'.length);
  return { store, credentials: `${store}-credentials`, worker, platform: `${worker}-platform` };
}

/** The store type of a dedicated product; throws a terminal {@link ProvisioningError} for a topic. */
export function dedicatedStoreType(spec: DataProductSpec): DedicatedStoreType {
  const type = spec.target.type;
  if (type === 'topic') {
    throw new ProvisioningError(
      'DedicatedTopicUnsupported',
      'A topic is a stream in the event log, which has no dedicated server; use placement: shared for topic targets.',
      { terminal: true },
    );
  }
  return type;
}

/** The product build a dedicated product names (namespace, name, build). */
export function dedicatedRef(product: DedicatedProduct): ProductRef {
  const { namespace, name } = product.metadata;
  return product.build === undefined ? { namespace, name } : { namespace, name, build: product.build };
}

/** The metadata of a dedicated object of a product build: owned, labelled with the build. */
function buildMetadata(product: DedicatedProduct, name: string, role: { app: string; component: string }) {
  const metadata = ownedMetadata(product, name, role);
  metadata.labels = {
    ...metadata.labels,
    [BUILD_LABEL]: String(product.build ?? 1),
    [STORE_TYPE_LABEL]: dedicatedStoreType(product.spec),
  };
  return metadata;
}

/** The selector of a product build's pods of one component (builds run side by side). */
function buildSelector(product: DedicatedProduct, component: string): Record<string, string> {
  return { ...productSelector(product, component), [BUILD_LABEL]: String(product.build ?? 1) };
}

function storeRole(type: DedicatedStoreType) {
  return { app: type, component: 'store' };
}

const WORKER_ROLE = { app: 'offtake-worker', component: 'worker' };

/** The in-cluster host name of a product's store: its headless Service. */
export function storeHost(product: DedicatedProduct, type: DedicatedStoreType): string {
  return `${dedicatedNames(dedicatedRef(product), type).store}.${product.metadata.namespace}.svc`;
}

/** How to connect to a product's dedicated store (what its connection Secret holds). Pure. */
export function dedicatedConnection(product: DedicatedProduct, password: string): ProductConnection {
  const type = dedicatedStoreType(product.spec);
  const host = storeHost(product, type);
  const secret = encodeURIComponent(password);
  if (type === 'redis') {
    return {
      type,
      uri: `redis://default:${secret}@${host}:${REDIS_PORT}/0`,
      host,
      port: REDIS_PORT,
      // Redis's requirepass is the password of its `default` user; clients send AUTH <password>.
      user: 'default',
      password,
      database: '0',
      keyPrefix: DEDICATED_REDIS_KEY_PREFIX,
    };
  }
  return {
    type,
    uri: `postgresql://${DEDICATED_USER}:${secret}@${host}:${POSTGRES_PORT}/${DEDICATED_DATABASE}`,
    host,
    port: POSTGRES_PORT,
    user: DEDICATED_USER,
    password,
    database: DEDICATED_DATABASE,
    schema: DEDICATED_POSTGRES_SCHEMA,
    table: product.spec.target.postgres?.table,
  };
}

/** The credentials Secret of a product's store, with `password` (and the store's `uri`). Pure. */
export function desiredCredentialsSecret(product: DedicatedProduct, password: string): V1Secret {
  const type = dedicatedStoreType(product.spec);
  const names = dedicatedNames(dedicatedRef(product), type);
  const connection = dedicatedConnection(product, password);
  return credentialsSecret({
    metadata: buildMetadata(product, names.credentials, storeRole(type)),
    values: { user: connection.user, password, uri: connection.uri },
  });
}

function storeInput(product: DedicatedProduct, options: DedicatedOptions): StoreStatefulSetInput {
  const type = dedicatedStoreType(product.spec);
  const names = dedicatedNames(dedicatedRef(product), type);
  return {
    metadata: buildMetadata(product, names.store, storeRole(type)),
    selector: buildSelector(product, 'store'),
    serviceName: names.store,
    credentialsSecret: names.credentials,
    image: type === 'redis' ? options.redisImage : options.postgresImage,
    imagePullPolicy: options.imagePullPolicy,
    resources: type === 'redis' ? options.redisResources : options.postgresResources,
    storage: { size: options.storageSize, className: options.storageClassName },
    retainVolume: product.spec.deletionPolicy === 'Retain',
  };
}

/** The StatefulSet of a product's store. Pure. */
export function desiredStatefulSet(
  product: DedicatedProduct,
  options: DedicatedOptions = DEFAULT_DEDICATED_OPTIONS,
): V1StatefulSet {
  const input = storeInput(product, options);
  if (dedicatedStoreType(product.spec) === 'redis') return redisStatefulSet(input);
  return postgresStatefulSet({ ...input, user: DEDICATED_USER, database: DEDICATED_DATABASE });
}

/** The headless Service of a product's store. Pure. */
export function desiredService(product: DedicatedProduct): V1Service {
  const type = dedicatedStoreType(product.spec);
  const names = dedicatedNames(dedicatedRef(product), type);
  return storeService({
    metadata: buildMetadata(product, names.store, storeRole(type)),
    selector: buildSelector(product, 'store'),
    port: type === 'redis' ? { name: 'redis', port: REDIS_PORT } : { name: 'postgres', port: POSTGRES_PORT },
  });
}

/** The PodDisruptionBudget of a product's store. Pure. */
export function desiredPodDisruptionBudget(product: DedicatedProduct): V1PodDisruptionBudget {
  const type = dedicatedStoreType(product.spec);
  return storeDisruptionBudget({
    metadata: buildMetadata(product, dedicatedNames(dedicatedRef(product), type).store, storeRole(type)),
    selector: buildSelector(product, 'store'),
  });
}

/** The worker Deployment of a product: `offtake worker` for this product, writing to its store. Pure. */
export function desiredWorkerDeployment(
  product: DedicatedProduct,
  options: DedicatedOptions = DEFAULT_DEDICATED_OPTIONS,
): V1Deployment {
  const type = dedicatedStoreType(product.spec);
  const names = dedicatedNames(dedicatedRef(product), type);
  return workerDeployment({
    metadata: buildMetadata(product, names.worker, WORKER_ROLE),
    selector: buildSelector(product, 'worker'),
    image: options.image,
    imagePullPolicy: options.imagePullPolicy,
    replicas: options.workerReplicas,
    env: [
      ...options.workerEnv,
      { name: WORKER_PRODUCT_ENV, value: `${product.metadata.namespace}/${product.metadata.name}` },
      { name: WORKER_BUILD_ENV, value: String(product.build ?? 1) },
      secretEnv(WORKER_STORE_URI_ENV, names.credentials, 'uri'),
      ...(options.platformRedisUrl === undefined
        ? []
        : [secretEnv('OFFTAKE_REDIS_URL', names.platform, 'redisUrl')]),
      { name: WORKER_HEALTH_PORT_ENV, value: String(options.workerHealthPort) },
    ],
    resources: options.workerResources,
    healthPort: options.workerHealthPort,
  });
}

/** The Secret with a dedicated worker's platform settings (the platform Redis URL). Pure. */
export function desiredPlatformSecret(product: DedicatedProduct, redisUrl: string): V1Secret {
  const names = dedicatedNames(dedicatedRef(product), dedicatedStoreType(product.spec));
  return credentialsSecret({
    metadata: buildMetadata(product, names.platform, WORKER_ROLE),
    values: { redisUrl },
  });
}

/** Everything a dedicated product gets, in the order to apply it (the Secrets before their readers). */
export interface DedicatedObjects {
  /** The worker's platform settings; absent when no platform Redis URL is configured. */
  platform?: V1Secret;
  credentials: V1Secret;
  service: V1Service;
  statefulSet: V1StatefulSet;
  disruptionBudget: V1PodDisruptionBudget;
  worker: V1Deployment;
}

/** All of a dedicated product's objects. Pure. */
export function desiredDedicatedObjects(
  product: DedicatedProduct,
  password: string,
  options: DedicatedOptions = DEFAULT_DEDICATED_OPTIONS,
): DedicatedObjects {
  return {
    ...(options.platformRedisUrl === undefined
      ? {}
      : { platform: desiredPlatformSecret(product, options.platformRedisUrl) }),
    credentials: desiredCredentialsSecret(product, password),
    service: desiredService(product),
    statefulSet: desiredStatefulSet(product, options),
    disruptionBudget: desiredPodDisruptionBudget(product),
    worker: desiredWorkerDeployment(product, options),
  };
}

/** Whether a product's dedicated workloads are ready, and if not, why (for its StoreReady condition). */
export type DedicatedReadiness =
  { ready: true; message: string } | { ready: false; reason: string; message: string };

/**
 * How ready a product's store and worker are, read from their status the way `kubectl rollout
 * status` does: the controller has seen the latest spec (observedGeneration), every replica runs
 * the latest revision, and enough are ready. Waiting is `WaitingForStore`/`WaitingForWorker`
 * (progress); a Deployment past its progress deadline is `WorkerRolloutFailed`.
 */
export function dedicatedReadiness(
  statefulSet: V1StatefulSet | undefined,
  deployment: V1Deployment | undefined,
): DedicatedReadiness {
  const store = statefulSetReadiness(statefulSet);
  if (!store.ready) return store;
  const worker = deploymentReadiness(deployment);
  if (!worker.ready) return worker;
  return { ready: true, message: `${store.message} ${worker.message}` };
}

function statefulSetReadiness(sts: V1StatefulSet | undefined): DedicatedReadiness {
  const waiting = (message: string): DedicatedReadiness => ({
    ready: false,
    reason: 'WaitingForStore',
    message,
  });
  if (sts === undefined) return waiting('The store StatefulSet does not exist yet.');
  const name = `StatefulSet ${sts.metadata?.name ?? '?'}`;
  const status = sts.status;
  const want = sts.spec?.replicas ?? 1;
  if (status === undefined || (status.observedGeneration ?? 0) < (sts.metadata?.generation ?? 0))
    return waiting(`${name}: waiting for the controller to see the latest spec.`);
  const updated = status.updatedReplicas ?? 0;
  const ready = status.readyReplicas ?? 0;
  if (updated < want) return waiting(`${name}: ${updated} of ${want} replicas run the latest revision.`);
  if (ready < want) return waiting(`${name}: ${ready} of ${want} replicas ready.`);
  if (status.updateRevision !== undefined && status.currentRevision !== status.updateRevision)
    return waiting(`${name}: rolling out revision ${status.updateRevision}.`);
  return { ready: true, message: `${name}: ${ready} of ${want} ready.` };
}

function deploymentReadiness(deployment: V1Deployment | undefined): DedicatedReadiness {
  const waiting = (message: string): DedicatedReadiness => ({
    ready: false,
    reason: 'WaitingForWorker',
    message,
  });
  if (deployment === undefined) return waiting('The worker Deployment does not exist yet.');
  const name = `Deployment ${deployment.metadata?.name ?? '?'}`;
  const status = deployment.status;
  const want = deployment.spec?.replicas ?? 1;
  if (status === undefined || (status.observedGeneration ?? 0) < (deployment.metadata?.generation ?? 0))
    return waiting(`${name}: waiting for the controller to see the latest spec.`);
  const progressing = status.conditions?.find((c) => c.type === 'Progressing');
  if (progressing?.status === 'False' && progressing.reason === 'ProgressDeadlineExceeded') {
    return {
      ready: false,
      reason: 'WorkerRolloutFailed',
      message: `${name}: the rollout stalled: ${progressing.message ?? 'progress deadline exceeded'}`,
    };
  }
  const updated = status.updatedReplicas ?? 0;
  const available = status.availableReplicas ?? 0;
  const total = status.replicas ?? 0;
  if (updated < want) return waiting(`${name}: ${updated} of ${want} replicas run the latest revision.`);
  if (total > updated) return waiting(`${name}: ${total - updated} old replicas are still terminating.`);
  if (available < want) return waiting(`${name}: ${available} of ${want} replicas available.`);
  return { ready: true, message: `${name}: ${available} of ${want} available.` };
}
