import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import request from 'supertest';
import type { Express } from 'express';
import type { Redis } from 'ioredis';
import { createApp } from '../api/app.ts';
import { createLogger } from '../lib/logger.ts';
import { RedisResourceStore } from '../lib/resource-store/redis-resource-store.ts';
import { DataProductValidator } from '../lib/validation/validator.ts';
import { dropPrefix, testRedis, uniquePrefix } from './helpers/redis.ts';

const example = readFileSync(new URL('../examples/eu-big-orders.yaml', import.meta.url), 'utf8');
const BASE = '/v1/namespaces/checkout/dataproducts';

describe('DataProduct HTTP API', () => {
  let redis: Redis;
  let prefix: string;
  let store: RedisResourceStore;
  let app: Express;

  before(() => {
    redis = testRedis();
    prefix = uniquePrefix('api');
    store = new RedisResourceStore(redis, { prefix });
    app = createApp({
      store,
      validator: new DataProductValidator({ allowDedicated: false }),
      logger: createLogger('silent'),
      maxBodyBytes: 1024 * 1024,
      version: 'test',
      ready: async () => (await redis.ping()) === 'PONG',
    });
  });

  after(async () => {
    await store.close();
    await dropPrefix(redis, prefix);
    redis.disconnect();
  });

  /** The store's state, to prove a failed request changed nothing. */
  const snapshot = async () => JSON.stringify((await store.list()).items);

  const expectProblem = (res: request.Response, status: number, code: string) => {
    assert.equal(res.status, status, JSON.stringify(res.body));
    assert.match(res.headers['content-type'], /^application\/problem\+json/);
    const body = JSON.parse(res.text) as {
      code: string;
      type: string;
      title: string;
      detail: string;
      errors?: unknown[];
    };
    assert.equal(body.code, code);
    assert.equal(body.type, `https://offtake.dev/problems/${code}`);
    assert.ok(body.title && body.detail);
    assert.doesNotMatch(res.text, /at .*\.ts:\d+/, 'no stack trace in the answer');
    return body;
  };

  test('create, read, replace, conflict, delete: the Kubernetes lifecycle', async () => {
    const created = await request(app).post(BASE).set('content-type', 'application/yaml').send(example);
    assert.equal(created.status, 201, created.text);
    assert.equal(created.body.metadata.generation, 1);
    assert.equal(created.body.metadata.namespace, 'checkout');
    assert.equal(created.headers.location, `${BASE}/eu-big-orders`);
    const rv1 = created.body.metadata.resourceVersion as string;

    const got = await request(app).get(`${BASE}/eu-big-orders`);
    assert.equal(got.status, 200);
    assert.deepEqual(got.body.spec, created.body.spec);

    const changed = example.replace('amount > 100', 'amount > 500');
    const replaced = await request(app)
      .put(`${BASE}/eu-big-orders`)
      .set('content-type', 'application/yaml')
      .send(changed);
    assert.equal(replaced.status, 200, replaced.text);
    assert.equal(replaced.body.metadata.generation, 2);
    assert.match(replaced.body.spec.filter, /amount > 500/);

    const stale = changed.replace('namespace: checkout}', `namespace: checkout, resourceVersion: "${rv1}"}`);
    const before = await snapshot();
    expectProblem(
      await request(app).put(`${BASE}/eu-big-orders`).set('content-type', 'application/yaml').send(stale),
      409,
      'conflict',
    );
    assert.equal(await snapshot(), before);

    expectProblem(
      await request(app).post(BASE).set('content-type', 'application/yaml').send(example),
      409,
      'already-exists',
    );

    const status = await request(app).get(`${BASE}/eu-big-orders/status`);
    assert.equal(status.status, 200);
    assert.equal(status.body.metadata.generation, 2);

    const deleted = await request(app).delete(`${BASE}/eu-big-orders`);
    assert.equal(deleted.status, 200);
    expectProblem(await request(app).get(`${BASE}/eu-big-orders`), 404, 'not-found');
  });

  test('JSON bodies, YAML answers, lists with label selectors', async () => {
    const doc = {
      apiVersion: 'offtake.dev/v1alpha1',
      kind: 'DataProduct',
      metadata: { name: 'cache-a', labels: { team: 'a' } },
      spec: {
        source: { streams: ['orders'] },
        transform: { key: 'event.subject', fields: { amount: 'event.data.amount' } },
        target: { type: 'redis' },
      },
    };
    assert.equal((await request(app).post(BASE).send(doc)).status, 201);
    const b = { ...doc, metadata: { name: 'cache-b', labels: { team: 'b' } } };
    assert.equal((await request(app).post('/v1/namespaces/other/dataproducts').send(b)).status, 201);

    const all = await request(app).get('/v1/dataproducts');
    assert.deepEqual(
      all.body.items.map((p: { metadata: { name: string } }) => p.metadata.name),
      ['cache-a', 'cache-b'],
    );
    assert.equal(all.body.kind, 'DataProductList');
    const teamB = await request(app).get('/v1/dataproducts?labelSelector=team%3Db');
    assert.deepEqual(
      teamB.body.items.map((p: { metadata: { name: string } }) => p.metadata.name),
      ['cache-b'],
    );
    const inNs = await request(app).get(BASE);
    assert.deepEqual(
      inNs.body.items.map((p: { metadata: { name: string } }) => p.metadata.name),
      ['cache-a'],
    );

    const yaml = await request(app).get(`${BASE}/cache-a`).set('accept', 'application/yaml');
    assert.match(yaml.headers['content-type'], /application\/yaml/);
    assert.match(yaml.text, /name: cache-a/);

    expectProblem(
      await request(app).get('/v1/dataproducts?labelSelector=team%20in%20(a'),
      400,
      'invalid-parameter',
    );
    await request(app).delete(`${BASE}/cache-a`);
    await request(app).delete('/v1/namespaces/other/dataproducts/cache-b');
  });

  test('dryRun=All validates without storing', async () => {
    const before = await snapshot();
    const res = await request(app)
      .post(`${BASE}?dryRun=All`)
      .set('content-type', 'application/yaml')
      .send(example);
    assert.equal(res.status, 201, res.text);
    assert.equal(res.body.metadata.generation, 1);
    assert.equal(await snapshot(), before);
    expectProblem(await request(app).get(`${BASE}/eu-big-orders`), 404, 'not-found');
    const bad = await request(app)
      .post(`${BASE}?dryRun=All`)
      .set('content-type', 'application/yaml')
      .send(example.replace('key: event.data.customerId', 'key: event.data.customerId +'));
    expectProblem(bad, 400, 'invalid-spec');
  });

  test('a spec with three errors gets all three, with pointers and YAML positions', async () => {
    const bad = example
      .replace('streams: [orders]', 'streams: [Orders!]')
      .replace('deletionPolicy: Delete ', 'deletionPolicy: Destroy')
      .replace(
        "status: \"event.type == 'OrderCancelled' ? 'cancelled' : 'open'\"",
        'status: "event.type == "',
      );
    const before = await snapshot();
    const body = expectProblem(
      await request(app).post(BASE).set('content-type', 'application/yaml').send(bad),
      400,
      'invalid-spec',
    ) as {
      errors: { pointer: string; line?: number; column?: number }[];
    };
    const pointers = body.errors.map((e) => e.pointer).sort();
    assert.deepEqual(pointers, [
      '/spec/deletionPolicy',
      '/spec/source/streams/0',
      '/spec/transform/fields/status',
    ]);
    const byPointer = Object.fromEntries(body.errors.map((e) => [e.pointer, e]));
    assert.equal(byPointer['/spec/source/streams/0'].line, 6);
    assert.equal(byPointer['/spec/deletionPolicy'].line, 20);
    assert.equal(byPointer['/spec/transform/fields/status'].line, 15);
    for (const e of body.errors) assert.ok((e.column ?? 0) > 0);
    assert.equal(await snapshot(), before);
  });

  test('bad input: each a 4xx problem naming the field; nothing changes; the server keeps serving', async () => {
    const yaml = (text: string) => request(app).post(BASE).set('content-type', 'application/yaml').send(text);
    const json = (text: string) => request(app).post(BASE).set('content-type', 'application/json').send(text);
    const before = await snapshot();

    const malformed = expectProblem(
      await yaml('apiVersion: offtake.dev/v1alpha1\nkind: [DataProduct\n'),
      400,
      'invalid-yaml',
    ) as { errors: { line: number; column: number }[] };
    assert.ok(malformed.errors[0].line >= 2);
    expectProblem(await yaml(`${example}\n---\n${example}`), 400, 'multiple-documents');

    const deep = JSON.parse(JSON.stringify((await import('yaml')).parse(example)));
    deep.spec.target.postgres.columns = { customer: 7, amount: 'numeric', status: 'text' };
    const wrongType = expectProblem(await json(JSON.stringify(deep, null, 2)), 400, 'invalid-spec') as {
      errors: { pointer: string; line?: number }[];
    };
    assert.ok(
      wrongType.errors.some(
        (e) => e.pointer === '/spec/target/postgres/columns/customer' && e.line !== undefined,
      ),
    );

    expectProblem(await json('{"apiVersion": "offtake.dev/v1alpha1", "kind": '), 400, 'invalid-json');

    const big = `${example}\n# ${'x'.repeat(1024 * 1024 + 10)}\n`;
    expectProblem(await yaml(big), 413, 'too-large');

    const unknown = expectProblem(
      await yaml(example.replace('  deletionPolicy', '  retention: 7d\n  deletionPolicy')),
      400,
      'invalid-spec',
    ) as { errors: { pointer: string }[] };
    assert.deepEqual(
      unknown.errors.map((e) => e.pointer),
      ['/spec/retention'],
    );

    const badName = expectProblem(
      await yaml(example.replace('name: eu-big-orders', 'name: EU_Big_Orders')),
      400,
      'invalid-spec',
    ) as { errors: { pointer: string }[] };
    assert.deepEqual(
      badName.errors.map((e) => e.pointer),
      ['/metadata/name'],
    );

    const syntax = expectProblem(
      await yaml(example.replace("event.data.region == 'EU'", "event.data.region == 'EU' &&& true")),
      400,
      'invalid-spec',
    ) as { errors: { pointer: string; expressionColumn?: number }[] };
    assert.equal(syntax.errors[0].pointer, '/spec/filter');
    assert.ok((syntax.errors[0].expressionColumn ?? 0) > 0);

    const typeErr = expectProblem(
      await yaml(example.replace('key: event.data.customerId', 'key: "event.type + 1"')),
      400,
      'invalid-spec',
    ) as { errors: { pointer: string }[] };
    assert.equal(typeErr.errors[0].pointer, '/spec/transform/key');

    const nested = `${'('.repeat(10000)}true${')'.repeat(10000)}`;
    const deepCel = expectProblem(
      await yaml(
        example.replace(
          `filter: "event.data.region == 'EU' && event.data.amount > 100"`,
          `filter: "${nested}"`,
        ),
      ),
      400,
      'invalid-spec',
    ) as { errors: { pointer: string }[] };
    assert.equal(deepCel.errors[0].pointer, '/spec/filter');

    for (const evil of ["x'; DROP TABLE t;--", 'a b', 'k*', '{a}', 'a:b', 'a"b']) {
      const table = expectProblem(
        await yaml(example.replace('table: eu_big_orders', `table: ${JSON.stringify(evil)}`)),
        400,
        'invalid-spec',
      ) as { errors: { pointer: string }[] };
      assert.ok(
        table.errors.some((e) => e.pointer === '/spec/target/postgres/table'),
        evil,
      );
      const stream = expectProblem(
        await yaml(example.replace('streams: [orders]', `streams: [${JSON.stringify(evil)}]`)),
        400,
        'invalid-spec',
      ) as { errors: { pointer: string }[] };
      assert.ok(
        stream.errors.some((e) => e.pointer === '/spec/source/streams/0'),
        evil,
      );
    }

    expectProblem(
      await request(app).post(BASE).set('content-type', 'text/plain').send('hello'),
      415,
      'unsupported-media-type',
    );
    expectProblem(await request(app).post(BASE).send(Buffer.from('x')), 415, 'unsupported-media-type');
    expectProblem(await request(app).get('/v1/namespaces/Bad_NS/dataproducts'), 400, 'invalid-name');
    expectProblem(
      await request(app)
        .post('/v1/namespaces/other/dataproducts')
        .set('content-type', 'application/yaml')
        .send(example),
      400,
      'invalid-spec',
    );
    expectProblem(
      await request(app).post(`${BASE}?dryRun=Some`).set('content-type', 'application/yaml').send(example),
      400,
      'invalid-parameter',
    );
    expectProblem(await request(app).get('/v1/nothing-here'), 404, 'not-found');

    assert.equal(await snapshot(), before);
    assert.equal((await request(app).get('/healthz')).status, 200);
    assert.equal((await request(app).get('/readyz')).status, 200);
  });

  test('GET /openapi.json is OpenAPI 3.1 built from the schema source', async () => {
    const res = await request(app).get('/openapi.json');
    assert.equal(res.status, 200);
    assert.equal(res.body.openapi, '3.1.0');
    assert.ok(res.body.paths['/v1/namespaces/{namespace}/dataproducts/{name}'].put);
    assert.ok(res.body.components.schemas.DataProduct.properties.spec.properties.transform);
  });
});
