/**
 * Following products from the CLI the way Kubernetes informers do: list, then watch from the
 * list's resourceVersion; when a stream ends, watch again after the last change seen; when that
 * version is too old (410), list again and report what changed meanwhile.
 */
import { setTimeout as delay } from 'node:timers/promises';
import type { StoredDataProduct } from '../lib/resource-store/resource-store.ts';
import { ApiError, type ApiClient, type ProductSelection } from './api-client.ts';

/**
 * What {@link followProducts} reports: a change of a product, or `SYNCED` after each list with
 * every selected product (so a caller can tell "none" from "nothing happened yet").
 */
export type ProductChange =
  | { type: 'ADDED' | 'MODIFIED' | 'DELETED'; object: StoredDataProduct }
  | { type: 'SYNCED'; objects: StoredDataProduct[] };

/** Options of {@link followProducts}. */
export interface FollowOptions {
  signal: AbortSignal;
  /** Consecutive failures to reach the API before giving up (default 5). */
  maxRetries?: number;
  /** Pause after a failure, in ms (default 1000). */
  retryDelayMs?: number;
  /**
   * How long one watch request lasts, in seconds (default 240): the server ends it cleanly, the
   * client watches again, and no proxy or client body timeout ever sees an idle stream.
   */
  watchSeconds?: number;
}

function keyOf(product: StoredDataProduct): string {
  return `${product.metadata.namespace}/${product.metadata.name}`;
}

/**
 * The selected products' changes, from a first list on, until `signal` aborts. Errors the API
 * answers (other than an expired watch) end it; an unreachable API is retried `maxRetries` times.
 */
export async function* followProducts(
  api: ApiClient,
  selection: ProductSelection,
  options: FollowOptions,
): AsyncGenerator<ProductChange, void, undefined> {
  const { signal, maxRetries = 5, retryDelayMs = 1000, watchSeconds = 240 } = options;
  const known = new Map<string, StoredDataProduct>();
  let resourceVersion: string | undefined;
  let failures = 0;
  while (!signal.aborted) {
    try {
      if (resourceVersion === undefined) {
        const listed = await api.listAt(selection);
        failures = 0;
        const present = new Set(listed.items.map(keyOf));
        for (const [key, object] of known) {
          if (present.has(key)) continue;
          known.delete(key);
          yield { type: 'DELETED', object };
        }
        for (const object of listed.items) {
          const type = known.has(keyOf(object)) ? 'MODIFIED' : 'ADDED';
          known.set(keyOf(object), object);
          yield { type, object };
        }
        yield { type: 'SYNCED', objects: [...known.values()] };
        resourceVersion = listed.resourceVersion;
      }
      const lines = api.watch(selection, {
        resourceVersion,
        timeoutSeconds: watchSeconds,
        signal,
        onOpen: () => (failures = 0),
      });
      for await (const line of lines) {
        if (line.type === 'ERROR') throw new ApiError(line.object);
        resourceVersion = line.object.metadata.resourceVersion;
        if (line.type === 'DELETED') known.delete(keyOf(line.object));
        else known.set(keyOf(line.object), line.object);
        yield line;
      }
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof ApiError) {
        if (err.problem.code !== 'watch-expired') throw err;
        resourceVersion = undefined;
        continue;
      }
      if (++failures > maxRetries) throw err;
      await delay(retryDelayMs, undefined, { signal }).catch(() => undefined);
    }
  }
}
