/**
 * The validating admission webhook in-process: AdmissionReview v1 in, the same validation as
 * the HTTP API out — allowed, or refused with every problem's field path and CEL position —
 * and a body that is no AdmissionReview answered as a problem.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { Express } from 'express';
import type { Redis } from 'ioredis';
import request from 'supertest';
import { parse } from 'yaml';
import { createApp } from '../api/app.ts';
import { admissionRoute } from '../api/routes/admission.ts';
import { createLogger } from '../lib/logger.ts';
import { RedisResourceStore } from '../lib/resource-store/redis-resource-store.ts';
import { DataProductValidator } from '../lib/validation/validator.ts';
import { dropPrefix, testRedis, uniquePrefix } from './helpers/redis.ts';

const example = parse(readFileSync(new URL('../examples/eu-big-orders.yaml', import.meta.url), 'utf8')) as {
  metadata: Record<string, unknown>;
  spec: Record<string, unknown> & { target: Record<string, unknown> };
};

/** The example as kube-apiserver sends it: server-owned metadata and kubectl's annotation added. */
function asStored(spec: Record<string, unknown> = example.spec): Record<string, unknown> {
  return {
    apiVersion: 'offtake.dev/v1alpha1',
    kind: 'DataProduct',
    metadata: {
      ...example.metadata,
      uid: '6a0c7ee4-54a2-4c3f-9d7c-0d4b1e0f2a11',
      generation: 1,
      creationTimestamp: '2026-01-01T00:00:00Z',
      annotations: { 'kubectl.kubernetes.io/last-applied-configuration': JSON.stringify({ spec }) },
      managedFields: [
        { manager: 'kubectl-client-side-apply', operation: 'Update', apiVersion: 'offtake.dev/v1alpha1' },
      ],
    },
    spec,
  };
}

function review(req: Record<string, unknown>): Record<string, unknown> {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid: 'b8b4d3e4-1f0e-4c55-8a61-3c2a4d1e9f00',
      kind: { group: 'offtake.dev', version: 'v1alpha1', kind: 'DataProduct' },
      resource: { group: 'offtake.dev', version: 'v1alpha1', resource: 'dataproducts' },
      namespace: 'checkout',
      name: 'eu-big-orders',
      operation: 'CREATE',
      userInfo: { username: 'admin' },
      dryRun: false,
      ...req,
    },
  };
}

interface ReviewAnswer {
  apiVersion: string;
  kind: string;
  response: {
    uid: string;
    allowed: boolean;
    status?: {
      code: number;
      reason: string;
      message: string;
      details?: { kind: string; name?: string; causes: { field: string; message: string }[] };
    };
  };
}

