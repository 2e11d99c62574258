/**
 * Which DataProducts a list or watch request selects, and the watch itself: `?watch=true` on a
 * list path streams the changes as JSON lines `{"type": "ADDED" | "MODIFIED" | "DELETED",
 * "object": {...}}`, Kubernetes style. Without `resourceVersion` the stream starts with an ADDED
 * line per selected product (a list), then every change after that list; with one, every change
 * after it. A failure once the stream has started (the version is too old: `watch-expired`) is
 * one last `{"type": "ERROR", "object": <problem>}` line.
 */
import { once } from 'node:events';
import type { Request, Response } from 'express';
import { OfftakeError, type Problem } from '../../lib/errors.ts';
import type { Logger } from '../../lib/logger.ts';
import { parseLabelSelector, type ParsedLabelSelector } from '../../lib/resource-store/label-selector.ts';
import type {
  ResourceStore,
  StoredDataProduct,
  WatchEvent,
} from '../../lib/resource-store/resource-store.ts';

/** The media type of a watch: one JSON object per line. */
export const WATCH_MEDIA_TYPE = 'application/x-ndjson';

/** The longest `timeoutSeconds` a watch may ask for (a day); clients resume from their last resourceVersion. */
const MAX_TIMEOUT_SECONDS = 86_400;

/** The products a list or watch request selects, from its query. */
export interface Selection {
  namespace?: string;
  labelSelector?: string;
  /** From `fieldSelector`: `metadata.name=<name>` and `metadata.namespace=<namespace>`. */
  fields: { name?: string; namespace?: string };
}

/** What a list path was asked for: the selection, and whether (and from where, for how long) to watch. */
export interface ListQuery {
  labelSelector?: string;
  fields: Selection['fields'];
  watch: boolean;
  resourceVersion?: string;
  timeoutSeconds?: number;
}

function single(value: unknown, name: string): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string') {
    throw new OfftakeError('invalid-parameter', `${name} must be given once, as a string.`);
  }
  return value;
}

/**
 * Reads `labelSelector`, `fieldSelector`, `watch`, `resourceVersion` and `timeoutSeconds`; bad
 * values are `invalid-parameter`. A list without watch reads the current state, which is never
 * older than a `resourceVersion` it was given (as in Kubernetes), so it ignores the last two.
 */
export function listQuery(req: Request): ListQuery {
  const labelSelector = single(req.query.labelSelector, 'labelSelector');
  // Parsed now, so a bad selector is a 400 before a watch starts streaming.
  if (labelSelector !== undefined) parseLabelSelector(labelSelector);
  const watchText = single(req.query.watch, 'watch');
  if (watchText !== undefined && !['true', 'false', '1', '0'].includes(watchText)) {
    throw new OfftakeError('invalid-parameter', 'watch must be true or false.');
  }
  const watch = watchText === 'true' || watchText === '1';
  const resourceVersion = single(req.query.resourceVersion, 'resourceVersion') || undefined;
  const timeoutText = single(req.query.timeoutSeconds, 'timeoutSeconds');
  let timeoutSeconds: number | undefined;
  if (timeoutText !== undefined) {
    timeoutSeconds = Number(timeoutText);
    if (!/^\d+$/.test(timeoutText) || timeoutSeconds < 1 || timeoutSeconds > MAX_TIMEOUT_SECONDS) {
      throw new OfftakeError(
        'invalid-parameter',
        `timeoutSeconds must be an integer from 1 to ${MAX_TIMEOUT_SECONDS}.`,
      );
    }
  }
  return {
    labelSelector,
    fields: fieldSelector(single(req.query.fieldSelector, 'fieldSelector')),
    watch,
    resourceVersion,
    timeoutSeconds,
  };
}

/**
 * Parses a field selector. Kubernetes' grammar (`field=value` joined by commas, `==` also
 * accepted) over the fields every kind supports: `metadata.name` and `metadata.namespace`.
 */
function fieldSelector(text: string | undefined): Selection['fields'] {
  const fields: Selection['fields'] = {};
  if (text === undefined || text === '') return fields;
  for (const requirement of text.split(',')) {
    const match = /^\s*(metadata\.name|metadata\.namespace)\s*==?\s*([a-z0-9]([-a-z0-9]*[a-z0-9])?)\s*$/.exec(
      requirement,
    );
    if (match === null) {
      throw new OfftakeError(
        'invalid-parameter',
        `fieldSelector ${JSON.stringify(requirement.slice(0, 80))} is not supported: use metadata.name=<name> or metadata.namespace=<namespace>.`,
      );
    }
    const key = match[1] === 'metadata.name' ? 'name' : 'namespace';
    if (fields[key] !== undefined && fields[key] !== match[2]) {
      // Two different values can never both hold: nothing is selected, as in Kubernetes.
      fields[key] = '';
    } else {
      fields[key] = match[2];
    }
  }
  return fields;
}

