/**
 * Kubernetes mode's operator: the same controller, reconciler, provisioners and pipeline runtime
 * as embedded mode (`operator-parts.ts`), reading and writing DataProducts as custom resources in
 * the cluster, and provisioning shared-placement stores in the platform's Redis and Postgres from
 * the configuration. The cluster, Redis and Postgres are each checked at start-up; an unreachable
 * one (or a cluster without the DataProduct CRD) stops the start with a message naming it.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { KubeConfig } from '@kubernetes/client-node';
import type pg from 'pg';
import { connectRedis, createEventLog, redactUrl } from '../api/server.ts';
import type { OfftakeConfig } from '../lib/config.ts';
import { isOfftakeError } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import {
  KubernetesResourceStore,
  type KubernetesResourceStoreOptions,
} from '../lib/resource-store/kubernetes-resource-store.ts';
import type { DataProductController } from './controller.ts';
import { connectPostgres } from './embedded.ts';
import { startOperatorParts, type OperatorTuning } from './operator-parts.ts';

/** What the Kubernetes operator runs against, and its tuning. */
export interface KubernetesOperatorOptions extends OperatorTuning {
  /** Which cluster, as whom (a kubeconfig file, or the pod's service account in the cluster). */
  kubeConfig: KubeConfig;
  /** Tuning of the resource store (list pages, watch request length). */
  store?: Omit<KubernetesResourceStoreOptions, 'fieldManager'>;
  /** Milliseconds to wait for a Postgres connection before calling it unreachable (default 5000). */
  postgresConnectTimeoutMs?: number;
  /** Milliseconds to wait for an unavailable Kubernetes API at start-up before giving up (default 60000). */
  startTimeoutMs?: number;
}

/** A running Kubernetes-mode operator. */
export interface RunningKubernetesOperator {
  controller: DataProductController;
  /** The resource store over the cluster's DataProducts. */
  store: KubernetesResourceStore;
  /** Stops the operator and the workers (running batches drain) and closes connections. */
  close(): Promise<void>;
}

/**
 * Starts the operator (and, unless `inProcessWorkers` is false, pipeline workers) against the
 * cluster in `options.kubeConfig` and the platform's Redis and Postgres in `config`.
 */
export async function startKubernetesOperator(
  config: OfftakeConfig,
  logger: Logger,
  options: KubernetesOperatorOptions,
): Promise<RunningKubernetesOperator> {
  const closers: (() => Promise<unknown>)[] = [];
  const closeAll = async (): Promise<void> => {
    for (const close of closers.splice(0).reverse()) await close().catch(() => undefined);
  };
  try {
    const store = new KubernetesResourceStore(options.kubeConfig, {
      ...options.store,
      fieldManager: 'offtake-operator',
    });
    closers.push(() => store.close());
    await checkCluster(store, options.kubeConfig, logger, options.startTimeoutMs ?? 60_000);

    const redis = await connectRedis(config.redisUrl, logger);
    closers.push(() => {
      redis.disconnect();
      return Promise.resolve();
    });
    let pool: pg.Pool | undefined;
    if (config.postgresUrl !== undefined) {
      const opened = await connectPostgres(config.postgresUrl, logger, options.postgresConnectTimeoutMs);
      closers.push(() => opened.end());
      pool = opened;
    }
    const eventLog = await createEventLog(redis, config);
    closers.push(() => eventLog.close());

    const { controller } = await startOperatorParts(
      config,
      logger,
      options,
      { redis, pool, eventLog, store },
      closers,
    );
    logger.info(
      {
        cluster: options.kubeConfig.getCurrentCluster()?.server ?? null,
        redis: redactUrl(config.redisUrl),
        postgres: config.postgresUrl === undefined ? null : redactUrl(config.postgresUrl),
        workers: options.inProcessWorkers ?? true,
      },
      'offtake operator running (Kubernetes mode)',
    );
    return { controller, store, close: closeAll };
  } catch (err) {
    await closeAll();
    throw err;
  }
}

/**
 * Fails fast, naming the cluster, when it does not serve DataProducts (the CRD is missing) or
 * refuses the operator; waits, up to `timeoutMs`, while it is unavailable (starting up, or
 * initializing the storage of a CRD installed a moment ago).
 */
async function checkCluster(
  store: KubernetesResourceStore,
  kubeConfig: KubeConfig,
  logger: Logger,
  timeoutMs: number,
): Promise<void> {
  const server = kubeConfig.getCurrentCluster()?.server ?? '(no current cluster in the kubeconfig)';
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      await store.list({ labelSelector: 'offtake.dev/start-up-check' });
      return;
    } catch (err) {
      if (isOfftakeError(err, 'not-found')) {
        throw new Error(
          `the Kubernetes API at ${server} does not serve DataProducts: install the CRD first (kubectl apply -f crds/offtake.dev_dataproducts.yaml)`,
          { cause: err },
        );
      }
      if (!isOfftakeError(err, 'unavailable') || Date.now() >= deadline) {
        throw new Error(`cannot use the Kubernetes API at ${server}: ${(err as Error).message}`, {
          cause: err,
        });
      }
      logger.warn(
        { cluster: server, err: (err as Error).message },
        'Kubernetes API not available yet; retrying',
      );
      await sleep(1000);
    }
  }
}