describe('admission webhook POST /admission/validate', () => {
  let redis: Redis;
  let prefix: string;
  let store: RedisResourceStore;
  let app: Express;
  const validator = new DataProductValidator({ allowDedicated: false });

  before(() => {
    redis = testRedis();
    prefix = uniquePrefix('admission');
    store = new RedisResourceStore(redis, { prefix });
    app = createApp({
      store,
      validator,
      logger: createLogger('silent'),
      maxBodyBytes: 1024 * 1024,
      version: 'test',
      ready: async () => (await redis.ping()) === 'PONG',
      extraRouters: [admissionRoute({ validator })],
    });
  });

  after(async () => {
    await store.close();
    await dropPrefix(redis, prefix);
    redis.disconnect();
  });

  const send = async (body: unknown): Promise<ReviewAnswer> => {
    const res = await request(app)
      .post('/admission/validate')
      .set('content-type', 'application/json')
      .send(body as object);
    assert.equal(res.status, 200, res.text);
    return res.body as ReviewAnswer;
  };

  it('allows a valid product, echoing the uid in an AdmissionReview v1', async () => {
    const answer = await send(review({ object: asStored() }));
    assert.equal(answer.apiVersion, 'admission.k8s.io/v1');
    assert.equal(answer.kind, 'AdmissionReview');
    assert.deepEqual(answer.response, { uid: 'b8b4d3e4-1f0e-4c55-8a61-3c2a4d1e9f00', allowed: true });
  });

  it('refuses a bad CEL expression with its field path and its column in the expression', async () => {
    const spec = { ...example.spec, filter: "event.data.region == 'EU' && event.data.amount >> 100" };
    const answer = await send(review({ object: asStored(spec) }));
    assert.equal(answer.response.uid, 'b8b4d3e4-1f0e-4c55-8a61-3c2a4d1e9f00');
    assert.equal(answer.response.allowed, false);
    const status = answer.response.status!;
    assert.equal(status.code, 422);
    assert.equal(status.reason, 'Invalid');
    // The API's own words: the same detail, then the pointer, the column and the message.
    let apiError: {
      message: string;
      errors: { pointer: string; message: string; expressionColumn?: number }[];
    };
    try {
      validator.validateObject({
        apiVersion: 'offtake.dev/v1alpha1',
        kind: 'DataProduct',
        metadata: example.metadata,
        spec,
      });
      assert.fail('the validator accepted it');
    } catch (err) {
      apiError = err as typeof apiError;
    }
    const [celError] = apiError.errors;
    assert.equal(celError.pointer, '/spec/filter');
    assert.ok(celError.expressionColumn !== undefined && celError.expressionColumn > 1);
    assert.ok(status.message.startsWith(apiError.message), status.message);
    assert.ok(
      status.message.includes(
        `/spec/filter (expression column ${celError.expressionColumn}): ${celError.message}`,
      ),
      status.message,
    );
    assert.equal(status.details?.kind, 'DataProduct');
    assert.equal(status.details?.name, 'eu-big-orders');
    assert.deepEqual(status.details?.causes, [
      {
        field: 'spec.filter',
        message: `${celError.message} (expression column ${celError.expressionColumn})`,
        reason: 'FieldValueInvalid:cel-syntax',
      },
    ]);
  });

  it('refuses a bad field with its path, listing every problem', async () => {
    const spec = {
      ...example.spec,
      target: { ...example.spec.target, placement: 'nowhere' },
      transform: {
        key: 'event.data.customerId',
        fields: { customer: 'event.data.customerId', amount: 'event.data.amount +' },
      },
    };
    const answer = await send(review({ object: asStored(spec) }));
    assert.equal(answer.response.allowed, false);
    const status = answer.response.status!;
    assert.equal(status.code, 422);
    assert.match(status.message, /^\s+\/spec\/target\/placement: must be one of: shared, dedicated/m);
    assert.match(status.message, /^\s+\/spec\/transform\/fields\/amount \(expression column \d+\): /m);
    const fields = status.details!.causes.map((c) => c.field);
    assert.ok(fields.includes('spec.target.placement'), fields.join());
    assert.ok(fields.includes('spec.transform.fields.amount'), fields.join());
  });

  it('judges only what the user wrote: server metadata, status and kubectl’s annotation are not held against it', async () => {
    const object = { ...asStored(), status: { phase: 'Ready', anything: 'the CRD schema checks status' } };
    assert.equal((await send(review({ object }))).response.allowed, true);
  });

  it('allows deletes, reviews without an object, status writes and updates that keep the spec', async () => {
    const badSpec = { ...example.spec, filter: 'event.data.amount >' };
    for (const req of [
      { operation: 'DELETE', oldObject: asStored(badSpec) },
      { operation: 'CREATE' },
      { operation: 'UPDATE', subResource: 'status', object: asStored(badSpec), oldObject: asStored(badSpec) },
      // A product stored before a rule tightened can still lose its finalizer and be deleted.
      { operation: 'UPDATE', object: asStored(badSpec), oldObject: asStored(badSpec) },
    ]) {
      const answer = await send(review(req));
      assert.equal(answer.response.allowed, true, JSON.stringify(req).slice(0, 80));
    }
    const changed = await send(
      review({ operation: 'UPDATE', object: asStored(badSpec), oldObject: asStored() }),
    );
    assert.equal(changed.response.allowed, false, 'an update that changes the spec is validated');
  });

  it('answers a body that is no AdmissionReview with a 400 problem', async () => {
    const expectProblem = (
      res: request.Response,
      status: number,
      code: string,
    ): { errors?: { pointer: string }[] } => {
      assert.equal(res.status, status, res.text);
      assert.match(res.headers['content-type'], /^application\/problem\+json/);
      const body = JSON.parse(res.text) as { code: string; errors?: { pointer: string }[] };
      assert.equal(body.code, code);
      return body;
    };
    const post = () => request(app).post('/admission/validate').set('content-type', 'application/json');

    expectProblem(await post().send('{"apiVersion":'), 400, 'invalid-json');
    const noRequest = expectProblem(
      await post().send({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview' }),
      400,
      'invalid-parameter',
    );
    assert.deepEqual(
      noRequest.errors?.map((e) => e.pointer),
      ['/request'],
    );
    const noUid = expectProblem(await post().send(review({ uid: '' })), 400, 'invalid-parameter');
    assert.deepEqual(
      noUid.errors?.map((e) => e.pointer),
      ['/request/uid'],
    );
    const v1beta1 = expectProblem(
      await post().send({ ...review({}), apiVersion: 'admission.k8s.io/v1beta1' }),
      400,
      'invalid-parameter',
    );
    assert.deepEqual(
      v1beta1.errors?.map((e) => e.pointer),
      ['/apiVersion'],
    );
    expectProblem(
      await request(app).post('/admission/validate').set('content-type', 'application/yaml').send('a: 1'),
      415,
      'unsupported-media-type',
    );
  });

  it('is listed in the OpenAPI document', async () => {
    const res = await request(app).get('/openapi.json');
    assert.ok(JSON.parse(res.text).paths['/admission/validate']?.post);
  });
});
