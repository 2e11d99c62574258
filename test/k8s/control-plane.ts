/**
 * A real Kubernetes control plane for tests, the way controller-runtime's envtest makes one:
 * etcd and kube-apiserver (built from Go modules by ensure-binaries.sh) on free loopback ports,
 * certificates made with openssl, an admin kubeconfig, and kubectl to drive it. No kubelet,
 * scheduler or controller-manager: objects are stored and validated, nothing runs them.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { appendFileSync, closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:https';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import { stringify } from 'yaml';

const execFileAsync = promisify(execFile);

/** The script that builds or finds etcd, kube-apiserver and kubectl, and prints their directory. */
export const ENSURE_BINARIES = fileURLToPath(new URL('./ensure-binaries.sh', import.meta.url));

/** What `kubectl` printed and how it exited (-1 when a signal ended it). */
export interface KubectlResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** A running etcd + kube-apiserver pair and the means to reach it as cluster admin. */
export interface ControlPlane {
  /** The API server's https URL, e.g. `https://127.0.0.1:41234`. */
  server: string;
  /** A kubeconfig (current context: the admin, group system:masters) with the credentials embedded. */
  kubeconfigPath: string;
  /** The kubectl built with the API server (same version). */
  kubectlPath: string;
  /** The temporary directory holding certificates, etcd's data and the logs; removed by stop(). */
  dir: string;
  /** etcd's client URL (plain http on loopback). */
  etcdUrl: string;
  /** The directory holding etcd, kube-apiserver and kubectl. */
  binDir: string;
  /** The CA that signed the API server's serving certificate (PEM), for clients that verify it. */
  caPem: string;
  /** The kube-apiserver's log file (its stderr), useful when a test fails. */
  apiServerLogPath: string;
  /** Stops kube-apiserver and etcd and removes `dir`. Safe to call more than once. */
  stop(): Promise<void>;
  /** Runs kubectl against this control plane; `input` is written to its stdin (for `-f -`). */
  kubectl(args: string[], input?: string): Promise<KubectlResult>;
}

/** Options of {@link startControlPlane}. */
export interface ControlPlaneOptions {
  /** How long to wait for etcd and then for the API server's /readyz (each), in ms. */
  startTimeoutMs?: number;
  /** Use the binaries in this directory instead of running ensure-binaries.sh. */
  binDir?: string;
  /** Extra kube-apiserver flags (`--name=value`), appended after the defaults. */
  apiServerArgs?: string[];
  /** Extra etcd flags, appended after the defaults. */
  etcdArgs?: string[];
  /** Keep `dir` after stop() (for looking at logs). */
  keepDir?: boolean;
}

/** Raised when the control plane cannot be started; the message says which part and why. */
export class ControlPlaneError extends Error {
  override name = 'ControlPlaneError';
}

/**
 * Runs ensure-binaries.sh (a no-op when the binaries are built) and returns their directory.
 * The script's progress is passed on to stderr, since a first build takes minutes.
 */
export async function ensureBinaries(): Promise<string> {
  const child = spawn('bash', [ENSURE_BINARIES], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    const text = d.toString();
    stderr += text;
    // The line saying the binaries were reused is noise in every test run; a build is not.
    if (!/^ensure-binaries: (reusing|using the binaries in)/.test(text)) process.stderr.write(text);
  });
  const [code] = (await once(child, 'close')) as [number | null];
  const dir = stdout.trim().split('\n').pop() ?? '';
  if (code !== 0 || dir === '') {
    throw new ControlPlaneError(
      `could not get the test control plane's binaries (etcd, kube-apiserver, kubectl): ` +
        `bash ${ENSURE_BINARIES} exited with ${code}\n${tail(stderr, 40)}`,
    );
  }
  return dir;
}

/**
 * Starts etcd and kube-apiserver on free loopback ports with envtest's defaults (RBAC,
 * service-account keys, no ServiceAccount admission plugin), waits for /readyz and writes an
 * admin kubeconfig. The processes die with the test process even if it is killed.
 */
