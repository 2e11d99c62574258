/**
 * The health endpoint of `offtake worker` and `offtake operator`: a tiny HTTP server for
 * Kubernetes' probes and Prometheus.
 * `GET /healthz` answers 200 while the process runs (liveness); `GET /readyz` answers 200 when
 * the worker can do its work and 503 with a one-line reason when it cannot (readiness);
 * `GET /metrics` answers the process's Prometheus metrics when it has them; anything else is
 * 404. Plain `node:http`: three routes need no framework.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * Whether the worker is ready: `true`, or a one-line reason why not. The reason is sent to
 * whoever asks, so it must hold no secret (no URI, no password).
 */
export type ReadinessCheck = () => Promise<true | string>;

/** Options of {@link startHealthServer}. */
export interface HealthServerOptions {
  /** The port to listen on (0 picks a free one). */
  port: number;
  /** The address to bind (default `0.0.0.0`: the kubelet probes the pod's IP). */
  host?: string;
  /** Asked on every `GET /readyz`; a rejection counts as not ready, with its message as the reason. */
  ready: ReadinessCheck;
  /** Served at `GET /metrics`, when given. */
  metrics?: { exposition(): Promise<{ contentType: string; text: string }> };
}

/** A listening health server. */
export interface HealthServer {
  /** The port it listens on. */
  port: number;
  /** Stops listening and closes open connections. */
  close(): Promise<void>;
}

/** Longest reason sent with a 503. */
const MAX_REASON = 300;

/** A reason as one short line. */
function oneLine(text: string): string {
  const line = text.replace(/\s+/g, ' ').trim() || 'not ready';
  return line.length <= MAX_REASON ? line : `${line.slice(0, MAX_REASON - 1)}…`;
}

function send(
  res: ServerResponse,
  status: number,
  body: string,
  contentType = 'text/plain; charset=utf-8',
): void {
  res.writeHead(status, {
    'content-type': contentType,
    'cache-control': 'no-store',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

async function readiness(check: ReadinessCheck): Promise<true | string> {
  try {
    return await check();
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

async function handle(
  req: IncomingMessage,
  res: ServerResponse,
  options: HealthServerOptions,
): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  const method = req.method ?? 'GET';
  if (method !== 'GET' && method !== 'HEAD') return send(res, 404, 'not found\n');
  if (path === '/healthz') return send(res, 200, 'ok\n');
  if (path === '/readyz') {
    const ready = await readiness(options.ready);
    return ready === true ? send(res, 200, 'ok\n') : send(res, 503, `${oneLine(ready)}\n`);
  }
  if (path === '/metrics' && options.metrics !== undefined) {
    const { contentType, text } = await options.metrics.exposition();
    return send(res, 200, text, contentType);
  }
  send(res, 404, 'not found\n');
}

/** Starts the health server; rejects with the address when it cannot listen (e.g. the port is taken). */
export async function startHealthServer(options: HealthServerOptions): Promise<HealthServer> {
  const host = options.host ?? '0.0.0.0';
  const server = createServer((req, res) => {
    handle(req, res, options).catch(() => {
      if (!res.headersSent) send(res, 500, 'health check failed\n');
      else res.destroy();
    });
  });
  // Probes come every few seconds; an idle keep-alive connection need not outlive that by much.
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) =>
      reject(
        new Error(`The health server cannot listen on ${host}:${options.port}: ${err.message}`, {
          cause: err,
        }),
      ),
    );
    server.listen(options.port, host, () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
