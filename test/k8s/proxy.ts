/**
 * A TCP pass-through to a test control plane's API server, so a test can cut one client's access
 * to the API while others keep theirs (TLS runs end to end: the serving certificate is for
 * 127.0.0.1 whatever the port).
 */
import assert from 'node:assert/strict';
import { createConnection, createServer, type Socket } from 'node:net';
import { KubeConfig } from '@kubernetes/client-node';

/** A running pass-through: its URL, and the cut that closes it and every connection through it. */
export interface ApiProxy {
  url: string;
  cut(): Promise<void>;
}

/** Starts a pass-through to the API server at `server` (an https URL). */
export async function startApiProxy(server: string): Promise<ApiProxy> {
  const target = new URL(server);
  const sockets = new Set<Socket>();
  const proxy = createServer((client) => {
    const upstream = createConnection({ host: target.hostname, port: Number(target.port) });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined);
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  const address = proxy.address();
  assert.ok(address !== null && typeof address === 'object');
  return {
    url: `https://127.0.0.1:${address.port}`,
    cut: async () => {
      const closed = new Promise<void>((resolve) => proxy.close(() => resolve()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

/** `kc` with its clusters' server replaced by `server` (e.g. an {@link ApiProxy}'s URL). */
export function withServer(kc: KubeConfig, server: string): KubeConfig {
  const copy = new KubeConfig();
  copy.loadFromOptions({
    clusters: kc.clusters.map((c) => ({ ...c, server })),
    users: kc.users,
    contexts: kc.contexts,
    currentContext: kc.currentContext,
  });
  return copy;
}
