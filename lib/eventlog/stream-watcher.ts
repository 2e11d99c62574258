/**
 * One blocking connection that tells any number of followers when their streams have new
 * entries. Followers read with plain, non-blocking XREADs on the shared command connection and,
 * when they have caught up, wait here; the watcher runs one `XREAD BLOCK` over every stream
 * somebody waits on (from the earliest position waited for) and wakes the waiters the entry it
 * gets back is new to. So a thousand product tails or API followers cost one connection, not a
 * thousand.
 *
 * A waiter that arrives while the XREAD blocks without its stream (or from a later position)
 * interrupts it with `CLIENT UNBLOCK`, so it is never left waiting for the block timeout while
 * its stream moves. A wake-up is a hint, not a promise: the follower reads again and waits again
 * when there is still nothing for it.
 */
import type { Redis } from 'ioredis';
import { compareOffsets, type Offset } from './event-log.ts';

/** What a {@link StreamWatcher} needs. */
export interface StreamWatcherOptions {
  /** Opens the watcher's own connection (it blocks). */
  connect: () => Redis;
  /** A connection for `CLIENT UNBLOCK` (any connection that does not block). */
  control: Redis;
  /** Longest single block, in ms; waiters are unaffected by it. */
  blockMs: number;
}

interface Waiter {
  after: Offset;
  wake: () => void;
}

type Entry = [string, string[]];

/** Pause after a failed XREAD before the next, in ms: the followers see the failure themselves. */
const ERROR_PAUSE_MS = 200;
/** How often an unanswered `CLIENT UNBLOCK` is tried again (the XREAD may not have arrived yet). */
const UNBLOCK_ATTEMPTS = 50;

/** Wakes followers of Redis streams from one blocking connection. */
export class StreamWatcher {
  private readonly options: StreamWatcherOptions;
  private readonly waiters = new Map<string, Set<Waiter>>();
  private connection: Redis | undefined;
  private clientId: number | undefined;
  /** The streams and positions of the XREAD in flight, or null between XREADs. */
  private inflight: Map<string, Offset> | null = null;
  private cycle = 0;
  /** The last cycle an unblock was sent for: one interrupt per XREAD is enough. */
  private unblockedCycle = -1;
  private idle: (() => void) | undefined;
  private running = false;
  private closed = false;

  constructor(options: StreamWatcherOptions) {
    this.options = options;
  }

  /** How many followers are waiting now (for tests and metrics). */
  get waiting(): number {
    let n = 0;
    for (const set of this.waiters.values()) n += set.size;
    return n;
  }

  /**
   * Resolves once stream `key` probably holds an entry after `after`, when `signal` aborts, or
   * when the watcher closes. Never rejects: a follower finds errors by reading.
   */
  wait(key: string, after: Offset, signal?: AbortSignal): Promise<void> {
    if (this.closed || signal?.aborted === true) return Promise.resolve();
    return new Promise<void>((resolve) => {
      let set = this.waiters.get(key);
      if (set === undefined) {
        set = new Set();
        this.waiters.set(key, set);
      }
      const waiters = set;
      const waiter: Waiter = {
        after,
        wake: () => {
          waiters.delete(waiter);
          if (waiters.size === 0 && this.waiters.get(key) === waiters) this.waiters.delete(key);
          signal?.removeEventListener('abort', waiter.wake);
          resolve();
        },
      };
      waiters.add(waiter);
      signal?.addEventListener('abort', waiter.wake, { once: true });
      this.start();
      const inflight = this.inflight;
      if (inflight === null) {
        this.idle?.();
        return;
      }
      const watched = inflight.get(key);
      if (watched === undefined || compareOffsets(after, watched) < 0) void this.unblock();
    });
  }

  /** Wakes every waiter and closes the watcher's connection. */
  close(): void {
    this.closed = true;
    this.wakeAll();
    this.idle?.();
    this.connection?.disconnect();
    this.connection = undefined;
  }

  private start(): void {
    if (this.running || this.closed) return;
    this.running = true;
    void this.loop().finally(() => {
      this.running = false;
    });
  }

  private wakeAll(): void {
    for (const set of [...this.waiters.values()]) for (const waiter of [...set]) waiter.wake();
  }

  private ensureConnection(): Redis {
    if (this.connection === undefined) {
      const connection = this.options.connect();
      // A reconnected connection has another id; fetch it again before the next XREAD.
      connection.on('ready', () => {
        this.clientId = undefined;
      });
      connection.on('error', () => undefined);
      this.connection = connection;
    }
    return this.connection;
  }

  private async loop(): Promise<void> {
    while (!this.closed) {
      if (this.waiters.size === 0) {
        await new Promise<void>((resolve) => {
          this.idle = resolve;
        });
        this.idle = undefined;
        continue;
      }
      const connection = this.ensureConnection();
      let reply: [string, Entry[]][] | null = null;
      try {
        if (this.clientId === undefined) {
          this.clientId = await connection.client('ID');
          continue;
        }
        const keys: string[] = [];
        const ids: Offset[] = [];
        const inflight = new Map<string, Offset>();
        for (const [key, set] of this.waiters) {
          let earliest: Offset | undefined;
          for (const waiter of set) {
            if (earliest === undefined || compareOffsets(waiter.after, earliest) < 0) earliest = waiter.after;
          }
          keys.push(key);
          ids.push(earliest!);
          inflight.set(key, earliest!);
        }
        this.inflight = inflight;
        this.cycle++;
        reply = await connection.xread('COUNT', 1, 'BLOCK', this.options.blockMs, 'STREAMS', ...keys, ...ids);
      } catch {
        if (this.closed) return;
        // Let the followers read for themselves: their reads fail (or succeed) on their own.
        this.wakeAll();
        await new Promise((resolve) => setTimeout(resolve, ERROR_PAUSE_MS));
      } finally {
        this.inflight = null;
      }
      for (const [key, entries] of reply ?? []) {
        const first = entries[0]?.[0];
        const set = this.waiters.get(key);
        if (first === undefined || set === undefined) continue;
        for (const waiter of [...set]) if (compareOffsets(waiter.after, first) < 0) waiter.wake();
      }
    }
  }

  /** Interrupts the XREAD in flight so the next one includes a new waiter. */
  private async unblock(): Promise<void> {
    const cycle = this.cycle;
    if (this.unblockedCycle === cycle) return;
    this.unblockedCycle = cycle;
    try {
      for (let attempt = 0; attempt < UNBLOCK_ATTEMPTS; attempt++) {
        const id = this.clientId;
        if (this.inflight === null || this.cycle !== cycle || id === undefined || this.closed) return;
        if ((await this.options.control.client('UNBLOCK', id)) === 1) return;
        // The XREAD has not reached the server yet (it travels on another connection).
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    } catch {
      // The XREAD then ends at its block timeout at the latest.
    }
  }
}
