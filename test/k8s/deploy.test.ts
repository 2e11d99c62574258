/**
 * deploy/ on a real kube-apiserver: the whole install passes a server-side dry run (Pod Security
 * "restricted" included) and then applies; the operator's ServiceAccount, with exactly the RBAC
 * of deploy/, can do everything the operator does — server-side apply of dedicated objects with
 * blocking owner references, connection Secrets, Events, its Lease — and no more; the API's can
 * serve DataProducts and read no Secrets; webhook-cert.sh makes the webhook's TLS; and the
 * webhook's match conditions keep the operator's metadata writes free of it while every
 * submitted spec must pass it.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { apiStatus } from '../../operator/kube/api-errors.ts';
import { ProvisioningError } from '../../operator/provisioning-error.ts';
import { ConnectionSecrets } from '../../operator/kube/connection-secret.ts';
import { DedicatedPlacement } from '../../operator/kube/dedicated-placement.ts';
import { EventRecorder } from '../../operator/kube/events.ts';
import { LeaderElector } from '../../operator/kube/leader-election.ts';
import { OwnedObjects } from '../../operator/kube/owned-objects.ts';
import { waitFor } from '../operator-helpers.ts';
import { kubeConfigFor, startControlPlane, type ControlPlane } from './control-plane.ts';
import {
  createNamespace,
  createProduct,
  dedicatedSpec,
  getJson,
  installCrd,
  kubectlOk,
  type CreatedProduct,
} from './cluster-fixtures.ts';

const run = promisify(execFile);
const DEPLOY = fileURLToPath(new URL('../../deploy', import.meta.url));
const OPERATOR = 'system:serviceaccount:offtake-system:offtake-operator';
const API = 'system:serviceaccount:offtake-system:offtake-api';
const NAMESPACE = 'checkout';

/** The admin's kubeconfig, impersonating `user` (as `kubectl --as` does). */
function impersonating(cp: ControlPlane, user: string): KubeConfig {
  const admin = kubeConfigFor(cp);
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: admin.clusters,
    contexts: admin.contexts,
    currentContext: admin.currentContext,
    users: admin.users.map((u) => ({ ...u, impersonateUser: user })),
  });
  return kc;
}

