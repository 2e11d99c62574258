/**
 * `offtake worker`: a process that runs a {@link PipelineWorker} until SIGTERM or SIGINT, then
 * drains — running chunks save their cursor, tails commit their checkpoint, and their jobs go
 * back to the queues for other workers — and exits. The CLI builds the dependencies.
 */
import { PipelineWorker, type PipelineWorkerOptions } from './pipeline-worker.ts';

/** Options of {@link runWorkerProcess}: the worker's, plus signal handling. */
export interface WorkerProcessOptions extends PipelineWorkerOptions {
  /** Install SIGTERM/SIGINT handlers that drain and exit (default true). */
  handleSignals?: boolean;
  /** Called after the worker has drained on a signal, before exiting (close connections the caller owns). */
  onShutdown?: () => Promise<void>;
  /**
   * Longest drain after a signal, in ms (default 45000, inside the worker Deployment's 60 s grace
   * period): past it the process exits 1 — e.g. when its credential was revoked and nothing can
   * be committed any more. Work it did not commit is redone by another worker.
   */
  drainTimeoutMs?: number;
}

/** A running worker process. */
export interface RunningWorker {
  worker: PipelineWorker;
  /** Drains and closes the worker (no exit). */
  close(): Promise<void>;
}

/** Starts a pipeline worker; with `handleSignals`, exits 0 after draining on SIGTERM/SIGINT (1 if draining failed). */
export async function runWorkerProcess(options: WorkerProcessOptions): Promise<RunningWorker> {
  const { handleSignals = true, onShutdown, drainTimeoutMs = 45_000, ...workerOptions } = options;
  const { logger } = workerOptions;
  const worker = new PipelineWorker(workerOptions);
  // Logged by the worker already; a listener keeps an emitted error from crashing the process.
  worker.on('error', () => undefined);
  await worker.start();
  logger.info(
    {
      seedConcurrency: workerOptions.seedConcurrency ?? 2,
      tailConcurrency: workerOptions.tailConcurrency ?? 1000,
    },
    'offtake worker running',
  );
  if (handleSignals) {
    const stop = (signal: NodeJS.Signals) => {
      logger.info({ signal }, 'offtake worker draining');
      setTimeout(() => {
        logger.error({ drainTimeoutMs }, 'offtake worker did not drain in time; exiting');
        process.exit(1);
      }, drainTimeoutMs).unref();
      worker
        .close()
        .then(() => onShutdown?.())
        .then(
          () => process.exit(0),
          (err: unknown) => {
            logger.error({ err }, 'offtake worker shutdown failed');
            process.exit(1);
          },
        );
    };
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  }
  return { worker, close: () => worker.close() };
}
