import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

/** The CLI entry point, run from source. */
export const CLI = fileURLToPath(new URL('../../cli/main.ts', import.meta.url));

/** A started `offtake api` process and the port it listens on. */
export interface ApiProcess {
  child: ChildProcess;
  port: number;
  url: string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `offtake api --port 0` (plus `args`) and waits for its "listening" log line. */
export async function startApiProcess(env: Record<string, string>, args: string[] = []): Promise<ApiProcess> {
  const child = spawn(process.execPath, [CLI, 'api', '--port', '0', '--host', '127.0.0.1', ...args], {
    env: { ...process.env, OFFTAKE_LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const lines = createInterface({ input: child.stdout });
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`offtake api did not start: ${stderr}`)), 20000);
    child.once('exit', (code) => reject(new Error(`offtake api exited with ${code}: ${stderr}`)));
    lines.on('line', (line) => {
      try {
        const entry = JSON.parse(line) as { msg?: string; port?: number };
        if (entry.msg === 'offtake api listening' && entry.port) {
          clearTimeout(timer);
          resolve(entry.port);
        }
      } catch {
        // not a log line
      }
    });
  });
  child.removeAllListeners('exit');
  return {
    child,
    port,
    url: `http://127.0.0.1:${port}`,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode !== null) return child.exitCode;
      child.kill(signal);
      const [code] = (await once(child, 'exit')) as [number | null];
      return code;
    },
  };
}

/** A spawned `offtake worker`: the process, its output so far (stdout and stderr), and when it says it runs. */
export interface WorkerChild {
  child: ChildProcess;
  output: () => string;
  /** Resolves once it logs that it runs (its signal handlers are then in place); rejects if it exits first. */
  running: Promise<void>;
}

/** Spawns `offtake worker` with the test's environment plus `env` (no inherited NODE_OPTIONS). */
export function spawnWorker(env: Record<string, string>): WorkerChild {
  const child = spawn(process.execPath, [CLI, 'worker'], {
    env: { ...process.env, NODE_OPTIONS: '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const running = new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      output += d.toString();
      if (output.includes('"offtake worker running"')) resolve();
    });
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.once('exit', (code) => reject(new Error(`offtake worker exited with ${code}: ${output}`)));
  });
  running.catch(() => undefined);
  return { child, output: () => output, running };
}

/** Runs the CLI to completion, returning its exit code and output. */
export async function runCli(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const [code] = (await once(child, 'exit')) as [number | null];
  return { code, stdout, stderr };
}
