/**
 * The `offtake` command: the one file that reads the environment and wires the parts together.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { Command, InvalidArgumentError } from 'commander';
import { KubeConfig } from '@kubernetes/client-node';
import { loadConfig } from '../lib/config.ts';
import { createLogger, type Logger } from '../lib/logger.ts';
import { VERSION } from '../lib/version.ts';
import { startApiServer } from '../api/server.ts';
import { startEmbedded, startWorkerProcess } from '../operator/embedded.ts';
import { startKubernetesOperator } from '../operator/kubernetes.ts';
import { registerClientCommands } from './client-commands.ts';

function port(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535)
    throw new InvalidArgumentError('must be a port number (0-65535)');
  return n;
}

/** Closes `running` on SIGINT/SIGTERM, then exits (1 when closing failed). */
function closeOnSignal(running: { close(): Promise<void> }, logger: Logger): void {
  const stop = (signal: string) => {
    logger.info({ signal }, 'shutting down');
    running.close().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

/**
 * Re-executes this process with V8's young generation capped at 16 MB per semi-space, unless the
 * user chose a size. V8 sizes it from the machine's memory (up to 3 × 64 MB on a large host), and a
 * worker allocates at a high rate, so that alone would put its RSS above 300 MB; with the cap, a
 * seeding worker stays below (see the pipeline benchmark). The flag only counts at start-up, hence
 * `execve` (same pid, so signals and supervisors see one process).
 */
function boundYoungGeneration(): void {
  const flag = '--max-semi-space-size';
  if ([...process.execArgv, process.env.NODE_OPTIONS ?? ''].some((arg) => arg.includes(flag))) return;
  process.execve?.(process.execPath, [
    process.execPath,
    `${flag}=16`,
    ...process.execArgv,
    ...process.argv.slice(1),
  ]);
}

const program = new Command()
  .name('offtake')
  .description('Self-service data provisioning: DataProducts filled from the central event log.')
  .version(VERSION)
  .showHelpAfterError();

program
  .command('api')
  .description('start the HTTP API server (DataProducts, event log, OpenAPI, health)')
  .option('-p, --port <port>', 'port to listen on (env OFFTAKE_PORT)', port)
  .option('--host <host>', 'address to bind (env OFFTAKE_HOST)')
  .option(
    '--kubernetes',
    'keep DataProducts as custom resources in the cluster (what the operator in Kubernetes mode watches)',
  )
  .option(
    '--kubeconfig <path>',
    'with --kubernetes: kubeconfig file (default: KUBECONFIG, ~/.kube/config, or in-cluster)',
  )
  .action(async (opts: { port?: number; host?: string; kubernetes?: boolean; kubeconfig?: string }) => {
    const config = loadConfig(process.env, { port: opts.port, host: opts.host });
    const logger = createLogger(config.logLevel);
    let kubeConfig: KubeConfig | undefined;
    if (opts.kubernetes === true || opts.kubeconfig !== undefined) {
      kubeConfig = new KubeConfig();
      if (opts.kubeconfig === undefined) kubeConfig.loadFromDefault();
      else kubeConfig.loadFromFile(opts.kubeconfig);
    }
    const running = await startApiServer(config, logger, { kubeConfig });
    closeOnSignal(running, logger);
  });

// offtake up (issue 5): API, operator and workers in one process.
program
  .command('up')
  .description('run Offtake on one machine: API, operator and pipeline workers in one process')
  .option('-p, --port <port>', 'port to listen on (env OFFTAKE_PORT)', port)
  .option('--host <host>', 'address to bind (env OFFTAKE_HOST)')
  .option('--no-workers', 'run no pipeline workers here (leave the jobs to `offtake worker` processes)')
  .action(async (opts: { port?: number; host?: string; workers: boolean }) => {
    const config = loadConfig(process.env, { port: opts.port, host: opts.host });
    const logger = createLogger(config.logLevel);
    const running = await startEmbedded(config, logger, { inProcessWorkers: opts.workers });
    closeOnSignal(running, logger);
  });

// offtake worker: pipeline workers as a process of their own, beside `offtake api` or in a Deployment.
program
  .command('worker')
  .description('run pipeline workers (seed chunks and live tails) until SIGTERM, then drain and exit')
  .action(async () => {
    boundYoungGeneration();
    const config = loadConfig(process.env);
    const logger = createLogger(config.logLevel);
    await startWorkerProcess(config, logger);
  });

// offtake operator: Kubernetes mode's operator, DataProducts read from and written to the cluster.
program
  .command('operator')
  .description(
    'run the operator in Kubernetes mode (DataProduct custom resources; shared and dedicated placement)',
  )
  .option('--kubeconfig <path>', 'kubeconfig file (default: KUBECONFIG, ~/.kube/config, or in-cluster)')
  .option('--no-workers', 'run no pipeline workers here (leave the jobs to `offtake worker` processes)')
  .option(
    '--lease-namespace <namespace>',
    'namespace of the leader-election Lease (default: POD_NAMESPACE, else offtake-system)',
  )
  .option('--lease-name <name>', 'name of the leader-election Lease', 'offtake-operator')
  .option('--no-leader-election', 'reconcile at once, without a Lease (a single replica only)')
  .action(
    async (opts: {
      kubeconfig?: string;
      workers: boolean;
      leaseNamespace?: string;
      leaseName: string;
      leaderElection: boolean;
    }) => {
      const config = loadConfig(process.env);
      const logger = createLogger(config.logLevel);
      const kubeConfig = new KubeConfig();
      if (opts.kubeconfig === undefined) kubeConfig.loadFromDefault();
      else kubeConfig.loadFromFile(opts.kubeconfig);
      // The identity only has to be unique among the replicas: the pod's name (its hostname in
      // the cluster), made unique across restarts of the same pod.
      const identity = `${process.env.POD_NAME ?? hostname()}_${randomBytes(4).toString('hex')}`;
      const running = await startKubernetesOperator(config, logger, {
        kubeConfig,
        inProcessWorkers: opts.workers,
        leaderElection: opts.leaderElection
          ? {
              namespace: opts.leaseNamespace ?? process.env.POD_NAMESPACE ?? 'offtake-system',
              name: opts.leaseName,
              identity,
            }
          : undefined,
      });
      closeOnSignal(running, logger);
    },
  );

registerClientCommands(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`offtake: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
