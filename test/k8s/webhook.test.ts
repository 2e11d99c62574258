/**
 * The admission webhook through a real kube-apiserver: the platform API serves HTTPS on
 * 127.0.0.1 with a self-signed CA, a ValidatingWebhookConfiguration points kube-apiserver at
 * `/admission/validate`, and `kubectl apply` of a DataProduct the CRD schema lets through but
 * Offtake's validation does not (a bad CEL expression, columns that do not match the fields) is
 * refused with the field and the position — the same problems the HTTP API reports — while a
 * valid product goes in and can be read back through the API, which serves the cluster's objects.
 */
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import { request } from 'node:https';
import { after, before, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import { stringify } from 'yaml';
import type { DataProductSpec } from '../../crds/generated/types.ts';
import { createEventLog, createPlatformApp, listen } from '../../api/server.ts';
import { DEFAULT_CONFIG, loadConfig } from '../../lib/config.ts';
import { isOfftakeError, type OfftakeError } from '../../lib/errors.ts';
import type { RedisEventLog } from '../../lib/eventlog/redis-event-log.ts';
import { OfftakeMetrics } from '../../lib/metrics.ts';
import { createLogger } from '../../lib/logger.ts';
import { KubernetesResourceStore } from '../../lib/resource-store/kubernetes-resource-store.ts';
import { ProductRecords } from '../../operator/product-records.ts';
import { dropPrefix, testRedis, TEST_REDIS_URL, uniquePrefix } from '../helpers/redis.ts';
import { orderSpec, waitFor } from '../operator-helpers.ts';
import { kubeConfigFor, startControlPlane, type ControlPlane } from './control-plane.ts';
import {
  createNamespace,
  installCrd,
  makeServingCertificate,
  type ServingCertificate,
} from './k8s-helpers.ts';

const WEBHOOK = 'dataproducts.validate.offtake.dev';

/** An HTTPS request to the API, trusting only the test CA. */
function httpsJson(
  url: string,
  ca: string,
  method: string,
  body?: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method, ca, headers: body === undefined ? {} : { 'content-type': 'application/json' } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (text += chunk));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: text === '' ? {} : JSON.parse(text) }),
        );
      },
    );
    req.on('error', reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

describe('admission webhook through a real kube-apiserver', () => {
  let cp: ControlPlane;
  let redis: Redis;
  let prefix: string;
  let namespace: string;
  let eventLog: RedisEventLog;
  let store: KubernetesResourceStore;
  let server: Server;
  let api: string;
  let certs: ServingCertificate;

  const product = (name: string, spec: DataProductSpec) => ({
    apiVersion: 'offtake.dev/v1alpha1',
    kind: 'DataProduct',
    metadata: { name, namespace },
    spec,
  });
  const badCel = (): DataProductSpec => ({ ...orderSpec('redis'), filter: "event.data.region == 'EU' &&" });
  const badColumns = (): DataProductSpec => {
    const spec = orderSpec('postgres');
    spec.target.postgres!.columns = { customer: 'text', amount: 'numeric', state: 'text' };
    return spec;
  };

  before(async () => {
    cp = await startControlPlane();
    await installCrd(cp);
    namespace = await createNamespace(cp, 'webhook');
    redis = testRedis();
    prefix = uniquePrefix('k8s-webhook');
    const config = loadConfig(
      {},
      {
        redisUrl: TEST_REDIS_URL,
        redisPrefix: prefix,
        host: '127.0.0.1',
        port: 0,
        eventLog: { ...DEFAULT_CONFIG.eventLog, durability: 'none' },
      },
    );
    eventLog = await createEventLog(redis, config);
    store = new KubernetesResourceStore(kubeConfigFor(cp));
    const app = createPlatformApp(config, createLogger('silent'), {
      redis,
      store,
      eventLog,
      connections: ProductRecords.forPlatform(redis, prefix),
      metrics: new OfftakeMetrics({ processMetrics: false }),
    });
    certs = await makeServingCertificate(cp.dir);
    const listening = await listen(app, config, { cert: certs.certPem, key: certs.keyPem });
    server = listening.server;
    api = `https://127.0.0.1:${listening.port}`;

    const configuration = {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'ValidatingWebhookConfiguration',
      metadata: { name: `offtake-${namespace}` },
      webhooks: [
        {
          name: WEBHOOK,
          admissionReviewVersions: ['v1'],
          sideEffects: 'None',
          failurePolicy: 'Fail',
          timeoutSeconds: 10,
          clientConfig: {
            url: `${api}/admission/validate`,
            caBundle: Buffer.from(certs.caPem).toString('base64'),
          },
          rules: [
            {
              apiGroups: ['offtake.dev'],
              apiVersions: ['v1alpha1'],
              operations: ['CREATE', 'UPDATE'],
              resources: ['dataproducts'],
              scope: 'Namespaced',
            },
          ],
          // Only this test's namespace: the webhook answers for nothing else.
          namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': namespace } },
        },
      ],
    };
    const applied = await cp.kubectl(['apply', '-f', '-'], stringify(configuration));
    assert.equal(applied.code, 0, applied.stderr);
    // The API server picks the configuration up a moment later: probe with a server-side dry run.
    await waitFor(async () => {
      const probe = await cp.kubectl(
        ['apply', '--dry-run=server', '-f', '-'],
        stringify(product('probe', badCel())),
      );
      return probe.code !== 0 || 'the webhook is not called yet';
    }, 'the webhook in force');
  });

  after(async () => {
    await store?.close();
    if (server !== undefined) {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
    }
    await eventLog?.close();
    if (redis !== undefined) {
      await dropPrefix(redis, prefix);
      redis.disconnect();
    }
    await cp?.stop();
  });

  it('lets a valid product in; the API serves it from the cluster', async () => {
    const applied = await cp.kubectl(
      ['apply', '-f', '-'],
      stringify(product('eu-cache', orderSpec('redis'))),
    );
    assert.equal(applied.code, 0, applied.stderr);
    assert.match(applied.stdout, /dataproduct\.offtake\.dev\/eu-cache created/);
    const read = await httpsJson(
      `${api}/v1/namespaces/${namespace}/dataproducts/eu-cache`,
      certs.caPem,
      'GET',
    );
    assert.equal(read.status, 200);
    assert.deepEqual((read.body.spec as DataProductSpec).filter, orderSpec('redis').filter);
  });

  it('refuses a bad CEL expression on kubectl apply with the field and the column, as the API does', async () => {
    const refused = await cp.kubectl(['apply', '-f', '-'], stringify(product('bad-cel', badCel())));
    assert.notEqual(refused.code, 0, refused.stdout);

    // The HTTP API's answer to the same document: the same problem, pointer and column.
    const viaApi = await httpsJson(
      `${api}/v1/namespaces/${namespace}/dataproducts?dryRun=All`,
      certs.caPem,
      'POST',
      product('bad-cel', badCel()),
    );
    assert.equal(viaApi.status, 400);
    const [problem] = viaApi.body.errors as { pointer: string; message: string; expressionColumn: number }[];
    assert.equal(problem.pointer, '/spec/filter');
    assert.ok(problem.expressionColumn > 0);
    // kubectl prints the causes, Kubernetes style: the object, the field path, the API's message, the column.
    assert.ok(
      refused.stderr.includes(
        `The DataProduct "bad-cel" is invalid: spec.filter: ${problem.message} (expression column ${problem.expressionColumn})`,
      ),
      refused.stderr,
    );
    const left = await cp.kubectl(['get', 'dataproduct', 'bad-cel', '-n', namespace]);
    assert.notEqual(left.code, 0, 'nothing stored');

    // An API client (the Kubernetes resource store) gets the whole refusal: which webhook, the
    // API's summary and every problem, and the causes back as JSON pointers.
    const err = await store.create({ metadata: { name: 'bad-cel', namespace }, spec: badCel() }).then(
      () => assert.fail('the API server accepted it'),
      (e: unknown) => e as OfftakeError,
    );
    assert.ok(isOfftakeError(err, 'invalid-spec'), String(err));
    assert.ok(err.message.includes(`admission webhook "${WEBHOOK}" denied the request`), err.message);
    // The API's summary, less the line and column the API adds for a text body.
    assert.ok(
      err.message.includes(`1 problem in the DataProduct: /spec/filter: ${problem.message}`),
      err.message,
    );
    assert.ok(
      err.message.includes(
        `/spec/filter (expression column ${problem.expressionColumn}): ${problem.message}`,
      ),
      err.message,
    );
    assert.deepEqual(
      err.errors.map((e) => e.pointer),
      ['/spec/filter'],
    );
  });

  it('refuses what only Offtake’s rules catch (columns that are not the transform fields) with the path', async () => {
    const refused = await cp.kubectl(['apply', '-f', '-'], stringify(product('bad-columns', badColumns())));
    assert.notEqual(refused.code, 0, refused.stdout);
    assert.match(refused.stderr, /The DataProduct "bad-columns" is invalid/);
    assert.match(
      refused.stderr,
      /spec\.target\.postgres\.columns\.state: column "state" has no transform field/,
    );
    assert.match(refused.stderr, /spec\.target\.postgres\.columns: no column for transform field "status"/);
  });

  it('refuses an update to a bad spec and leaves the stored one as it was', async () => {
    const refused = await cp.kubectl(['apply', '-f', '-'], stringify(product('eu-cache', badCel())));
    assert.notEqual(refused.code, 0, refused.stdout);
    assert.match(
      refused.stderr,
      /The DataProduct "eu-cache" is invalid: spec\.filter: .* \(expression column \d+\)/,
    );
    const stored = await store.get(namespace, 'eu-cache');
    assert.equal(stored.spec.filter, orderSpec('redis').filter);
    assert.equal(stored.metadata.generation, 1);
  });

  it('does not stand in the way of a delete', async () => {
    const deleted = await cp.kubectl(['delete', 'dataproduct', 'eu-cache', '-n', namespace]);
    assert.equal(deleted.code, 0, deleted.stderr);
  });
});
