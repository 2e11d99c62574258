/**
 * A watch over DataProduct custom resources: an async iterable of {@link WatchEvent}s read from
 * the API server's watch stream with `@kubernetes/client-node`'s {@link Watch}, resumed from the
 * last seen resourceVersion whenever the server ends a stream, so it behaves like one endless
 * watch — until the resourceVersion is too old (410 Gone), which ends it with `watch-expired`.
 */
import { ApiException, Watch as KubeWatch, type KubeConfig } from '@kubernetes/client-node';
import { OfftakeError } from '../errors.ts';
import { kubeError, type KubeStatus } from './kubernetes-errors.ts';
import type { Watch, WatchEvent } from './resource-store.ts';

/** What a {@link KubernetesWatch} reads and from where. */
export interface KubernetesWatchOptions {
  kubeConfig: KubeConfig;
  /** The collection's path, e.g. `/apis/offtake.dev/v1alpha1/namespaces/checkout/dataproducts`. */
  path: string;
  /** The resourceVersion the watch starts after; rejects when it cannot start. */
  startAfter: Promise<string>;
  /** Turns an object of the stream into the store's shape. */
  decode: (object: unknown) => WatchEvent['object'];
  /**
   * How long the server keeps one watch request open, in seconds. Below the client's inactivity
   * limit (30 s), so a quiet watch is ended and resumed by the server, never cut by the client.
   */
  requestTimeoutSeconds?: number;
  /** Called once when the watch closes, so its owner can forget it. */
  onClose?: () => void;
}

/**
 * An item of the watch's queue: an event, a bookmark (a resourceVersion to resume after), or the
 * end of one watch request (`null`: the server ended it cleanly).
 */
type Item = { event: WatchEvent } | { bookmark: string } | { end: unknown };

/**
 * One running watch. Events arrive in resourceVersion order within a request; each new request
 * starts after the last resourceVersion seen (events and bookmarks), so none is missed or
 * repeated across them. A broken connection ends the watch with `unavailable` (the caller
 * watches again from its last resourceVersion), a too-old resourceVersion with `watch-expired`.
 */
export class KubernetesWatch implements Watch {
  private readonly client: KubeWatch;
  private readonly path: string;
  private readonly startAfter: Promise<string>;
  private readonly decode: (object: unknown) => WatchEvent['object'];
  private readonly requestTimeoutSeconds: number;
  private readonly onClose: (() => void) | undefined;
  private readonly events: AsyncGenerator<WatchEvent, void, undefined>;
  private readonly queue: Item[] = [];
  private wake: (() => void) | undefined;
  private request: AbortController | undefined;
  private closed = false;

  constructor(opts: KubernetesWatchOptions) {
    this.client = new KubeWatch(opts.kubeConfig);
    this.path = opts.path;
    this.startAfter = opts.startAfter;
    this.decode = opts.decode;
    this.requestTimeoutSeconds = opts.requestTimeoutSeconds ?? 25;
    this.onClose = opts.onClose;
    // Nobody may be iterating yet; the start is awaited (and its rejection reported) on the first read.
    this.startAfter.catch(() => undefined);
    this.events = this.read();
  }

  [Symbol.asyncIterator](): AsyncGenerator<WatchEvent, void, undefined> {
    return this.events;
  }

  /** Stops the watch: a pending read ends at once (iteration finishes) and the request is aborted. */
  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.request?.abort();
      this.request = undefined;
      this.wake?.();
      this.onClose?.();
    }
    return Promise.resolve();
  }

  private async *read(): AsyncGenerator<WatchEvent, void, undefined> {
    try {
      let last: string;
      try {
        last = await this.startAfter;
      } catch (err) {
        if (this.closed) return;
        throw err;
      }
      while (!this.closed) {
        await this.open(last);
        for (;;) {
          const item = await this.next();
          if (item === undefined) return;
          if ('end' in item) {
            if (item.end !== null) throw failure(item.end);
            break;
          }
          if ('bookmark' in item) {
            last = item.bookmark;
            continue;
          }
          last = item.event.object.metadata.resourceVersion;
          yield item.event;
          if (this.closed) return;
        }
      }
    } finally {
      await this.close();
    }
  }

  /** Starts one watch request after `resourceVersion`; its events and its end go to the queue. */
  private async open(resourceVersion: string): Promise<void> {
    let ended = false;
    const push = (item: Item): void => {
      if (ended || this.closed) return;
      if ('end' in item) ended = true;
      this.queue.push(item);
      this.wake?.();
    };
    try {
      const request = await this.client.watch(
        this.path,
        {
          resourceVersion,
          allowWatchBookmarks: true,
          timeoutSeconds: this.requestTimeoutSeconds,
        },
        (type: string, object: unknown) => {
          if (type === 'BOOKMARK') {
            // A bookmark moves the resume point past changes this watch did not select.
            const version = (object as { metadata?: { resourceVersion?: string } }).metadata?.resourceVersion;
            if (version !== undefined) push({ bookmark: version });
          } else if (type === 'ERROR') {
            push({ end: statusException(object as KubeStatus) });
          } else if (type === 'ADDED' || type === 'MODIFIED' || type === 'DELETED') {
            push({ event: { type, object: this.decode(object) } });
          }
        },
        // The client's inactivity timeout is no failure: the next request resumes where this one was.
        (err: unknown) => push({ end: err === null || err === undefined || isTimeout(err) ? null : err }),
      );
      if (this.closed) request.abort();
      else this.request = request;
    } catch (err) {
      push({ end: err });
    }
  }

  /** The next queued item, waiting for one; undefined once closed. */
  private async next(): Promise<Item | undefined> {
    for (;;) {
      if (this.closed) return undefined;
      const item = this.queue.shift();
      if (item !== undefined) return item;
      await new Promise<void>((resolve) => (this.wake = resolve));
      this.wake = undefined;
    }
  }
}

function isTimeout(err: unknown): boolean {
  return err instanceof Error && err.name === 'TimeoutError';
}

/** A Status sent in a watch stream, as the client's exception, so one mapping serves calls and watches. */
function statusException(status: KubeStatus): ApiException<string> {
  const code = typeof status.code === 'number' ? status.code : 500;
  return new ApiException(code, status.message ?? `HTTP ${code}`, JSON.stringify(status), {});
}

/**
 * The coded error that ends a watch: the server's Status (410 Gone is `watch-expired`), an HTTP
 * status the stream was refused with, or `unavailable` for a broken or refused connection.
 */
function failure(err: unknown): OfftakeError {
  const call = { subject: 'The DataProduct watch', write: false };
  if (err instanceof ApiException) return kubeError(err, call);
  const statusCode = (err as { statusCode?: unknown } | undefined)?.statusCode;
  if (typeof statusCode === 'number') {
    return kubeError(statusException({ code: statusCode, message: (err as Error).message }), call);
  }
  return new OfftakeError('unavailable', 'The DataProduct watch lost its connection to the Kubernetes API.', {
    cause: err,
  });
}
