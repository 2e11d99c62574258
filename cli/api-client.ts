/**
 * A small HTTP client for the Offtake API, used by the CLI (and end-to-end tests).
 */
import { parse as parseYaml } from 'yaml';
import type { Problem } from '../lib/errors.ts';
import type { StoredDataProduct } from '../lib/resource-store/resource-store.ts';

/** A problem+json answer from the API. */
export class ApiError extends Error {
  readonly problem: Problem;
  constructor(problem: Problem) {
    super(`${problem.title}: ${problem.detail}`);
    this.name = 'ApiError';
    this.problem = problem;
  }
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

  private async request<T>(
    method: string,
    path: string,
    body?: { text: string; type: string },
  ): Promise<{ status: number; data: T }> {
    let res: Response;
    try {
      res = await fetch(this.baseUrl + path, {
        method,
        headers: this.headers({ accept: 'application/json', ...(body ? { 'content-type': body.type } : {}) }),
        body: body?.text,
      });
    } catch (err) {
      throw new Error(
        `cannot reach the Offtake API at ${this.baseUrl} (${(err as Error).message}); is \`offtake api\` or \`offtake up\` running?`,
        { cause: err },
      );
    }
    const text = await res.text();
    const data = text ? (JSON.parse(text) as unknown) : undefined;
    if (!res.ok) throw new ApiError(data as Problem);
    return { status: res.status, data: data as T };
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

  /** Appends events (NDJSON or a JSON array) to a stream; answers the offsets and the indexes of retries. */
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

  /** Deletes; true when deletion waits for finalizers (teardown in progress). */
  async delete(namespace: string, name: string): Promise<boolean> {
    const res = await this.request(
      'DELETE',
      `/v1/namespaces/${namespace}/dataproducts/${encodeURIComponent(name)}`,
    );
    return res.status === 202;
  }
}
