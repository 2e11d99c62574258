/**
 * The DataProduct controller: keeps a {@link WorkQueue} of products fed from the resource store
 * — a list, then a watch from the list's resourceVersion (listing again when the watch expires),
 * plus a periodic resync — and runs the reconciler on it with a few workers, one reconcile per
 * product at a time. It talks only to the {@link ResourceStore} interface, so the embedded store
 * and the Kubernetes API serve alike.
 *
 * Watch events are hints, never the truth: the reconciler reads the product again. A change of
 * status alone does not queue the product (the operator writes status itself; that would loop).
 */
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { isOfftakeError } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';
import type { ControllerMetrics } from '../lib/metrics.ts';
import type { ResourceStore, StoredDataProduct, Watch } from '../lib/resource-store/resource-store.ts';
import { classifyFailure } from './failures.ts';
import type { ReconcileResult } from './reconciler.ts';
import { WorkQueue, type WorkQueueOptions } from './work-queue.ts';

/** What the controller runs per product. */
export interface Reconciler {
  reconcile(namespace: string, name: string): Promise<ReconcileResult>;
}

/** Options of a {@link DataProductController}. */
export interface DataProductControllerOptions {
  store: ResourceStore;
  reconciler: Reconciler;
  logger: Logger;
  /** Products reconciled at once (default 4). */
  concurrency?: number;
  /** Every product is listed and queued again this often, in ms (default 300000). */
  resyncMs?: number;
  /** Pause before watching again after a watch failed, in ms (default 1000). */
  watchRetryMs?: number;
  /** Backoff of failed reconciles. */
  backoff?: WorkQueueOptions;
  /** Told of every reconcile and where the queue's depth is, when given. */
  metrics?: ControllerMetrics;
}

/** What the controller remembers of a product to tell a real change from a status write. */
interface Seen {
  uid: string;
  generation: number;
  deletionTimestamp: string | undefined;
  finalizers: string;
}

function seenOf(product: StoredDataProduct): Seen {
  const m = product.metadata;
  return {
    uid: m.uid,
    generation: m.generation,
    deletionTimestamp: m.deletionTimestamp,
    finalizers: JSON.stringify(m.finalizers),
  };
}

function keyOf(product: StoredDataProduct): string {
  return `${product.metadata.namespace}/${product.metadata.name}`;
}

/**
 * Runs the reconciler over every product. Emits `error` for failures of its own loops (list,
 * watch) and `reconcileError` (key, error) for failed reconciles; both are also logged.
 */
export class DataProductController extends EventEmitter {
  private readonly options: Required<Omit<DataProductControllerOptions, 'backoff' | 'metrics'>>;
  private readonly metrics: ControllerMetrics | undefined;
  private readonly queue: WorkQueue;
  private readonly seen = new Map<string, Seen>();
  private watch: Watch | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private stopped = false;
  private loops: Promise<void>[] = [];
  private readonly stopSignal = new AbortController();

  constructor(options: DataProductControllerOptions) {
    super();
    this.options = { concurrency: 4, resyncMs: 300_000, watchRetryMs: 1000, ...options };
    this.queue = new WorkQueue(options.backoff);
    this.metrics = options.metrics;
    this.metrics?.watchQueue(() => this.queue.length);
  }

  /** Lists every product, queues them, then watches and reconciles until {@link stop}. */
  async start(): Promise<void> {
    const list = await this.options.store.list();
    this.sync(list.items);
    this.loops = [
      this.watchLoop(list.resourceVersion),
      ...Array.from({ length: this.options.concurrency }, () => this.workerLoop()),
    ];
    this.resyncTimer = setInterval(() => void this.resync(), this.options.resyncMs);
    this.resyncTimer.unref();
  }

