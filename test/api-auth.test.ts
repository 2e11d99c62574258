/**
 * The API's bearer token: with `OFFTAKE_API_TOKEN` set, every `/v1` request (products, streams,
 * connection details) needs it and a missing or wrong one is a 401 problem that changes
 * nothing; health, OpenAPI and the admission webhook stay open. The CLI sends the token from
 * the same variable. Configuration refuses tokens too short to be secret.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { loadConfig } from '../lib/config.ts';
import { runCli, startApiProcess, type ApiProcess } from './helpers/process.ts';
import { dropPrefix, testRedis, TEST_REDIS_URL, uniquePrefix } from './helpers/redis.ts';

const TOKEN = 'test-token-0123456789abcdef';
const example = new URL('../examples/eu-big-orders.yaml', import.meta.url).pathname;

let redis: Redis;
let prefix: string;
let api: ApiProcess;

before(async () => {
  redis = testRedis();
  prefix = uniquePrefix('auth');
  api = await startApiProcess({
    OFFTAKE_REDIS_URL: TEST_REDIS_URL,
    OFFTAKE_REDIS_PREFIX: prefix,
    OFFTAKE_EVENTLOG_DURABILITY: 'none',
    OFFTAKE_API_TOKEN: TOKEN,
  });
});

after(async () => {
  await api?.stop();
  await dropPrefix(redis, prefix);
  redis.disconnect();
});

async function call(path: string, token?: string, init: RequestInit = {}) {
  const res = await fetch(api.url + path, {
    ...init,
    headers: { ...(token === undefined ? {} : { authorization: `Bearer ${token}` }), ...init.headers },
  });
  const text = await res.text();
  return {
    status: res.status,
    headers: res.headers,
    body: text === '' ? undefined : (JSON.parse(text) as unknown),
  };
}

describe('API authentication', () => {
  it('refuses /v1 without the token, with a problem that says what to send', async () => {
    for (const path of [
      '/v1/namespaces/checkout/dataproducts',
      '/v1/streams',
      '/v1/namespaces/checkout/dataproducts/eu-big-orders/connection',
    ]) {
      const res = await call(path);
      assert.equal(res.status, 401, path);
      assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
      assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="offtake"');
      assert.equal((res.body as { code: string }).code, 'unauthorized');
      assert.match((res.body as { detail: string }).detail, /Authorization: Bearer/);
    }
    const wrong = await call('/v1/streams', 'not-the-token-at-all');
    assert.equal(wrong.status, 401);
    assert.equal((wrong.body as { detail: string }).detail, 'The bearer token is not valid.');
    assert.equal((await call('/v1/streams', TOKEN)).status, 200);
  });

  it('changes nothing on a refused write', async () => {
    const body = JSON.stringify([{ id: 'e1', source: 'urn:t', type: 'OrderPlaced', data: {} }]);
    const refused = await call('/v1/streams/orders/events', 'wrong-token-wrong-token', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    assert.equal(refused.status, 401);
    assert.equal((await call('/v1/streams/orders', TOKEN)).status, 404, 'the stream was not created');
  });

  it('keeps health, OpenAPI and the admission webhook open', async () => {
    assert.equal((await call('/healthz')).status, 200);
    assert.equal((await call('/readyz')).status, 200);
    assert.equal((await call('/openapi.json')).status, 200);
    const review = await call('/admission/validate', undefined, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        apiVersion: 'admission.k8s.io/v1',
        kind: 'AdmissionReview',
        request: { uid: 'u1', operation: 'DELETE' },
      }),
    });
    assert.equal(review.status, 200);
    assert.equal((review.body as { response: { allowed: boolean } }).response.allowed, true);
  });

  it('the CLI sends OFFTAKE_API_TOKEN, and says what is missing without it', async () => {
    const env = { OFFTAKE_SERVER: api.url, OFFTAKE_NAMESPACE: 'checkout' };
    const denied = await runCli(['apply', '-f', example], { ...env, OFFTAKE_API_TOKEN: '' });
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /Authentication is required: .*Bearer/);
    const applied = await runCli(['apply', '-f', example], { ...env, OFFTAKE_API_TOKEN: TOKEN });
    assert.equal(applied.code, 0, applied.stderr);
    const got = await runCli(['get', 'eu-big-orders', '-o', 'json'], { ...env, OFFTAKE_API_TOKEN: TOKEN });
    assert.equal(got.code, 0, got.stderr);
    assert.equal((JSON.parse(got.stdout) as { metadata: { name: string } }).metadata.name, 'eu-big-orders');
  });

  it('refuses a token too short to be secret, without echoing it', () => {
    assert.throws(
      () => loadConfig({ OFFTAKE_API_TOKEN: 'short-secret' }),
      (err: Error) => /at least 16/.test(err.message) && !err.message.includes('short-secret'),
    );
    assert.throws(() => loadConfig({ OFFTAKE_TLS_CERT_FILE: '/x.pem' }), /set together/);
  });
});
