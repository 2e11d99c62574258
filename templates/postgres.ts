/**
 * A dedicated Postgres store: the official image initialising its cluster on first start with
 * the product's user, password and database, data in a subdirectory of its own volume (a fresh
 * volume's lost+found would stop initdb), `pg_isready` as readiness and TCP as liveness, and
 * scratch volumes for the socket directory and /tmp (the root filesystem is read-only).
 */
import type { V1StatefulSet } from '@kubernetes/client-node';
import { containerSecurityContext } from './common.ts';
import { DATA_VOLUME, secretEnv, storeStatefulSet, type StoreStatefulSetInput } from './store-statefulset.ts';

/** Postgres's port. */
export const POSTGRES_PORT = 5432;

/** What a Postgres store is initialised with, besides its password. */
export interface PostgresStoreInput extends StoreStatefulSetInput {
  user: string;
  database: string;
}

const DATA_DIR = '/var/lib/postgresql/data';

/** The StatefulSet of a dedicated Postgres store. */
export function postgresStatefulSet(input: PostgresStoreInput): V1StatefulSet {
  return storeStatefulSet(input, {
    // Postgres's fast shutdown checkpoints first; give it time on a busy volume.
    terminationGracePeriodSeconds: 60,
    volumes: [
      { name: 'run', emptyDir: {} },
      { name: 'tmp', emptyDir: {} },
    ],
    container: {
      name: 'postgres',
      image: input.image,
      ...(input.imagePullPolicy === undefined ? {} : { imagePullPolicy: input.imagePullPolicy }),
      env: [
        { name: 'POSTGRES_USER', value: input.user },
        { name: 'POSTGRES_DB', value: input.database },
        secretEnv('POSTGRES_PASSWORD', input.credentialsSecret, 'password'),
        { name: 'PGDATA', value: `${DATA_DIR}/pgdata` },
      ],
      ports: [{ name: 'postgres', containerPort: POSTGRES_PORT, protocol: 'TCP' }],
      resources: input.resources,
      readinessProbe: {
        exec: {
          command: [
            'pg_isready',
            '-h',
            '127.0.0.1',
            '-p',
            String(POSTGRES_PORT),
            '-U',
            input.user,
            '-d',
            input.database,
          ],
        },
        initialDelaySeconds: 5,
        periodSeconds: 5,
        timeoutSeconds: 3,
        failureThreshold: 3,
      },
      livenessProbe: {
        tcpSocket: { port: 'postgres' },
        initialDelaySeconds: 30,
        periodSeconds: 10,
        timeoutSeconds: 3,
        failureThreshold: 6,
      },
      securityContext: containerSecurityContext(),
      volumeMounts: [
        { name: DATA_VOLUME, mountPath: DATA_DIR },
        { name: 'run', mountPath: '/var/run/postgresql' },
        { name: 'tmp', mountPath: '/tmp' },
      ],
    },
  });
}
