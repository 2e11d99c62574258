/**
 * The pipeline worker Deployment of a dedicated product: the project's own image running
 * `offtake worker`, with its settings in the environment, health probes on its health port,
 * and a grace period long enough to drain (running chunks save their cursor, tails commit).
 */
import type { V1Deployment, V1EnvVar, V1ObjectMeta, V1ResourceRequirements } from '@kubernetes/client-node';
import { WORKER_USER_ID, containerSecurityContext, podSecurityContext } from './common.ts';

/** What a worker Deployment is made of. */
export interface WorkerDeploymentInput {
  /** Name, namespace, labels and owner references (pod labels too). */
  metadata: V1ObjectMeta;
  /** The pods' selector: labels that never change for the life of the Deployment. */
  selector: Record<string, string>;
  /** The project's image; its entrypoint is `offtake`. */
  image: string;
  imagePullPolicy?: string;
  replicas: number;
  env: V1EnvVar[];
  resources: V1ResourceRequirements;
  /** The port of the worker's `/healthz` and `/readyz`. */
  healthPort: number;
}

/** How long a worker may take to drain after SIGTERM. */
export const WORKER_GRACE_SECONDS = 60;

/** The Deployment of a product's pipeline workers. */
export function workerDeployment(input: WorkerDeploymentInput): V1Deployment {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: input.metadata,
    spec: {
      replicas: input.replicas,
      selector: { matchLabels: input.selector },
      strategy: { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 0, maxSurge: 1 } },
      template: {
        metadata: { labels: input.metadata.labels ?? {} },
        spec: {
          securityContext: podSecurityContext(WORKER_USER_ID),
          // A worker reads the event log and writes its store; it never calls the Kubernetes API.
          automountServiceAccountToken: false,
          enableServiceLinks: false,
          terminationGracePeriodSeconds: WORKER_GRACE_SECONDS,
          containers: [
            {
              name: 'worker',
              image: input.image,
              ...(input.imagePullPolicy === undefined ? {} : { imagePullPolicy: input.imagePullPolicy }),
              args: ['worker'],
              env: input.env,
              ports: [{ name: 'health', containerPort: input.healthPort, protocol: 'TCP' }],
              resources: input.resources,
              readinessProbe: {
                httpGet: { path: '/readyz', port: 'health' },
                periodSeconds: 10,
                timeoutSeconds: 3,
                failureThreshold: 3,
              },
              livenessProbe: {
                httpGet: { path: '/healthz', port: 'health' },
                initialDelaySeconds: 10,
                periodSeconds: 20,
                timeoutSeconds: 3,
                failureThreshold: 3,
              },
              securityContext: containerSecurityContext(),
              volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }],
            },
          ],
          volumes: [{ name: 'tmp', emptyDir: {} }],
        },
      },
    },
  };
}
