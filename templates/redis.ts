/**
 * A dedicated Redis store: redis-server with a password, append-only persistence (fsync every
 * second) on its own volume, a PING readiness probe and a TCP liveness probe (a server loading a
 * large AOF answers LOADING to PING but is alive).
 */
import type { V1StatefulSet } from '@kubernetes/client-node';
import { containerSecurityContext } from './common.ts';
import { DATA_VOLUME, secretEnv, storeStatefulSet, type StoreStatefulSetInput } from './store-statefulset.ts';

/** Redis's port. */
export const REDIS_PORT = 6379;

/** The StatefulSet of a dedicated Redis store. */
export function redisStatefulSet(input: StoreStatefulSetInput): V1StatefulSet {
  return storeStatefulSet(input, {
    terminationGracePeriodSeconds: 30,
    container: {
      name: 'redis',
      image: input.image,
      ...(input.imagePullPolicy === undefined ? {} : { imagePullPolicy: input.imagePullPolicy }),
      command: ['redis-server'],
      // $(REDIS_PASSWORD) is expanded by the kubelet from the env below.
      args: [
        '--port',
        String(REDIS_PORT),
        '--requirepass',
        '$(REDIS_PASSWORD)',
        '--appendonly',
        'yes',
        '--appendfsync',
        'everysec',
        '--dir',
        '/data',
      ],
      env: [
        secretEnv('REDIS_PASSWORD', input.credentialsSecret, 'password'),
        // redis-cli reads it, so the probe does not put the password on a command line.
        secretEnv('REDISCLI_AUTH', input.credentialsSecret, 'password'),
      ],
      ports: [{ name: 'redis', containerPort: REDIS_PORT, protocol: 'TCP' }],
      resources: input.resources,
      readinessProbe: {
        exec: { command: ['sh', '-c', `redis-cli -p ${REDIS_PORT} ping | grep -q PONG`] },
        initialDelaySeconds: 2,
        periodSeconds: 5,
        timeoutSeconds: 3,
        failureThreshold: 3,
      },
      livenessProbe: {
        tcpSocket: { port: 'redis' },
        initialDelaySeconds: 15,
        periodSeconds: 10,
        timeoutSeconds: 3,
        failureThreshold: 6,
      },
      securityContext: containerSecurityContext(),
      volumeMounts: [{ name: DATA_VOLUME, mountPath: '/data' }],
    },
  });
}
