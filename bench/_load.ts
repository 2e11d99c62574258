/** A small closed-loop HTTP load generator for the benchmarks (keep-alive, fixed concurrency). */
import http from 'node:http';

/** Result of one load run. */
export interface LoadResult {
  requests: number;
  seconds: number;
  perSecond: number;
  statuses: Record<number, number>;
}

function once(
  agent: http.Agent,
  url: URL,
  method: string,
  body: string | undefined,
  headers: Record<string, string>,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      url,
      {
        method,
        agent,
        headers: body === undefined ? headers : { ...headers, 'content-length': Buffer.byteLength(body) },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Sends requests from `concurrency` loops for `seconds`, counting completions. */
export async function load(
  target: string,
  opts: {
    method?: string;
    body?: string;
    headers?: Record<string, string>;
    concurrency: number;
    seconds: number;
  },
): Promise<LoadResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: opts.concurrency });
  const url = new URL(target);
  const statuses: Record<number, number> = {};
  let requests = 0;
  const start = performance.now();
  const deadline = start + opts.seconds * 1000;
  await Promise.all(
    Array.from({ length: opts.concurrency }, async () => {
      while (performance.now() < deadline) {
        const status = await once(agent, url, opts.method ?? 'GET', opts.body, opts.headers ?? {});
        statuses[status] = (statuses[status] ?? 0) + 1;
        requests++;
      }
    }),
  );
  const seconds = (performance.now() - start) / 1000;
  agent.destroy();
  return { requests, seconds, perSecond: requests / seconds, statuses };
}
