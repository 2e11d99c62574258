/**
 * A small HTTP client for the Offtake API, used by the CLI (and end-to-end tests).
 */
import { parse as parseYaml } from 'yaml';
import type { Problem } from '../lib/errors.ts';
import type { StoredDataProduct } from '../lib/resource-store/resource-store.ts';
import type { ProductConnection } from '../operator/product-connection.ts';

/** One line of a watch: a change of a product, or the error that ended the stream. */
export type WatchLine =
  { type: 'ADDED' | 'MODIFIED' | 'DELETED'; object: StoredDataProduct } | { type: 'ERROR'; object: Problem };

/** An event of the log as the API answers it: its envelope, offset and data. */
export interface LogEventJson {
  offset: string;
  id: string;
  source: string;
  type: string;
  time: string;
  data?: unknown;
  [attribute: string]: unknown;
}

/** Which products a list or watch takes: a namespace (all when absent), a label selector, one name. */
export interface ProductSelection {
  namespace?: string;
  labelSelector?: string;
  name?: string;
}

/** The query string of a selection (without the namespace, which is in the path). */
function selectionQuery(selection: ProductSelection): URLSearchParams {
  const query = new URLSearchParams();
  if (selection.labelSelector) query.set('labelSelector', selection.labelSelector);
  if (selection.name) query.set('fieldSelector', `metadata.name=${selection.name}`);
  return query;
}

function listPath(namespace: string | undefined): string {
  return namespace ? `/v1/namespaces/${namespace}/dataproducts` : '/v1/dataproducts';
}

/** A problem+json answer from the API. */
export class ApiError extends Error {
  readonly problem: Problem;
  constructor(problem: Problem) {
    super(`${problem.title}: ${problem.detail}`);
    this.name = 'ApiError';
    this.problem = problem;
  }
}

/** Prints an API error the way a user wants to read it: what, then where. */
export function formatApiError(err: ApiError): string {
  const lines = [`error: ${err.problem.title}: ${err.problem.detail}`];
  for (const e of err.problem.errors ?? []) {
    const where = [
      e.line !== undefined ? `line ${e.line}, column ${e.column ?? '?'}` : undefined,
      e.expressionColumn !== undefined ? `expression column ${e.expressionColumn}` : undefined,
    ].filter(Boolean);
    lines.push(`  ${e.pointer}${where.length ? ` (${where.join('; ')})` : ''}: ${e.message}`);
  }
  return lines.join('\n');
}

/** Talks to one Offtake API server. */
export class ApiClient {
  readonly baseUrl: string;
  private readonly token: string | undefined;

