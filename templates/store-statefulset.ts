/**
 * The StatefulSet shape every dedicated store shares: one replica, its governing headless
 * Service, a persistent volume per pod, hardened pod and container security, and a PVC
 * retention policy that follows the product's `deletionPolicy`. The engine templates
 * (`redis.ts`, `postgres.ts`) fill in the container.
 */
import type {
  V1Container,
  V1ObjectMeta,
  V1ResourceRequirements,
  V1StatefulSet,
  V1Volume,
} from '@kubernetes/client-node';
import { STORE_USER_ID, podSecurityContext } from './common.ts';

/** The name of the data volume (and of the volumeClaimTemplate that makes it). */
export const DATA_VOLUME = 'data';

/** What a store StatefulSet is made of, apart from its engine. */
export interface StoreStatefulSetInput {
  /** Name, namespace, labels and owner references (pod and PVC labels too). */
  metadata: V1ObjectMeta;
  /** The pods' selector: labels that never change for the life of the StatefulSet. */
  selector: Record<string, string>;
  /** The governing headless Service. */
  serviceName: string;
  /** The Secret holding the store's `password`. */
  credentialsSecret: string;
  image: string;
  imagePullPolicy?: string;
  resources: V1ResourceRequirements;
  storage: { size: string; className?: string };
  /** Keep the volume when the StatefulSet is deleted (the product's `deletionPolicy: Retain`). */
  retainVolume: boolean;
}

/** The engine's part of a store StatefulSet. */
export interface StoreEngine {
  container: V1Container;
  /** Scratch volumes the container mounts besides its data volume (its root filesystem is read-only). */
  volumes?: V1Volume[];
  terminationGracePeriodSeconds: number;
}

/** A store StatefulSet around an engine's container. */
export function storeStatefulSet(input: StoreStatefulSetInput, engine: StoreEngine): V1StatefulSet {
  const labels = input.metadata.labels ?? {};
  return {
    apiVersion: 'apps/v1',
    kind: 'StatefulSet',
    metadata: input.metadata,
    spec: {
      replicas: 1,
      serviceName: input.serviceName,
      selector: { matchLabels: input.selector },
      podManagementPolicy: 'OrderedReady',
      updateStrategy: { type: 'RollingUpdate' },
      persistentVolumeClaimRetentionPolicy: {
        whenDeleted: input.retainVolume ? 'Retain' : 'Delete',
        whenScaled: 'Retain',
      },
      template: {
        metadata: { labels },
        spec: {
          securityContext: podSecurityContext(STORE_USER_ID),
          // A store never talks to the Kubernetes API and needs no Service environment variables.
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          terminationGracePeriodSeconds: engine.terminationGracePeriodSeconds,
          containers: [engine.container],
          ...(engine.volumes === undefined ? {} : { volumes: engine.volumes }),
        },
      },
      volumeClaimTemplates: [
        {
          apiVersion: 'v1',
          kind: 'PersistentVolumeClaim',
          metadata: { name: DATA_VOLUME, labels },
          spec: {
            accessModes: ['ReadWriteOnce'],
            resources: { requests: { storage: input.storage.size } },
            ...(input.storage.className === undefined ? {} : { storageClassName: input.storage.className }),
          },
        },
      ],
    },
  };
}

/** An env var read from a key of the store's credentials Secret. */
export function secretEnv(name: string, secret: string, key: string) {
  return { name, valueFrom: { secretKeyRef: { name: secret, key } } };
}