export async function startControlPlane(opts: ControlPlaneOptions = {}): Promise<ControlPlane> {
  const { startTimeoutMs = 120_000, apiServerArgs = [], etcdArgs = [], keepDir = false } = opts;
  const binDir = opts.binDir ?? (await ensureBinaries());
  const dir = await mkdtemp(join(tmpdir(), 'offtake-k8s-'));
  const processes: ChildProcess[] = [];
  const watchdog = startWatchdog(dir);
  const killAll = (): void => {
    for (const child of processes) if (child.exitCode === null) child.kill('SIGKILL');
  };
  process.once('exit', killAll);

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // The API server first, so it never sees its storage vanish under it.
    for (const child of [...processes].reverse()) await terminate(child);
    process.removeListener('exit', killAll);
    stopWatchdog(watchdog);
    if (!keepDir) await rm(dir, { recursive: true, force: true });
  };

  try {
    const certs = await makeCertificates(dir);

    // Ports are picked the way envtest picks them (bind :0, close, reuse); a clash shows as an
    // early exit, and the start is tried again on new ports.
    const etcdUrl = await retryOnEarlyExit('etcd', async (attempt) => {
      const [clientPort, peerPort] = await freePorts(2);
      const url = `http://127.0.0.1:${clientPort}`;
      const peerUrl = `http://127.0.0.1:${peerPort}`;
      const child = startProcess(dir, join(binDir, 'etcd'), 'etcd', [
        // A fresh data dir per attempt: a failed one may have bootstrapped a member already.
        `--data-dir=${join(dir, `etcd-data-${attempt}`)}`,
        `--listen-client-urls=${url}`,
        `--advertise-client-urls=${url}`,
        `--listen-peer-urls=${peerUrl}`,
        `--initial-advertise-peer-urls=${peerUrl}`,
        `--initial-cluster=default=${peerUrl}`,
        // Test data is thrown away: fsync only slows every write down.
        '--unsafe-no-fsync=true',
        '--log-level=warn',
        ...etcdArgs,
      ]);
      processes.push(child);
      await waitUntil(child, join(dir, 'etcd.log'), startTimeoutMs, 'etcd /health', async () => {
        const res = await fetch(`${url}/health`);
        return res.ok && ((await res.json()) as { health?: string }).health === 'true';
      });
      return url;
    });

    const server = await retryOnEarlyExit('kube-apiserver', async () => {
      const [port] = await freePorts(1);
      const url = `https://127.0.0.1:${port}`;
      const child = startProcess(dir, join(binDir, 'kube-apiserver'), 'kube-apiserver', [
        `--etcd-servers=${etcdUrl}`,
        `--bind-address=127.0.0.1`,
        `--advertise-address=127.0.0.1`,
        `--secure-port=${port}`,
        `--cert-dir=${join(dir, 'apiserver-certs')}`,
        `--tls-cert-file=${certs.servingCert}`,
        `--tls-private-key-file=${certs.servingKey}`,
        `--client-ca-file=${certs.clientCaCert}`,
        '--authorization-mode=RBAC',
        `--service-account-issuer=${url}/`,
        `--service-account-key-file=${certs.serviceAccountPublicKey}`,
        `--service-account-signing-key-file=${certs.serviceAccountKey}`,
        '--service-cluster-ip-range=10.0.0.0/24',
        '--allow-privileged=true',
        // envtest's reason: no controller-manager creates the default ServiceAccounts.
        '--disable-admission-plugins=ServiceAccount',
        ...apiServerArgs,
      ]);
      processes.push(child);
      await waitUntil(child, join(dir, 'kube-apiserver.log'), startTimeoutMs, 'kube-apiserver /readyz', () =>
        httpsOk(`${url}/readyz`, certs),
      );
      return url;
    });

    const kubeconfigPath = join(dir, 'kubeconfig');
    await writeFile(kubeconfigPath, adminKubeconfig(server, certs), { mode: 0o600 });
    const kubectlPath = join(binDir, 'kubectl');
    const cacheDir = join(dir, 'kubectl-cache');

    return {
      server,
      kubeconfigPath,
      kubectlPath,
      dir,
      etcdUrl,
      binDir,
      caPem: certs.caPem,
      apiServerLogPath: join(dir, 'kube-apiserver.log'),
      stop,
      // A discovery cache of its own: another control plane may have had this port before.
      kubectl: (args, input) =>
        run(kubectlPath, [`--kubeconfig=${kubeconfigPath}`, `--cache-dir=${cacheDir}`, ...args], input),
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** An `@kubernetes/client-node` KubeConfig for a control plane's admin. */
export function kubeConfigFor(cp: Pick<ControlPlane, 'kubeconfigPath'>): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(cp.kubeconfigPath);
  return kc;
}

interface Certificates {
  caPem: string;
  caCert: string;
  servingCert: string;
  servingKey: string;
  clientCaCert: string;
  adminCert: string;
  adminKey: string;
  serviceAccountKey: string;
  serviceAccountPublicKey: string;
}

/**
 * Makes, with openssl, a serving CA and a certificate for 127.0.0.1/localhost, a client CA and an
 * admin client certificate in group system:masters, and the service-account signing key pair.
 * P-256 keys: quick to make, and accepted by Kubernetes for every one of these uses.
 */
async function makeCertificates(dir: string): Promise<Certificates> {
  const path = (name: string): string => join(dir, name);
  const openssl = async (...args: string[]): Promise<void> => {
    try {
      await execFileAsync('openssl', args, { cwd: dir });
    } catch (err) {
      const stderr = (err as { stderr?: string }).stderr ?? '';
      throw new ControlPlaneError(`openssl ${args[0]} failed: ${stderr || String(err)}`, { cause: err });
    }
  };
  const newKey = (name: string): Promise<void> =>
    openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path(name));
  const newCa = async (name: string, commonName: string): Promise<void> => {
    await newKey(`${name}.key`);
    await openssl(
      ...['req', '-x509', '-new', '-key', path(`${name}.key`), '-out', path(`${name}.crt`)],
      ...['-days', '2', '-subj', `/CN=${commonName}`],
      ...['-addext', 'basicConstraints=critical,CA:TRUE'],
      ...['-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature'],
    );
  };
  const issue = async (name: string, ca: string, subject: string, extensions: string[]): Promise<void> => {
    await newKey(`${name}.key`);
    await openssl('req', '-new', '-key', path(`${name}.key`), '-out', path(`${name}.csr`), '-subj', subject);
    const basics = ['basicConstraints=critical,CA:FALSE', 'keyUsage=critical,digitalSignature'];
    await writeFile(path(`${name}.ext`), [...basics, ...extensions, ''].join('\n'));
    await openssl(
      ...['x509', '-req', '-in', path(`${name}.csr`), '-out', path(`${name}.crt`), '-days', '2'],
      ...['-CA', path(`${ca}.crt`), '-CAkey', path(`${ca}.key`), '-CAcreateserial'],
      ...['-extfile', path(`${name}.ext`)],
    );
  };

  await newCa('ca', 'offtake-test-ca');
  await issue('apiserver', 'ca', '/CN=kube-apiserver', [
    'extendedKeyUsage=serverAuth',
    // The kubernetes.default names too, for clients that dial the API server by its in-cluster name.
    'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc',
  ]);
  await newCa('client-ca', 'offtake-test-client-ca');
  // The API server reads O as the user's groups: system:masters is cluster-admin without any RBAC.
  await issue('admin', 'client-ca', '/O=system:masters/CN=admin', ['extendedKeyUsage=clientAuth']);
  await newKey('sa.key');
  await openssl('pkey', '-in', path('sa.key'), '-pubout', '-out', path('sa.pub'));

  return {
    caPem: await readFile(path('ca.crt'), 'utf8'),
    caCert: path('ca.crt'),
    servingCert: path('apiserver.crt'),
    servingKey: path('apiserver.key'),
    clientCaCert: path('client-ca.crt'),
    adminCert: path('admin.crt'),
    adminKey: path('admin.key'),
    serviceAccountKey: path('sa.key'),
    serviceAccountPublicKey: path('sa.pub'),
  };
}

