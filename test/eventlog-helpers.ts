/**
 * Shared helpers of the event log tests: unique key prefixes, cleanup, event factories, a
 * throwaway redis-server process, and a small Server-Sent Events client.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import type { EventInput } from '../lib/eventlog/event-log.ts';

/** The test Redis (started by scripts/services.sh). */
export const REDIS_URL = 'redis://127.0.0.1:6379';

/** A key prefix no other test uses. */
export function uniquePrefix(name: string): string {
  return `test:${name}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
}

/** Deletes every key under `prefix`. */
export async function deleteKeys(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.unlink(...keys);
  } while (cursor !== '0');
}

/** An event with a realistic payload. */
export function orderEvent(i: number, overrides: Partial<EventInput> = {}): EventInput {
  return {
    id: `order-${i}`,
    source: 'urn:test:checkout',
    type: i % 3 === 0 ? 'OrderCancelled' : 'OrderPlaced',
    subject: `customer-${i % 7}`,
    data: { orderId: `o-${i}`, customerId: `c-${i % 7}`, region: i % 2 === 0 ? 'EU' : 'US', amount: 10 + i },
    ...overrides,
  };
}

/** Resolves when `check` returns true, polling; rejects after `timeoutMs` with `what`. */
export async function eventually(
  check: () => Promise<boolean> | boolean,
  what: string,
  timeoutMs = 10_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** A TCP port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  server.close();
  await once(server, 'close');
  return port;
}

/** A redis-server this test owns: its own port and data directory. */
export class RedisProcess {
  readonly port: number;
  readonly dir: string;
  private readonly args: string[];
  private child: ChildProcess | undefined;

  private constructor(port: number, dir: string, args: string[]) {
    this.port = port;
    this.dir = dir;
    this.args = args;
  }

  /** Starts a server with the given extra arguments, e.g. `['--appendonly', 'yes']`. */
  static async start(args: string[]): Promise<RedisProcess> {
    const dir = await mkdtemp(join(tmpdir(), 'offtake-redis-'));
    const server = new RedisProcess(await freePort(), dir, args);
    await server.restart();
    return server;
  }

  /** (Re)starts the server on the same port and directory and waits until it answers. */
  async restart(): Promise<void> {
    // Never leave a running server behind: an orphaned child would keep the test process alive.
    await this.kill9();
    this.child = spawn(
      '/usr/bin/redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--dir',
        this.dir,
        '--save',
        '',
        '--logfile',
        'redis.log',
        ...this.args,
      ],
      { stdio: 'ignore' },
    );
    const probe = new Redis({
      port: this.port,
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    probe.on('error', () => undefined);
    try {
      await eventually(async () => {
        try {
          if (probe.status !== 'ready') await probe.connect().catch(() => undefined);
          // LOADING while the AOF is replayed: not ready yet.
          return (await probe.ping()) === 'PONG';
        } catch {
          probe.disconnect();
          return false;
        }
      }, `redis-server on port ${this.port}`);
    } finally {
      probe.disconnect();
    }
  }

  /** A client that fails fast instead of retrying, so a crash is seen as a failed command. */
  client(options: RedisOptions = {}): Redis {
    const client = new Redis({
      port: this.port,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      retryStrategy: () => null,
      ...options,
    });
    client.on('error', () => undefined);
    return client;
  }

  /** SIGKILLs the server and waits for it to be gone. */
  async kill9(): Promise<void> {
    const child = this.child;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = once(child, 'exit');
    child.kill('SIGKILL');
    await exited;
  }

  /** Kills the server and removes its directory. */
  async stop(): Promise<void> {
    await this.kill9();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** One Server-Sent Event as received. */
export interface SseEvent {
  id?: string;
  data: string;
}

/** A Server-Sent Events connection: collects events; `pause()` stops reading the socket. */
export class SseClient {
  readonly events: SseEvent[] = [];
  readonly comments: string[] = [];
  status = 0;
  headers: http.IncomingHttpHeaders = {};
  private response: http.IncomingMessage | undefined;
  private readonly request: http.ClientRequest;
  private buffer = '';
  private ended = false;

  private constructor(request: http.ClientRequest) {
    this.request = request;
  }

  /** Opens `url` and resolves once the response headers arrived. */
  static async open(url: string, headers: Record<string, string> = {}, paused = false): Promise<SseClient> {
    const request = http.request(url, { headers: { accept: 'text/event-stream', ...headers } });
    const client = new SseClient(request);
    request.on('error', () => undefined);
    request.end();
    const [response] = (await once(request, 'response')) as [http.IncomingMessage];
    client.response = response;
    client.status = response.statusCode ?? 0;
    client.headers = response.headers;
    response.setEncoding('utf8');
    response.on('data', (chunk: string) => client.feed(chunk));
    response.on('end', () => (client.ended = true));
    response.on('error', () => (client.ended = true));
    if (paused) response.pause();
    return client;
  }

  /** The body so far, for non-SSE answers. */
  get text(): string {
    return this.buffer;
  }

  get closed(): boolean {
    return this.ended;
  }

  private feed(chunk: string): void {
    this.buffer += chunk;
    let end: number;
    while ((end = this.buffer.indexOf('\n\n')) >= 0) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      const event: SseEvent = { data: '' };
      let hasData = false;
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) this.comments.push(line);
        else if (line.startsWith('id: ')) event.id = line.slice(4);
        else if (line.startsWith('data: ')) {
          event.data += line.slice(6);
          hasData = true;
        }
      }
      if (hasData) this.events.push(event);
    }
  }

  /** Waits until at least `n` events arrived. */
  async waitFor(n: number, timeoutMs = 10_000): Promise<SseEvent[]> {
    await eventually(
      () => this.events.length >= n || this.ended,
      `${n} server-sent events (have ${this.events.length})`,
      timeoutMs,
    );
    if (this.events.length < n) throw new Error(`stream ended after ${this.events.length} of ${n} events`);
    return this.events;
  }

  pause(): void {
    this.response?.pause();
  }

  resume(): void {
    this.response?.resume();
  }

  /** Drops the connection, as a client that goes away would. */
  close(): void {
    this.request.destroy();
    this.response?.destroy();
  }
}
