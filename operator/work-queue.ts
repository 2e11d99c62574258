/**
 * A work queue of keys, after client-go's: a key is queued at most once however often it is
 * added; a key being processed is never handed out again until `done`, and adds in the meantime
 * queue it once more afterwards — so there is one reconcile per product at a time, and no
 * change is missed. Failed keys come back after a capped exponential backoff.
 */

/** Options of a {@link WorkQueue}. */
export interface WorkQueueOptions {
  /** Backoff after the first failure of a key, in ms (default 500); doubles per failure. */
  baseDelayMs?: number;
  /** Longest backoff, in ms (default 60000). */
  maxDelayMs?: number;
}

/** A deduplicating, per-key exclusive queue with delayed and rate-limited adds. */
export class WorkQueue {
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly ready: string[] = [];
  private readonly queued = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly dirty = new Set<string>();
  private readonly delayed = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly failures = new Map<string, number>();
  private readonly waiters: ((key: string | undefined) => void)[] = [];
  private shuttingDown = false;

  constructor(options: WorkQueueOptions = {}) {
    this.baseDelayMs = options.baseDelayMs ?? 500;
    this.maxDelayMs = options.maxDelayMs ?? 60_000;
  }

  /** Queues `key` now (once, however often it is added). */
  add(key: string): void {
    if (this.shuttingDown) return;
    if (this.processing.has(key)) {
      this.dirty.add(key);
      return;
    }
    if (this.queued.has(key)) return;
    const waiter = this.waiters.shift();
    if (waiter !== undefined) {
      this.processing.add(key);
      waiter(key);
      return;
    }
    this.queued.add(key);
    this.ready.push(key);
  }

  /** Queues `key` after `delayMs`; an earlier pending add of the key stands. */
  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const at = Date.now() + delayMs;
    const pending = this.delayed.get(key);
    if (pending !== undefined) {
      if (pending.at <= at) return;
      clearTimeout(pending.timer);
    }
    const timer = setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, delayMs);
    this.delayed.set(key, { at, timer });
  }

  /** Queues `key` after its backoff: `baseDelayMs * 2^(failures - 1)`, at most `maxDelayMs`. */
  addRateLimited(key: string): number {
    const failures = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, failures);
    const delay = Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** Math.min(failures - 1, 30));
    this.addAfter(key, delay);
    return delay;
  }

  /** Forgets the failures of `key`: its next backoff starts from the base again. */
  forget(key: string): void {
    this.failures.delete(key);
  }

  /** How often `key` failed in a row. */
  failuresOf(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** The next key to process (now exclusively the caller's until `done`), or undefined once shut down. */
  get(): Promise<string | undefined> {
    const key = this.ready.shift();
    if (key !== undefined) {
      this.queued.delete(key);
      this.processing.add(key);
      return Promise.resolve(key);
    }
    if (this.shuttingDown) return Promise.resolve(undefined);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Marks `key` processed; queues it again if it was added meanwhile. */
  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.delete(key)) this.add(key);
  }

  /** Keys waiting to be processed now. */
  get length(): number {
    return this.ready.length;
  }

  /** Stops handing out keys: pending and future `get` calls resolve undefined; delayed adds are dropped. */
  shutDown(): void {
    this.shuttingDown = true;
    for (const { timer } of this.delayed.values()) clearTimeout(timer);
    this.delayed.clear();
    this.ready.length = 0;
    this.queued.clear();
    for (const waiter of this.waiters.splice(0)) waiter(undefined);
  }
}