describe('deploy/ on a real kube-apiserver', () => {
  let cp: ControlPlane;
  let product: CreatedProduct;

  before(async () => {
    cp = await startControlPlane({
      apiServerArgs: ['--enable-admission-plugins=OwnerReferencesPermissionEnforcement'],
    });
  });

  after(async () => {
    await cp?.stop();
  });

  it('passes a server-side dry run of kubectl apply -k deploy/, with no warnings', async () => {
    // Namespaced objects are dry-run into a namespace that must exist.
    await kubectlOk(cp, ['apply', '-f', join(DEPLOY, 'base/namespace.yaml')]);
    const result = await cp.kubectl(['apply', '--dry-run=server', '-k', DEPLOY]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(
      result.stderr.trim(),
      '',
      'no warnings (Pod Security restricted holds for the operator and API)',
    );
    const lines = result.stdout.trim().split('\n');
    assert.equal(lines.length, 20, result.stdout);
    for (const line of lines) assert.match(line, /\(server dry run\)$/);
  });

  it('applies, and the webhook is registered for DataProducts', async () => {
    await installCrd(cp);
    await createNamespace(cp, NAMESPACE);
    // Before the webhook exists: it will refuse everything until the API serves it.
    product = await createProduct(cp, NAMESPACE, 'eu-orders', dedicatedSpec('redis'));
    await kubectlOk(cp, ['apply', '-k', DEPLOY]);
    const webhook = await getJson<{ webhooks: { name: string }[] }>(cp, [
      'validatingwebhookconfiguration',
      'offtake-dataproducts',
    ]);
    assert.deepEqual(
      webhook.webhooks.map((w) => w.name),
      ['validate.dataproducts.offtake.dev'],
    );
  });

  it('lets the operator’s ServiceAccount do all the operator does', async () => {
    const kc = impersonating(cp, OPERATOR);
    const objects = new OwnedObjects(kc);
    const applied = await new DedicatedPlacement(objects, 'redis').apply(product, 'pw');
    await new ConnectionSecrets(objects).apply(product, applied.connection);
    const errors: unknown[] = [];
    const recorder = new EventRecorder(kc, { onError: (err) => errors.push(err) });
    const event = { type: 'Normal' as const, reason: 'Provisioned', message: 'ok' };
    await recorder.record(product, event);
    await recorder.record(product, event);
    assert.deepEqual(errors, []);
    const elector = new LeaderElector(kc, {
      namespace: 'offtake-system',
      name: 'offtake-operator',
      identity: 'operator-0',
      leaseDurationMs: 3000,
      renewDeadlineMs: 2000,
      retryPeriodMs: 500,
      onStartedLeading: () => undefined,
      onStoppedLeading: () => undefined,
      onError: (err) => electionErrors.push(err),
    });
    const electionErrors: unknown[] = [];
    elector.start();
    try {
      await waitFor(() => elector.isLeader, 'the operator to lead', 30_000);
    } finally {
      await elector.stop();
    }
    assert.deepEqual(electionErrors, []);
    await new DedicatedPlacement(objects, 'redis').removeStore(product.metadata, { retainVolume: false });
    assert.equal(await new ConnectionSecrets(objects).delete(product.metadata), true);
  });

  it('needs exactly its grant on dataproducts/finalizers for blocking owner references', async () => {
    // The same ClusterRole without that rule, bound to another identity.
    const role = await getJson<{ rules: { resources: string[] }[] }>(cp, ['clusterrole', 'offtake-operator']);
    const without = {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRole',
      metadata: { name: 'operator-without-finalizers' },
      rules: role.rules.filter((r) => !r.resources.includes('dataproducts/finalizers')),
    };
    await kubectlOk(cp, ['apply', '-f', '-'], JSON.stringify(without));
    await kubectlOk(cp, [
      'create',
      'clusterrolebinding',
      'nofin',
      '--clusterrole=operator-without-finalizers',
      '--user=nofin',
    ]);
    const objects = new OwnedObjects(impersonating(cp, 'nofin'));
    await assert.rejects(
      () =>
        new ConnectionSecrets(objects).apply(product, {
          type: 'redis',
          uri: 'redis://x',
          host: 'x',
          port: 6379,
          user: 'u',
          password: 'p',
          database: '0',
        }),
      (err: unknown) =>
        err instanceof ProvisioningError &&
        err.reason === 'PermissionDenied' &&
        /blockOwnerDeletion/.test(err.message),
    );
    // And impersonation is real: the operator's identity cannot read ConfigMaps.
    const core = impersonating(cp, OPERATOR).makeApiClient(CoreV1Api);
    await assert.rejects(
      () => core.listNamespacedConfigMap({ namespace: NAMESPACE }),
      (err: unknown) => apiStatus(err) === 403,
    );
  });

  it('grants the operator and the API nothing beyond that', async () => {
    // `kubectl auth can-i verb resource/name`: a subresource is asked with --subresource.
    const can = async (user: string, args: string[]): Promise<boolean> => {
      const result = await cp.kubectl(['auth', 'can-i', '--as', user, ...args]);
      return result.stdout.trim() === 'yes';
    };
    const expectations: [string, string[], boolean][] = [
      [OPERATOR, ['patch', 'dataproducts.offtake.dev', '-n', NAMESPACE], true],
      [OPERATOR, ['update', 'dataproducts.offtake.dev', '--subresource=status', '-n', NAMESPACE], true],
      [OPERATOR, ['update', 'dataproducts.offtake.dev', '--subresource=finalizers', '-n', NAMESPACE], true],
      [OPERATOR, ['create', 'dataproducts.offtake.dev', '-n', NAMESPACE], false],
      [OPERATOR, ['update', 'dataproducts.offtake.dev', '--subresource=scale', '-n', NAMESPACE], false],
      [OPERATOR, ['delete', 'dataproducts.offtake.dev', '-n', NAMESPACE], false],
      [OPERATOR, ['patch', 'statefulsets.apps', '-n', NAMESPACE], true],
      [OPERATOR, ['update', 'statefulsets.apps', '-n', NAMESPACE], false],
      [OPERATOR, ['get', 'configmaps', '-n', NAMESPACE], false],
      [OPERATOR, ['create', 'pods', '-n', NAMESPACE], false],
      [OPERATOR, ['delete', 'namespaces'], false],
      [OPERATOR, ['update', 'leases.coordination.k8s.io/offtake-operator', '-n', 'offtake-system'], true],
      [OPERATOR, ['update', 'leases.coordination.k8s.io/another', '-n', 'offtake-system'], false],
      [OPERATOR, ['update', 'leases.coordination.k8s.io/offtake-operator', '-n', NAMESPACE], false],
      [API, ['create', 'dataproducts.offtake.dev', '-n', NAMESPACE], true],
      [API, ['watch', 'dataproducts.offtake.dev', '--all-namespaces'], true],
      [API, ['update', 'dataproducts.offtake.dev', '--subresource=status', '-n', NAMESPACE], false],
      [API, ['get', 'secrets', '-n', NAMESPACE], false],
      ['jane', ['create', 'dataproducts.offtake.dev', '-n', NAMESPACE], false],
    ];
    const wrong: string[] = [];
    for (const [user, args, expected] of expectations) {
      if ((await can(user, args)) !== expected) wrong.push(`${user} ${args.join(' ')}: expected ${expected}`);
    }
    assert.deepEqual(wrong, []);
  });

  it('offers DataProduct roles that aggregate into the built-in edit and view roles', async () => {
    // No controller-manager runs here to aggregate them: check the labels, and bind one directly.
    const edit = await getJson<{ metadata: { labels: Record<string, string> } }>(cp, [
      'clusterrole',
      'offtake-dataproducts-edit',
    ]);
    assert.equal(edit.metadata.labels['rbac.authorization.k8s.io/aggregate-to-edit'], 'true');
    await kubectlOk(cp, [
      'create',
      'rolebinding',
      'jane-products',
      '--clusterrole=offtake-dataproducts-edit',
      '--user=jane',
      '-n',
      NAMESPACE,
    ]);
    const jane = await cp.kubectl([
      'auth',
      'can-i',
      '--as',
      'jane',
      'create',
      'dataproducts.offtake.dev',
      '-n',
      NAMESPACE,
    ]);
    assert.equal(jane.stdout.trim(), 'yes');
    const status = await cp.kubectl([
      'auth',
      'can-i',
      '--as',
      'jane',
      'update',
      'dataproducts.offtake.dev',
      '--subresource=status',
      '-n',
      NAMESPACE,
    ]);
    assert.equal(status.stdout.trim(), 'no', 'status is the operator’s');
  });

  it('gets its webhook TLS from webhook-cert.sh', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'offtake-webhook-cert-'));
    try {
      await run('bash', [
        join(DEPLOY, 'webhook-cert.sh'),
        '--dir',
        dir,
        '--',
        `--kubeconfig=${cp.kubeconfigPath}`,
      ]);
      const secret = await getJson<{ type: string; data: Record<string, string> }>(cp, [
        'secret',
        'offtake-webhook-tls',
        '-n',
        'offtake-system',
      ]);
      assert.equal(secret.type, 'kubernetes.io/tls');
      const webhook = await getJson<{ webhooks: { clientConfig: { caBundle: string } }[] }>(cp, [
        'validatingwebhookconfiguration',
        'offtake-dataproducts',
      ]);
      const ca = await readFile(join(dir, 'ca.crt'), 'utf8');
      assert.equal(Buffer.from(webhook.webhooks[0].clientConfig.caBundle, 'base64').toString(), ca);
      const served = Buffer.from(secret.data['tls.crt'], 'base64').toString();
      assert.equal(served, await readFile(join(dir, 'tls.crt'), 'utf8'));
      const verified = await run('openssl', ['verify', '-CAfile', join(dir, 'ca.crt'), join(dir, 'tls.crt')]);
      assert.match(verified.stdout, /OK/);
      const text = await run('openssl', [
        'x509',
        '-in',
        join(dir, 'tls.crt'),
        '-noout',
        '-ext',
        'subjectAltName',
      ]);
      assert.match(text.stdout, /DNS:offtake-api\.offtake-system\.svc\b/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('sends submitted specs through the webhook, but not the operator’s metadata writes', async () => {
    // Nothing serves the webhook here, so every call to it fails (failurePolicy: Fail).
    const finalizer = await cp.kubectl([
      'patch',
      'dataproduct',
      'eu-orders',
      '-n',
      NAMESPACE,
      '--type=merge',
      '-p',
      '{"metadata":{"finalizers":["offtake.dev/teardown"]}}',
    ]);
    assert.equal(finalizer.code, 0, `a finalizer write does not wait on the webhook: ${finalizer.stderr}`);
    const spec = await cp.kubectl([
      'patch',
      'dataproduct',
      'eu-orders',
      '-n',
      NAMESPACE,
      '--type=merge',
      '-p',
      '{"spec":{"filter":"true"}}',
    ]);
    assert.notEqual(spec.code, 0);
    assert.match(spec.stderr, /validate\.dataproducts\.offtake\.dev/);
    const created = await cp.kubectl(
      ['create', '-f', '-'],
      JSON.stringify({
        apiVersion: 'offtake.dev/v1alpha1',
        kind: 'DataProduct',
        metadata: { name: 'unchecked', namespace: NAMESPACE },
        spec: dedicatedSpec('redis'),
      }),
    );
    assert.notEqual(created.code, 0, 'nothing goes in unchecked');
    assert.match(created.stderr, /validate\.dataproducts\.offtake\.dev/);
    // Deletion and the operator's last finalizer write pass too.
    await kubectlOk(cp, ['delete', 'dataproduct', 'eu-orders', '-n', NAMESPACE, '--wait=false']);
    await kubectlOk(cp, [
      'patch',
      'dataproduct',
      'eu-orders',
      '-n',
      NAMESPACE,
      '--type=merge',
      '-p',
      '{"metadata":{"finalizers":null}}',
    ]);
    const gone = await cp.kubectl(['get', 'dataproduct', 'eu-orders', '-n', NAMESPACE]);
    assert.match(gone.stderr, /NotFound/);
  });
});
