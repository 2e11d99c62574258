/**
 * Dedicated placement's settings from the operator's environment: the images, the volume size
 * and class, and the settings every dedicated worker gets (key prefix, log level). Its platform
 * credential is made per build by `dedicated-worker-access.ts`.
 */
import type { OfftakeConfig } from '../../lib/config.ts';
import { DEFAULT_DEDICATED_OPTIONS, type DedicatedOptions } from './dedicated.ts';

const QUANTITY = /^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$/;
const PULL_POLICIES = ['Always', 'IfNotPresent', 'Never'];

/**
 * Reads `OFFTAKE_DEDICATED_*` from `env`: `IMAGE` (the project's own image, which the workers
 * run), `REDIS_IMAGE`, `POSTGRES_IMAGE`, `IMAGE_PULL_POLICY`, `STORAGE_SIZE` (e.g. `10Gi`),
 * `STORAGE_CLASS`, `WORKER_REPLICAS`. Throws an Error naming the variable when one is malformed.
 */
export function dedicatedOptionsFromEnv(
  env: Record<string, string | undefined>,
  config: OfftakeConfig,
): DedicatedOptions {
  const d = DEFAULT_DEDICATED_OPTIONS;
  const storageSize = env.OFFTAKE_DEDICATED_STORAGE_SIZE || d.storageSize;
  if (!QUANTITY.test(storageSize)) {
    throw new Error(
      `OFFTAKE_DEDICATED_STORAGE_SIZE must be a Kubernetes quantity such as 10Gi, got "${storageSize}".`,
    );
  }
  const pullPolicy = env.OFFTAKE_DEDICATED_IMAGE_PULL_POLICY || undefined;
  if (pullPolicy !== undefined && !PULL_POLICIES.includes(pullPolicy)) {
    throw new Error(`OFFTAKE_DEDICATED_IMAGE_PULL_POLICY must be one of ${PULL_POLICIES.join(', ')}.`);
  }
  const replicasText = env.OFFTAKE_DEDICATED_WORKER_REPLICAS || String(d.workerReplicas);
  const workerReplicas = Number(replicasText);
  if (!Number.isSafeInteger(workerReplicas) || workerReplicas < 1 || workerReplicas > 16) {
    throw new Error(
      `OFFTAKE_DEDICATED_WORKER_REPLICAS must be an integer from 1 to 16, got "${replicasText}".`,
    );
  }
  const storageClassName = env.OFFTAKE_DEDICATED_STORAGE_CLASS || undefined;
  return {
    ...d,
    image: env.OFFTAKE_DEDICATED_IMAGE || d.image,
    redisImage: env.OFFTAKE_DEDICATED_REDIS_IMAGE || d.redisImage,
    postgresImage: env.OFFTAKE_DEDICATED_POSTGRES_IMAGE || d.postgresImage,
    ...(pullPolicy === undefined ? {} : { imagePullPolicy: pullPolicy }),
    storageSize,
    ...(storageClassName === undefined ? {} : { storageClassName }),
    workerReplicas,
    workerEnv: [
      { name: 'OFFTAKE_REDIS_PREFIX', value: config.redisPrefix },
      // A worker appends only dead letters, never events anyone waits on; checking the server's
      // persistence needs CONFIG GET, which its credential does not have (the API and operator check it).
      { name: 'OFFTAKE_EVENTLOG_DURABILITY', value: 'none' },
      { name: 'OFFTAKE_LOG_LEVEL', value: config.logLevel },
    ],
  };
}
