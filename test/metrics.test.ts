/**
 * `/metrics` of `offtake up` (API, operator and workers in one process, one registry), over real
 * HTTP against real Redis and Postgres: requests counted by route pattern (never a raw path),
 * events appended, DataProducts by phase with their readiness and lag as on their status, the
 * workers' pipeline counters, the process's own; with an API token, `/metrics` needs it too.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { createLogger } from '../lib/logger.ts';
import { startEmbedded, type RunningEmbedded } from '../operator/embedded.ts';
import { metricValue } from './helpers/metrics.ts';
import { dropPrefix, testRedis, uniquePrefix } from './helpers/redis.ts';
import {
  ApiClient,
  embeddedTestConfig,
  isReady,
  orderEvents,
  orderSpec,
  waitFor,
} from './operator-helpers.ts';

const TOKEN = 'metrics-test-token';

describe('/metrics of offtake up', () => {
  let redis: Redis;
  let prefix: string;
  let namespace: string;
  let embedded: RunningEmbedded;
  let api: ApiClient;

  before(async () => {
    redis = testRedis();
    prefix = uniquePrefix('metrics');
    namespace = `mx-${randomBytes(3).toString('hex')}`;
    const config = embeddedTestConfig(prefix);
    embedded = await startEmbedded(config, createLogger('silent'), {
      reconciler: { statusIntervalMs: 300, progressIntervalMs: 300 },
      runner: { chunkEvents: 100 },
      worker: { progressIntervalMs: 100 },
    });
    api = new ApiClient(embedded.url);
  });

  after(async () => {
    // Teardown by deletion takes the product's ACL user and keys with it.
    const ref = { namespace, name: 'eu-cache' };
    if ((await api.delete(ref)) !== 404)
      await waitFor(async () => (await api.status(ref)) === null, 'teardown');
    await embedded?.close();
    await dropPrefix(redis, prefix);
    redis.disconnect();
  });

  async function scrape(
    headers: Record<string, string> = {},
  ): Promise<{ status: number; type: string; text: string }> {
    const res = await fetch(`${embedded.url}/metrics`, { headers });
    return { status: res.status, type: res.headers.get('content-type') ?? '', text: await res.text() };
  }

  it('counts requests by route pattern, events appended, products and their pipelines', async () => {
    const stream = `orders-${randomBytes(3).toString('hex')}`;
    const history = orderEvents(0, 300);
    const live = orderEvents(300, 310);
    await api.publish(stream, history);
    const ref = { namespace, name: 'eu-cache' };
    const spec = orderSpec('redis', stream);
    await api.create(ref, spec);
    await waitFor(async () => isReady(await api.status(ref)), 'the product to be Ready');
    const missing = await api.request('GET', `/v1/namespaces/${namespace}/dataproducts/no-such-product`);
    assert.equal(missing.status, 404);
    await api.publish(stream, live);
    const types = spec.source.types;
    const ofItsTypes = [...history, ...live].filter(
      (e) => types === undefined || types.includes(e.type),
    ).length;
    const product = { namespace, name: 'eu-cache' };
    const events = (text: string, phase: string) =>
      metricValue(text, 'offtake_pipeline_events_total', { ...product, phase }) ?? 0;
    // Caught up: every event of its types went through the seed or the tail (once), and the
    // status written since says so.
    await waitFor(async () => {
      const text = (await scrape()).text;
      return (
        (events(text, 'seed') + events(text, 'tail') === ofItsTypes &&
          metricValue(text, 'offtake_dataproduct_lag_events', product) === 0) ||
        `${events(text, 'seed')} + ${events(text, 'tail')} of ${ofItsTypes} events`
      );
    }, 'the tail to catch up');

    const { status, type, text } = await scrape();
    assert.equal(status, 200);
    assert.match(type, /^text\/plain; version=0\.0\.4/);

    // The route that answered, never the path with its names.
    const route = '/v1/namespaces/:namespace/dataproducts/:name';
    assert.ok(
      (metricValue(text, 'offtake_http_requests_total', { method: 'GET', route, code: '404' }) ?? 0) >= 1,
    );
    assert.ok(!text.includes('no-such-product'), 'a raw path is never a label');
    assert.ok(
      (metricValue(text, 'offtake_http_request_duration_seconds_count', {
        method: 'POST',
        route: '/v1/streams/:stream/events',
      }) ?? 0) >= 2,
    );
    assert.equal(
      metricValue(text, 'offtake_eventlog_appended_events_total', { stream }),
      history.length + live.length,
    );

    // The product as its status shows it.
    const shown = (await api.status(ref))!.status;
    assert.equal(metricValue(text, 'offtake_dataproducts', { phase: 'Ready' }), 1);
    assert.equal(metricValue(text, 'offtake_dataproducts', { phase: 'Failed' }), 0);
    assert.equal(metricValue(text, 'offtake_dataproduct_ready', product), 1);
    assert.equal(
      metricValue(text, 'offtake_dataproduct_seed_processed_events', product),
      shown.seed?.processed,
    );
    assert.equal(metricValue(text, 'offtake_dataproduct_lag_events', product), 0);

    assert.equal(events(text, 'seed'), shown.seed?.processed);
    assert.ok((metricValue(text, 'process_cpu_seconds_total') ?? 0) > 0, 'the process metrics too');
    assert.ok(
      (metricValue(text, 'offtake_eventlog_followers', { state: 'running' }) ?? 0) >= 1,
      'the tail follows the log',
    );
  });

  it('needs the bearer token when the API has one', async () => {
    const config = embeddedTestConfig(`${prefix}-token`, { postgresUrl: undefined, apiToken: TOKEN });
    const guarded = await startEmbedded(config, createLogger('silent'), { inProcessWorkers: false });
    try {
      const without = await fetch(`${guarded.url}/metrics`);
      assert.equal(without.status, 401);
      assert.equal(without.headers.get('www-authenticate'), 'Bearer realm="offtake"');
      const withToken = await fetch(`${guarded.url}/metrics`, {
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      assert.equal(withToken.status, 200);
      assert.match(await withToken.text(), /^# HELP /m);
    } finally {
      await guarded.close();
      await dropPrefix(redis, `${prefix}-token`);
    }
  });
});
