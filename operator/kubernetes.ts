/**
 * Kubernetes mode's operator: the same controller, reconciler, provisioners and pipeline runtime
 * as embedded mode (`operator-parts.ts`), reading and writing DataProducts as custom resources in
 * the cluster, provisioning shared-placement stores in the platform's Redis and Postgres from
 * the configuration and dedicated ones as workloads in the product's namespace. The cluster, Redis and Postgres are each checked at start-up; an unreachable
 * one (or a cluster without the DataProduct CRD) stops the start with a message naming it.
 * With leader election, replicas share a Lease and only its holder runs the controller; the
 * reconciler's writes also record Events on the product and keep its connection Secret
 * (`kube/product-side-effects.ts`).
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
import { ConnectionSecrets } from './kube/connection-secret.ts';
import { dedicatedOptionsFromEnv } from './kube/dedicated-config.ts';
import { DedicatedPlacement } from './kube/dedicated-placement.ts';
import { DedicatedProvisioner } from './kube/dedicated-provisioner.ts';
import { DedicatedWorkerAccess } from './kube/dedicated-worker-access.ts';
import type { DedicatedOptions } from './kube/dedicated.ts';
import { EventRecorder } from './kube/events.ts';
import { LeaderElector } from './kube/leader-election.ts';
import { OfftakeMetrics } from '../lib/metrics.ts';
import { startHealthServer } from '../worker/health-server.ts';
import { OwnedObjects } from './kube/owned-objects.ts';
import { SideEffectsStore } from './kube/product-side-effects.ts';
import { startOperatorParts, type OperatorTuning } from './operator-parts.ts';
import { ProductRecords } from './product-records.ts';

/** Where the operator's replicas elect the one that reconciles, and the election's timings. */
export interface OperatorLeaderElection {
  /** The Lease's namespace (e.g. the operator's own, from POD_NAMESPACE). */
  namespace: string;
  /** The Lease's name (default `offtake-operator`). */
  name?: string;
  /** This replica's identity, unique among the replicas (e.g. hostname + random). */
  identity: string;
  leaseDurationMs?: number;
  renewDeadlineMs?: number;
  retryPeriodMs?: number;
}

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
  /**
   * Run the controller (the reconciles) only while this replica holds the Lease; without it,
   * the controller runs at once (a single replica).
   */
  leaderElection?: OperatorLeaderElection;
  /** Dedicated placement's settings (default: from `OFFTAKE_DEDICATED_*`, see `kube/dedicated-config.ts`). */
  dedicated?: DedicatedOptions;
}

/** A running Kubernetes-mode operator. */
export interface RunningKubernetesOperator {
  /** The running controller; undefined while this replica does not lead (with leader election). */
  readonly controller: DataProductController | undefined;
  /** Whether this replica reconciles now: it leads, or runs without leader election. */
  isLeader(): boolean;
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
  const metrics = options.metrics ?? new OfftakeMetrics();
  let started = false;
  try {
    // Listening first: liveness answers while the rest starts, and readiness says it is starting.
    if (config.operatorHealthPort !== undefined) {
      const health = await startHealthServer({
        port: config.operatorHealthPort,
        ready: () => Promise.resolve(started || 'the operator is starting'),
        metrics,
      });
      closers.push(() => health.close());
    }
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

    const election = options.leaderElection;
    // The reconciler's writes go through a store that adds Kubernetes mode's Events on the
    // product and its connection Secret.
    const objects = new OwnedObjects(options.kubeConfig);
    const reconciled = new SideEffectsStore({
      store,
      objects,
      secrets: new ConnectionSecrets(objects),
      events: new EventRecorder(options.kubeConfig, {
        instance: election?.identity,
        onError: (err, event) =>
          logger.warn({ reason: event.reason, err: (err as Error).message }, 'cannot record an Event'),
      }),
      connections: ProductRecords.forPlatform(redis, config.redisPrefix),
      logger,
    });
    // Dedicated placement: each product build's own server and worker, as objects in its namespace.
    const dedicated = options.dedicated ?? dedicatedOptionsFromEnv(process.env, config);
    // Each build's worker reaches the platform Redis with a credential limited to that build.
    const access = new DedicatedWorkerAccess({
      redis,
      url: config.redisUrl,
      prefix: config.redisPrefix,
      records: ProductRecords.forPlatform(redis, config.redisPrefix),
    });
    const extraProvisioners = {
      'dedicated-redis': new DedicatedProvisioner(
        new DedicatedPlacement(objects, 'redis', dedicated),
        access,
      ),
      'dedicated-postgres': new DedicatedProvisioner(
        new DedicatedPlacement(objects, 'postgres', dedicated),
        access,
      ),
    };
    const parts = await startOperatorParts(
      config,
      logger,
      { ...options, metrics },
      { redis, pool, eventLog, store: reconciled, extraProvisioners },
      closers,
      election === undefined,
    );
    let controller: DataProductController | undefined = election === undefined ? parts.controller : undefined;
    let elector: LeaderElector | undefined;
    if (election !== undefined) {
      // Terms of leadership run one after the other: a term's controller has stopped (its
      // reconciles finished) before the next starts, and before the Lease is released.
      let terms: Promise<void> = Promise.resolve();
      const lease = { namespace: election.namespace, name: election.name ?? 'offtake-operator' };
      elector = new LeaderElector(options.kubeConfig, {
        ...election,
        ...lease,
        onStartedLeading: (signal) => {
          terms = terms.then(() => leadTerm(parts.newController(), signal));
        },
        onStoppedLeading: () => {
          terms = terms.then(async () => {
            const ended = controller;
            controller = undefined;
            await ended?.stop();
            if (ended !== undefined) logger.info({ lease, identity: election.identity }, 'stopped leading');
          });
          return terms;
        },
        onNewLeader: (identity) => logger.info({ lease, leader: identity }, 'operator leader'),
        onError: (err) => logger.warn({ lease, err: (err as Error).message }, 'leader election'),
      });
      const leadTerm = async (next: DataProductController, signal: AbortSignal): Promise<void> => {
        while (!signal.aborted) {
          try {
            await next.start();
            controller = next;
            logger.info({ lease, identity: election.identity }, 'leading: reconciling DataProducts');
            return;
          } catch (err) {
            logger.warn({ err: (err as Error).message }, 'controller start failed; retrying');
            await sleep(1000, undefined, { signal }).catch(() => undefined);
          }
        }
      };
      const started = elector;
      closers.push(() => started.stop());
      started.start();
    }
    const isLeader = () => elector === undefined || elector.isLeader;
    metrics.watchLeadership(isLeader);
    // Standby replicas are ready too: they stand by to take the Lease over.
    started = true;
    logger.info(
      {
        cluster: options.kubeConfig.getCurrentCluster()?.server ?? null,
        redis: redactUrl(config.redisUrl),
        postgres: config.postgresUrl === undefined ? null : redactUrl(config.postgresUrl),
        workers: options.inProcessWorkers ?? true,
        leaderElection: election === undefined ? null : election.identity,
      },
      'offtake operator running (Kubernetes mode)',
    );
    return {
      get controller() {
        return controller;
      },
      isLeader,
      store,
      close: closeAll,
    };
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