/** A kubeconfig with the credentials embedded, so it still works when copied elsewhere. */
function adminKubeconfig(server: string, certs: Certificates): string {
  const base64 = (file: string): string => readFileSync(file).toString('base64');
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      { name: 'offtake-test', cluster: { server, 'certificate-authority-data': base64(certs.caCert) } },
    ],
    users: [
      {
        name: 'admin',
        user: {
          'client-certificate-data': base64(certs.adminCert),
          'client-key-data': base64(certs.adminKey),
        },
      },
    ],
    contexts: [
      { name: 'offtake-test', context: { cluster: 'offtake-test', user: 'admin', namespace: 'default' } },
    ],
    'current-context': 'offtake-test',
  });
}

/** A process that exited before it was ready; `addressInUse` when a port clash was the cause. */
class EarlyExitError extends ControlPlaneError {
  override name = 'EarlyExitError';
  readonly addressInUse: boolean;
  constructor(message: string, addressInUse: boolean) {
    super(message);
    this.addressInUse = addressInUse;
  }
}

/** Starts a server process with its output in `<dir>/<name>.log` and its pid for the watchdog. */
function startProcess(dir: string, bin: string, name: string, args: string[]): ChildProcess {
  const log = openSync(join(dir, `${name}.log`), 'a');
  try {
    const child = spawn(bin, args, { stdio: ['ignore', log, log] });
    // An error event (e.g. ENOENT) also shows as an exit, which waitUntil reports with the log.
    child.on('error', (err) => appendFileSync(join(dir, `${name}.log`), `\nspawn failed: ${err.message}\n`));
    if (child.pid !== undefined) writeFileSync(join(dir, `${name}.pid`), String(child.pid));
    return child;
  } finally {
    closeSync(log);
  }
}