  /** Stops watching, lets running reconciles finish, and resolves when every loop has ended. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.stopSignal.abort();
    clearInterval(this.resyncTimer);
    this.queue.shutDown();
    await this.watch?.close().catch(() => undefined);
    await Promise.allSettled(this.loops);
  }

  /** Queues a product now (e.g. from a test or an API hint). */
  enqueue(namespace: string, name: string): void {
    this.queue.add(`${namespace}/${name}`);
  }

  /** Queues every listed product, and every remembered one that is gone (its reconcile sees it gone). */
  private sync(items: StoredDataProduct[]): void {
    const present = new Set<string>();
    for (const item of items) {
      const key = keyOf(item);
      present.add(key);
      this.seen.set(key, seenOf(item));
      this.queue.add(key);
    }
    for (const key of [...this.seen.keys()]) {
      if (!present.has(key)) {
        this.seen.delete(key);
        this.queue.add(key);
      }
    }
  }

  private async resync(): Promise<void> {
    if (this.stopped) return;
    try {
      this.sync((await this.options.store.list()).items);
    } catch (err) {
      this.report(err, 'resync');
    }
  }

  /** Watches from `resourceVersion`; lists again when the watch expired, waits and resumes on other errors. */
  private async watchLoop(resourceVersion: string): Promise<void> {
    let from = resourceVersion;
    while (!this.stopped) {
      try {
        const watch = this.options.store.watch({ resourceVersion: from });
        this.watch = watch;
        if (this.stopped) {
          await watch.close();
          return;
        }
        for await (const event of watch) {
          from = event.object.metadata.resourceVersion;
          this.observe(event.type, event.object);
        }
      } catch (err) {
        if (this.stopped) return;
        if (isOfftakeError(err, 'watch-expired')) {
          this.options.logger.info('watch expired; listing again');
          try {
            const list = await this.options.store.list();
            this.sync(list.items);
            from = list.resourceVersion;
            continue;
          } catch (listError) {
            this.report(listError, 'list');
          }
        } else {
          this.report(err, 'watch');
        }
        await sleep(this.options.watchRetryMs, undefined, { signal: this.stopSignal.signal }).catch(
          () => undefined,
        );
      }
    }
  }

  private observe(type: 'ADDED' | 'MODIFIED' | 'DELETED', object: StoredDataProduct): void {
    const key = keyOf(object);
    if (type === 'DELETED') {
      this.seen.delete(key);
      this.queue.add(key);
      return;
    }
    const now = seenOf(object);
    const before = this.seen.get(key);
    this.seen.set(key, now);
    if (type === 'ADDED' || before === undefined || !sameSeen(before, now)) this.queue.add(key);
  }

  private async workerLoop(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      const started = Date.now();
      const slash = key.indexOf('/');
      try {
        const result = await this.options.reconciler.reconcile(key.slice(0, slash), key.slice(slash + 1));
        this.queue.forget(key);
        this.metrics?.reconciled(
          result.requeueAfterMs === undefined ? 'done' : 'requeued',
          (Date.now() - started) / 1000,
        );
        if (result.requeueAfterMs !== undefined) {
          this.queue.addAfter(key, Math.max(0, result.requeueAfterMs - (Date.now() - started)));
        }
      } catch (err) {
        this.metrics?.reconciled('failed', (Date.now() - started) / 1000);
        const delay = this.queue.addRateLimited(key);
        const { reason, message } = classifyFailure(err);
        this.options.logger.warn({ product: key, reason, message, retryInMs: delay }, 'reconcile failed');
        if (this.listenerCount('reconcileError') > 0) this.emit('reconcileError', key, err);
      } finally {
        this.queue.done(key);
      }
    }
  }

  private report(err: unknown, where: string): void {
    this.options.logger.error({ err, where }, 'controller error');
    if (this.listenerCount('error') > 0) this.emit('error', err);
  }
}

function sameSeen(a: Seen, b: Seen): boolean {
  return (
    a.uid === b.uid &&
    a.generation === b.generation &&
    a.deletionTimestamp === b.deletionTimestamp &&
    a.finalizers === b.finalizers
  );
}
