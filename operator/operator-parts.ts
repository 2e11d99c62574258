/**
 * The operator's parts, wired the same way in both modes: pipeline workers (optionally in this
 * process), the pipeline runner, the shared-placement provisioners (Redis, topic, and Postgres
 * when configured), the reconciler and the controller, all over a given resource store — the
 * embedded one in Redis (`embedded.ts`) or the cluster's custom resources (`kubernetes.ts`).
 */
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { OfftakeConfig } from '../lib/config.ts';
import type { RedisEventLog } from '../lib/eventlog/redis-event-log.ts';
import type { Logger } from '../lib/logger.ts';
import type { OfftakeMetrics } from '../lib/metrics.ts';
import type { ResourceStore } from '../lib/resource-store/resource-store.ts';
import { PipelineRunner, type PipelineRunnerOptions } from '../worker/pipeline-runner.ts';
import { PipelineWorker, type PipelineWorkerOptions } from '../worker/pipeline-worker.ts';
import { redisConnector } from '../worker/redis-connector.ts';
import { DataProductController, type DataProductControllerOptions } from './controller.ts';
import { PostgresProvisioner } from './postgres-provisioner.ts';
import { ProductRecords, type StoreKind } from './product-records.ts';
import { productSinkFactory, type ProductSinkDeps } from './product-sinks.ts';
import type { Provisioner } from './provisioner.ts';
import { DataProductReconciler, type DataProductReconcilerOptions } from './reconciler.ts';
import { RedisProvisioner } from './redis-provisioner.ts';
import { TopicProvisioner } from './topic-provisioner.ts';

/** Tuning of the operator's parts (tests shorten timings); configuration proper comes from {@link OfftakeConfig}. */
export interface OperatorTuning {
  controller?: Pick<DataProductControllerOptions, 'concurrency' | 'resyncMs' | 'watchRetryMs' | 'backoff'>;
  reconciler?: Pick<
    DataProductReconcilerOptions,
    | 'progressIntervalMs'
    | 'statusIntervalMs'
    | 'verifyIntervalMs'
    | 'stopTimeoutMs'
    | 'storeWaitMs'
    | 'health'
  >;
  runner?: Omit<PipelineRunnerOptions, 'connect' | 'eventLog' | 'logger' | 'prefix'>;
  worker?: Omit<PipelineWorkerOptions, 'connect' | 'eventLog' | 'logger' | 'prefix' | 'sinkFactory'>;
  /** Run pipeline workers in this process (default true); false leaves the jobs to `offtake worker` processes. */
  inProcessWorkers?: boolean;
  /** The process's metrics, told of reconciles and of the in-process workers' batches. */
  metrics?: OfftakeMetrics;
}

/** The platform's connections and the resource store the operator works from. */
export interface OperatorPartsDeps {
  redis: Redis;
  /** The platform's Postgres; without it, postgres targets fail visibly (PostgresNotConfigured). */
  pool: pg.Pool | undefined;
  eventLog: RedisEventLog;
  store: ResourceStore;
  /** Provisioners beyond the shared ones: Kubernetes mode's dedicated placement. */
  extraProvisioners?: Partial<Record<StoreKind, Provisioner>>;
}

/** The started operator: its controller and the records it keeps (connection details among them). */
export interface OperatorParts {
  /** The controller; started unless `startController` was false. */
  controller: DataProductController;
  records: ProductRecords;
  /**
   * Makes a fresh, unstarted controller (with its own reconciler) over the same parts: a
   * controller runs once, so a leader-elected operator makes one per term of leadership.
   */
  newController(): DataProductController;
}

/** The worker settings of the configuration, as {@link PipelineWorker} options. */
export function workerSettings(
  config: OfftakeConfig,
): Pick<
  PipelineWorkerOptions,
  'seedConcurrency' | 'tailConcurrency' | 'seedBatchSize' | 'tombstoneRetentionMs'
> {
  const { seedConcurrency, tailConcurrency, seedBatchSize, tombstoneRetentionSeconds } = config.worker;
  return {
    seedConcurrency,
    tailConcurrency,
    seedBatchSize,
    tombstoneRetentionMs: tombstoneRetentionSeconds * 1000,
  };
}

/**
 * Starts the workers (unless `inProcessWorkers` is false), the runner and (unless
 * `startController` is false) the controller over `deps.store`. Each started part's stop is pushed to `closers` as soon as it runs, so a caller
 * that closes them in reverse order after a failure half way leaves nothing running.
 */
export async function startOperatorParts(
  config: OfftakeConfig,
  logger: Logger,
  tuning: OperatorTuning,
  deps: OperatorPartsDeps,
  closers: (() => Promise<unknown>)[],
  startController = true,
): Promise<OperatorParts> {
  const { redis, pool, eventLog, store } = deps;
  const prefix = config.redisPrefix;
  const connect = redisConnector(config.redisUrl);
  const sinks: ProductSinkDeps = { redis, pool, eventLog, platformPrefix: prefix };
  if (tuning.inProcessWorkers ?? true) {
    const worker = new PipelineWorker({
      ...workerSettings(config),
      ...tuning.worker,
      metrics: tuning.metrics,
      connect,
      eventLog,
      logger,
      prefix,
      sinkFactory: productSinkFactory(sinks),
    });
    // Logged by the worker; a listener keeps an emitted error from crashing the process.
    worker.on('error', () => undefined);
    await worker.start();
    closers.push(() => worker.close());
  }
  const runner = new PipelineRunner({ ...tuning.runner, connect, eventLog, logger, prefix });
  closers.push(() => runner.close());

  const records = ProductRecords.forPlatform(redis, prefix);
  const provisioners: Partial<Record<StoreKind, Provisioner>> = {
    ...deps.extraProvisioners,
    redis: new RedisProvisioner({ redis, url: config.redisUrl, sinks }),
    topic: new TopicProvisioner({
      redis,
      url: config.redisUrl,
      eventLog,
      logPrefix: `${prefix}:log`,
      records,
      sinks,
    }),
  };
  if (pool !== undefined && config.postgresUrl !== undefined) {
    provisioners.postgres = new PostgresProvisioner({ pool, url: config.postgresUrl, sinks });
  }
  const newController = (): DataProductController => {
    const reconciler = new DataProductReconciler({
      ...tuning.reconciler,
      store,
      runner,
      records,
      provisioners,
      platformPrefix: prefix,
      logger,
    });
    const controller = new DataProductController({
      ...tuning.controller,
      metrics: tuning.metrics,
      store,
      reconciler,
      logger,
    });
    // Logged by the controller; a listener keeps an emitted error from crashing the process.
    controller.on('error', () => undefined);
    return controller;
  };
  const controller = newController();
  if (startController) {
    await controller.start();
    closers.push(() => controller.stop());
  }
  return { controller, records, newController };
}