/** Runs `start` again on new ports when the process it started lost a race for its port. */
async function retryOnEarlyExit<T>(what: string, start: (attempt: number) => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start(attempt);
    } catch (err) {
      if (!(err instanceof EarlyExitError && err.addressInUse && attempt < 3)) throw err;
      process.stderr.write(`control-plane: ${what} lost its port to another process; retrying\n`);
    }
  }
}

/** Polls `probe` until it says yes, the process exits (with its log in the error), or time runs out. */
async function waitUntil(
  child: ChildProcess,
  logPath: string,
  timeoutMs: number,
  what: string,
  probe: () => Promise<boolean>,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const log = await readLog(logPath);
      throw new EarlyExitError(
        `${what}: the process exited (${child.exitCode ?? child.signalCode}) before it was ready\n${tail(log, 30)}`,
        /address already in use/.test(log),
      );
    }
    if (await probe().catch(() => false)) return;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new ControlPlaneError(
        `${what} did not answer within ${timeoutMs} ms\n${tail(await readLog(logPath), 30)}`,
      );
    }
    await delay(250);
  }
}

/** GET over TLS as the admin; true on a 200. */
function httpsOk(url: string, certs: Certificates): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(
      url,
      {
        ca: readFileSync(certs.caCert),
        cert: readFileSync(certs.adminCert),
        key: readFileSync(certs.adminKey),
        timeout: 5000,
      },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200);
      },
    );
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}

/** Asks the kernel for `count` distinct free loopback ports (held together, then released). */
async function freePorts(count: number): Promise<number[]> {
  const servers = Array.from({ length: count }, () => createServer());
  try {
    return await Promise.all(
      servers.map(
        (server) =>
          new Promise<number>((resolve, reject) => {
            server.once('error', reject);
            server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
          }),
      ),
    );
  } finally {
    await Promise.all(
      servers.map(
        (server) =>
          new Promise<void>((resolve) => (server.listening ? server.close(() => resolve()) : resolve())),
      ),
    );
  }
}

/**
 * A detached shell that outlives this process: once this process is gone (even by SIGKILL, when no
 * exit handler runs), it kills every process whose pid file is in `dir` and removes `dir`.
 */
function startWatchdog(dir: string): ChildProcess {
  const script = [
    'parent=$1; dir=$2',
    'while kill -0 "$parent" 2>/dev/null; do sleep 1; done',
    'for f in "$dir"/*.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null; done',
    'rm -rf "$dir"',
  ].join('\n');
  const child = spawn('bash', ['-c', script, 'control-plane-watchdog', String(process.pid), dir], {
    detached: true,
    stdio: 'ignore',
  });
  child.unref();
  return child;
}

/** Stops the watchdog and its `sleep` (it leads a process group of its own). */
function stopWatchdog(watchdog: ChildProcess): void {
  if (watchdog.pid === undefined || watchdog.exitCode !== null) return;
  try {
    process.kill(-watchdog.pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** SIGTERM, then SIGKILL if the process has not exited after 15 s. */
async function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  await exited;
  clearTimeout(timer);
}

/** Runs a command to completion, feeding it `input` on stdin. */
async function run(bin: string, args: string[], input?: string): Promise<KubectlResult> {
  const child = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  // A command that does not read stdin may exit before it is written: that is not a failure.
  child.stdin.on('error', () => {});
  child.stdin.end(input ?? '');
  const closed = once(child, 'close') as Promise<[number | null]>;
  const [code] = await closed;
  return { stdout, stderr, code: code ?? -1 };
}

function readLog(path: string): Promise<string> {
  return readFile(path, 'utf8').catch(() => '');
}

/** The last `lines` lines of a text, for error messages. */
function tail(text: string, lines: number): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}