  /** `token`: the API's bearer token, when it has one. */
  constructor(baseUrl: string, token?: string) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.token = token;
  }

  /** Headers every request carries. */
  headers(extra: Record<string, string> = {}): Record<string, string> {
    return { ...(this.token === undefined ? {} : { authorization: `Bearer ${this.token}` }), ...extra };
  }

  /** One fetch, with an error that says what to do when the API cannot be reached. */
  private async send(path: string, init: RequestInit): Promise<Response> {
    try {
      return await fetch(this.baseUrl + path, init);
    } catch (err) {
      if (init.signal?.aborted) throw err;
      throw new Error(
        `cannot reach the Offtake API at ${this.baseUrl} (${(err as Error).message}); is \`offtake api\` or \`offtake up\` running?`,
        { cause: err },
      );
    }
  }

  private async request<T>(
    method: string,
    path: string,
    body?: { text: string; type: string },
  ): Promise<{ status: number; data: T }> {
    const res = await this.send(path, {
      method,
      headers: this.headers({ accept: 'application/json', ...(body ? { 'content-type': body.type } : {}) }),
      body: body?.text,
    });
    const data = await this.answer(res, path);
    if (!res.ok) throw new ApiError(data as Problem);
    return { status: res.status, data: data as T };
  }

  /**
   * The JSON of an answer. Something other than Offtake's JSON (a proxy's HTML error page, a
   * server that is not Offtake) is an error that names the server and the status, never a parser's.
   */
  private async answer(res: Response, path: string): Promise<unknown> {
    const text = await res.text();
    if (text === '') {
      if (res.ok) return undefined;
    } else if (/\bjson\b/i.test(res.headers.get('content-type') ?? '')) {
      try {
        return JSON.parse(text) as unknown;
      } catch {
        // reported below
      }
    }
    const excerpt = text.replace(/\s+/g, ' ').trim().slice(0, 120);
    throw new Error(
      `${this.baseUrl}${path} answered ${res.status} ${res.statusText} ` +
        `${excerpt ? `with something other than Offtake's JSON: ${excerpt}` : 'with an empty body'}; ` +
        'is --server the address of an Offtake API?',
    );
  }

  /** Creates the product, or replaces it when it exists. */
  async apply(
    namespace: string,
    text: string,
    type: string,
    dryRun: boolean,
  ): Promise<{ action: 'created' | 'configured' | 'unchanged'; object: StoredDataProduct }> {
    const q = dryRun ? '?dryRun=All' : '';
    try {
      const created = await this.request<StoredDataProduct>(
        'POST',
        `/v1/namespaces/${namespace}/dataproducts${q}`,
        { text, type },
      );
      return { action: 'created', object: created.data };
    } catch (err) {
      if (!(err instanceof ApiError) || err.problem.code !== 'already-exists') throw err;
    }
    const name = (parseYaml(text) as { metadata: { name: string } }).metadata.name;
    const before = await this.get(namespace, name);
    const replaced = await this.request<StoredDataProduct>(
      'PUT',
      `/v1/namespaces/${namespace}/dataproducts/${name}${q}`,
      { text, type },
    );
    const action =
      replaced.data.metadata.generation === before.metadata.generation ? 'unchanged' : 'configured';
    return { action, object: replaced.data };
  }

  async get(namespace: string, name: string): Promise<StoredDataProduct> {
    return (
      await this.request<StoredDataProduct>(
        'GET',
        `/v1/namespaces/${namespace}/dataproducts/${encodeURIComponent(name)}`,
      )
    ).data;
  }

  async list(namespace: string | undefined, labelSelector?: string): Promise<StoredDataProduct[]> {
    const q = labelSelector ? `?labelSelector=${encodeURIComponent(labelSelector)}` : '';
    const path = namespace ? `/v1/namespaces/${namespace}/dataproducts${q}` : `/v1/dataproducts${q}`;
    return (await this.request<{ items: StoredDataProduct[] }>('GET', path)).data.items;
  }

  /** Lists the selected products with the resourceVersion of the read, to watch from. */
  async listAt(
    selection: ProductSelection,
  ): Promise<{ items: StoredDataProduct[]; resourceVersion: string }> {
    const query = selectionQuery(selection).toString();
    const { data } = await this.request<{
      items: StoredDataProduct[];
      metadata: { resourceVersion: string };
    }>('GET', `${listPath(selection.namespace)}${query ? `?${query}` : ''}`);
    return { items: data.items, resourceVersion: data.metadata.resourceVersion };
  }

  /**
   * Streams the changes of the selected products after `resourceVersion`, until the server ends
   * the stream (after `timeoutSeconds`, or when it stops) or `signal` aborts. `onOpen` runs once
   * the server has accepted the watch.
   */
  async *watch(
    selection: ProductSelection,
    opts: { resourceVersion: string; timeoutSeconds?: number; signal?: AbortSignal; onOpen?: () => void },
  ): AsyncGenerator<WatchLine, void, undefined> {
    const query = selectionQuery(selection);
    query.set('watch', 'true');
    query.set('resourceVersion', opts.resourceVersion);
    if (opts.timeoutSeconds !== undefined) query.set('timeoutSeconds', String(opts.timeoutSeconds));
    const res = await this.send(`${listPath(selection.namespace)}?${query.toString()}`, {
      headers: this.headers({ accept: 'application/x-ndjson' }),
      signal: opts.signal,
    });
    if (!res.ok) throw new ApiError((await this.answer(res, listPath(selection.namespace))) as Problem);
    if (res.body === null) throw new Error(`${this.baseUrl} answered a watch without a body`);
    opts.onOpen?.();
    let buffered = '';
    for await (const chunk of res.body.pipeThrough(new TextDecoderStream())) {
      buffered += chunk;
      let end: number;
      while ((end = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, end).trim();
        buffered = buffered.slice(end + 1);
        if (line !== '') yield JSON.parse(line) as WatchLine;
      }
    }
  }

  /** The connection details of a product's store (with its password). */
  async connection(namespace: string, name: string): Promise<ProductConnection> {
    return (
      await this.request<ProductConnection>(
        'GET',
        `/v1/namespaces/${namespace}/dataproducts/${encodeURIComponent(name)}/connection`,
      )
    ).data;
  }

  /**
   * Appends events (NDJSON or a JSON array) to a stream in one request, all or nothing; answers
   * the offsets and the indexes of retries. The body must stay within the API's limits (1000
   * events and 4 MiB by default, else 413): `offtake publish` sends a file in batches within them.
   */
  async publish(
    stream: string,
    text: string,
    type: string,
  ): Promise<{ offsets: string[]; duplicates: number[] }> {
    return (
      await this.request<{ offsets: string[]; duplicates: number[] }>(
        'POST',
        `/v1/streams/${encodeURIComponent(stream)}/events`,
        {
          text,
          type,
        },
      )
    ).data;
  }

  /** One page of a stream's events after `cursor` (from its start when absent), at most `limit`. */
  async readEvents(
    stream: string,
    opts: { cursor?: string; limit: number },
  ): Promise<{ events: LogEventJson[]; cursor: string | null }> {
    const query = new URLSearchParams({ limit: String(opts.limit) });
    if (opts.cursor !== undefined) query.set('cursor', opts.cursor);
    return (
      await this.request<{ events: LogEventJson[]; cursor: string | null }>(
        'GET',
        `/v1/streams/${encodeURIComponent(stream)}/events?${query.toString()}`,
      )
    ).data;
  }

  /** Deletes; true when deletion waits for finalizers (teardown in progress). */
  async delete(namespace: string, name: string): Promise<boolean> {
    const res = await this.request(
      'DELETE',
      `/v1/namespaces/${namespace}/dataproducts/${encodeURIComponent(name)}`,
    );
    return res.status === 202;
  }
}