/** A predicate for the products a selection takes (the namespace is the store's filter). */
function selector(selection: Selection): (product: StoredDataProduct) => boolean {
  const labels: ParsedLabelSelector | undefined =
    selection.labelSelector === undefined ? undefined : parseLabelSelector(selection.labelSelector);
  const { name, namespace } = selection.fields;
  return (product) =>
    (name === undefined || product.metadata.name === name) &&
    (namespace === undefined || product.metadata.namespace === namespace) &&
    (labels === undefined || labels.matches(product.metadata.labels));
}

/** Lists the selected products: the items and the store's resourceVersion of the read. */
export async function listSelected(
  store: ResourceStore,
  selection: Selection,
): Promise<{ items: StoredDataProduct[]; resourceVersion: string }> {
  const result = await store.list({ namespace: selection.namespace, labelSelector: selection.labelSelector });
  const selects = selector(selection);
  return { items: result.items.filter(selects), resourceVersion: result.resourceVersion };
}

/** One line of a watch. */
type WatchLine = WatchEvent | { type: 'ERROR'; object: Problem };

/**
 * Streams the changes of the selected products until the client disconnects, `timeoutSeconds`
 * pass or the store closes its watches (the server is stopping). An object whose labels stop
 * matching a label selector is sent as DELETED, one that starts matching as ADDED.
 */
export async function serveWatch(
  req: Request,
  res: Response,
  store: ResourceStore,
  selection: Selection,
  options: { resourceVersion?: string; timeoutSeconds?: number; logger?: Logger },
): Promise<void> {
  const selects = selector(selection);
  let initial: StoredDataProduct[] = [];
  let from = options.resourceVersion;
  // Started from a list, the watch knows every selected object; resumed, only those it sees.
  const knowsAll = from === undefined;
  // Failures up to here (a bad resourceVersion) are answered as problems: nothing was sent yet.
  if (from === undefined) {
    const listed = await listSelected(store, selection);
    initial = listed.items;
    from = listed.resourceVersion;
  }
  const watch = store.watch({ resourceVersion: from, namespace: selection.namespace });
  const gone = new AbortController();
  const stop = () => {
    gone.abort();
    void watch.close();
  };
  res.on('close', stop);
  const timer =
    options.timeoutSeconds === undefined ? undefined : setTimeout(stop, options.timeoutSeconds * 1000);

  res.status(200).set({
    'Content-Type': `${WATCH_MEDIA_TYPE}; charset=utf-8`,
    'Cache-Control': 'no-cache, no-transform',
    'X-Accel-Buffering': 'no',
  });
  res.flushHeaders();
  const send = async (line: WatchLine) => {
    // JSON.stringify never emits a raw newline: one event, one line.
    if (!res.write(`${JSON.stringify(line)}\n`)) {
      await once(res, 'drain', { signal: gone.signal }).catch(() => undefined);
    }
  };

  const selected = new Set<string>();
  const keyOf = (p: StoredDataProduct) => `${p.metadata.namespace}/${p.metadata.name}`;
  try {
    for (const object of initial) {
      selected.add(keyOf(object));
      await send({ type: 'ADDED', object });
    }
    for await (const event of watch) {
      const key = keyOf(event.object);
      if (selects(event.object)) {
        if (event.type === 'DELETED') selected.delete(key);
        const type = event.type === 'MODIFIED' && !selected.has(key) && knowsAll ? 'ADDED' : event.type;
        if (event.type !== 'DELETED') selected.add(key);
        await send({ type, object: event.object });
      } else if (selected.delete(key)) {
        await send({ type: 'DELETED', object: event.object });
      }
      if (gone.signal.aborted) break;
    }
  } catch (err) {
    if (!gone.signal.aborted) {
      const problem =
        err instanceof OfftakeError
          ? err.toProblem(req.originalUrl)
          : new OfftakeError('internal', 'The watch failed; the error has been logged.').toProblem(
              req.originalUrl,
            );
      if (!(err instanceof OfftakeError)) options.logger?.error({ err }, 'watch failed');
      await send({ type: 'ERROR', object: problem });
    }
  } finally {
    clearTimeout(timer);
    res.off('close', stop);
    await watch.close();
    res.end();
  }
}
