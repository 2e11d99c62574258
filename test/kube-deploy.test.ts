/**
 * deploy/ without a cluster: every manifest parses and holds the kinds it should, each object is
 * valid against the Kubernetes API schemas, the kustomizations build (base and cert-manager), the
 * CRD copy is the generated one, RBAC grants only what the operator and the API use, and the
 * Dockerfile builds the one image. test/k8s/deploy.test.ts has the API server accept it all.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, readdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { hasModel, validateObject } from './helpers/kube-models.ts';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const DEPLOY = join(ROOT, 'deploy');

interface Manifest {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

interface Rule {
  apiGroups: string[];
  resources: string[];
  verbs: string[];
  resourceNames?: string[];
}

async function yamlFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await yamlFiles(path)));
    else if (/\.ya?ml$/.test(entry.name)) out.push(path);
  }
  return out.sort();
}

function parseYaml(text: string, where: string): Manifest[] {
  return parseAllDocuments(text).map((doc) => {
    assert.deepEqual(doc.errors, [], `${where}: ${doc.errors.map((e) => e.message).join('; ')}`);
    return doc.toJS() as Manifest;
  });
}

async function kustomize(dir: string): Promise<Manifest[]> {
  const { stdout } = await run('kubectl', ['kustomize', join(DEPLOY, dir)], { maxBuffer: 16 * 1024 * 1024 });
  return parseYaml(stdout, `kubectl kustomize deploy/${dir}`);
}

const EXPECTED_KINDS: Record<string, string[]> = {
  'base/api.yaml': ['Deployment', 'Service', 'PodDisruptionBudget'],
  'base/crd/offtake.dev_dataproducts.yaml': ['CustomResourceDefinition'],
  'base/kustomization.yaml': ['Kustomization'],
  'base/namespace.yaml': ['Namespace'],
  'base/operator.yaml': ['Deployment', 'PodDisruptionBudget'],
  'base/rbac/api.yaml': ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding'],
  'base/rbac/operator.yaml': ['ServiceAccount', 'ClusterRole', 'ClusterRoleBinding', 'Role', 'RoleBinding'],
  'base/rbac/users.yaml': ['ClusterRole', 'ClusterRole'],
  'base/webhook.yaml': ['ValidatingWebhookConfiguration'],
  'cert-manager/kustomization.yaml': ['Kustomization'],
  'components/cert-manager/certificates.yaml': ['Issuer', 'Certificate', 'Issuer', 'Certificate'],
  'components/cert-manager/kustomization.yaml': ['Component'],
  'kustomization.yaml': ['Kustomization'],
};

describe('deploy/ manifests', () => {
  it('parse and hold the expected kinds, each valid against the Kubernetes schemas', async () => {
    const found: Record<string, string[]> = {};
    for (const file of await yamlFiles(DEPLOY)) {
      const name = relative(DEPLOY, file);
      const docs = parseYaml(await readFile(file, 'utf8'), name);
      found[name] = docs.map((d) => d.kind);
      for (const doc of docs) {
        assert.ok(doc.apiVersion, `${name}: ${doc.kind} has an apiVersion`);
        if (hasModel(doc.apiVersion, doc.kind)) await validateObject(doc);
      }
    }
    assert.deepEqual(found, EXPECTED_KINDS);
  });

  it('build with kustomize into the whole install, in one namespace', async () => {
    const objects = await kustomize('');
    const kinds = objects.map((o) => `${o.kind}/${o.metadata.name}`).sort();
    assert.deepEqual(
      kinds.map((k) => k.replace(/^Secret\/(offtake-[a-z]+)-[a-z0-9]+$/, 'Secret/$1-<hash>')),
      [
        'ClusterRole/offtake-api',
        'ClusterRole/offtake-dataproducts-edit',
        'ClusterRole/offtake-dataproducts-view',
        'ClusterRole/offtake-operator',
        'ClusterRoleBinding/offtake-api',
        'ClusterRoleBinding/offtake-operator',
        'CustomResourceDefinition/dataproducts.offtake.dev',
        'Deployment/offtake-api',
        'Deployment/offtake-operator',
        'Namespace/offtake-system',
        'PodDisruptionBudget/offtake-api',
        'PodDisruptionBudget/offtake-operator',
        'Role/offtake-operator-leader-election',
        'RoleBinding/offtake-operator-leader-election',
        'Secret/offtake-api-<hash>',
        'Secret/offtake-platform-<hash>',
        'Service/offtake-api',
        'ServiceAccount/offtake-api',
        'ServiceAccount/offtake-operator',
        'ValidatingWebhookConfiguration/offtake-dataproducts',
      ],
    );
    for (const object of objects) {
      // kustomize wraps long base64 values over lines, which the API server's decoder skips.
      if (object.kind === 'Secret') {
        const data = object.data as Record<string, string>;
        for (const key of Object.keys(data)) data[key] = data[key].replace(/\s+/g, '');
      }
      if (hasModel(object.apiVersion, object.kind)) await validateObject(object);
      const clusterScoped = [
        'Namespace',
        'CustomResourceDefinition',
        'ClusterRole',
        'ClusterRoleBinding',
        'ValidatingWebhookConfiguration',
      ];
      if (!clusterScoped.includes(object.kind))
        assert.equal(object.metadata.namespace, 'offtake-system', object.metadata.name);
    }
    const operator = objects.find(
      (o) => o.kind === 'Deployment' && o.metadata.name === 'offtake-operator',
    ) as unknown as {
      spec: {
        template: {
          spec: { containers: { image: string; args: string[]; env: { name: string; value?: string }[] }[] };
        };
      };
    };
    const [container] = operator.spec.template.spec.containers;
    assert.equal(container.image, 'offtake:0.1.0');
    assert.deepEqual(container.args, ['operator']);
    assert.equal(
      container.env.find((e) => e.name === 'OFFTAKE_DEDICATED_IMAGE')?.value,
      container.image,
      'dedicated workers run the operator’s own image',
    );
  });

  it('build with cert-manager managing the webhook certificate', async () => {
    const objects = await kustomize('cert-manager');
    const certificate = objects.find(
      (o) => o.kind === 'Certificate' && o.metadata.name === 'offtake-webhook',
    ) as unknown as {
      spec: { secretName: string; dnsNames: string[] };
    };
    assert.equal(certificate.spec.secretName, 'offtake-webhook-tls');
    assert.ok(certificate.spec.dnsNames.includes('offtake-api.offtake-system.svc'));
    const webhook = objects.find((o) => o.kind === 'ValidatingWebhookConfiguration') as unknown as {
      metadata: { annotations: Record<string, string> };
    };
    assert.equal(
      webhook.metadata.annotations['cert-manager.io/inject-ca-from'],
      'offtake-system/offtake-webhook',
    );
  });

  it('ship the CRD exactly as crds/ has it', async () => {
    assert.equal(
      await readFile(join(DEPLOY, 'base/crd/offtake.dev_dataproducts.yaml'), 'utf8'),
      await readFile(join(ROOT, 'crds/offtake.dev_dataproducts.yaml'), 'utf8'),
      'deploy/base/crd is stale: run npm run generate',
    );
  });

  it('send kubectl apply of a DataProduct to the API’s webhook over the Service', async () => {
    const [webhook] = parseYaml(
      await readFile(join(DEPLOY, 'base/webhook.yaml'), 'utf8'),
      'webhook.yaml',
    ) as unknown as {
      webhooks: {
        clientConfig: { service: { name: string; namespace: string; path: string; port: number } };
        rules: { apiGroups: string[]; resources: string[]; operations: string[] }[];
        failurePolicy: string;
        sideEffects: string;
      }[];
    }[];
    const [hook] = webhook.webhooks;
    assert.deepEqual(hook.clientConfig.service, {
      name: 'offtake-api',
      namespace: 'offtake-system',
      path: '/admission/validate',
      port: 443,
    });
    assert.deepEqual(hook.rules[0].resources, ['dataproducts']);
    assert.deepEqual(hook.rules[0].operations, ['CREATE', 'UPDATE']);
    assert.equal(hook.failurePolicy, 'Fail');
    assert.equal(hook.sideEffects, 'None');
  });
});

describe('RBAC', () => {
  const rulesOf = async (file: string, kind: string, name: string): Promise<Rule[]> => {
    const docs = parseYaml(await readFile(join(DEPLOY, 'base/rbac', file), 'utf8'), file);
    const role = docs.find((d) => d.kind === kind && d.metadata.name === name) as unknown as {
      rules: Rule[];
    };
    assert.ok(role, `${kind}/${name}`);
    return role.rules;
  };
  /** `group/resource verb` for every grant, so a test compares the exact set. */
  const grants = (rules: Rule[]): string[] =>
    rules
      .flatMap((r) =>
        r.apiGroups.flatMap((g) =>
          r.resources.flatMap((res) =>
            r.verbs.map(
              (v) =>
                `${g === '' ? 'core' : g}/${res} ${v}${r.resourceNames ? ` [${r.resourceNames.join(',')}]` : ''}`,
            ),
          ),
        ),
      )
      .sort();

  it('grants no wildcards anywhere', async () => {
    for (const file of ['operator.yaml', 'api.yaml', 'users.yaml']) {
      for (const doc of parseYaml(await readFile(join(DEPLOY, 'base/rbac', file), 'utf8'), file)) {
        for (const rule of (doc as unknown as { rules?: Rule[] }).rules ?? []) {
          for (const list of [rule.apiGroups, rule.resources, rule.verbs])
            assert.ok(!list.includes('*'), `${file}: ${JSON.stringify(rule)}`);
        }
      }
    }
  });

  it('gives the operator exactly the verbs and resources it uses', async () => {
    const owned = (group: string, resources: string[]) =>
      resources.flatMap((r) => ['create', 'delete', 'get', 'list', 'patch'].map((v) => `${group}/${r} ${v}`));
    assert.deepEqual(
      grants(await rulesOf('operator.yaml', 'ClusterRole', 'offtake-operator')),
      [
        ...['get', 'list', 'patch', 'update', 'watch'].map((v) => `offtake.dev/dataproducts ${v}`),
        ...['get', 'patch', 'update'].map((v) => `offtake.dev/dataproducts/status ${v}`),
        'offtake.dev/dataproducts/finalizers update',
        ...['create', 'get', 'update'].map((v) => `core/events ${v}`),
        ...owned('core', ['secrets', 'services']),
        ...owned('apps', ['statefulsets', 'deployments']),
        ...owned('policy', ['poddisruptionbudgets']),
      ].sort(),
    );
    assert.deepEqual(grants(await rulesOf('operator.yaml', 'Role', 'offtake-operator-leader-election')), [
      'coordination.k8s.io/leases create',
      'coordination.k8s.io/leases get [offtake-operator]',
      'coordination.k8s.io/leases update [offtake-operator]',
    ]);
  });

  it('gives the API DataProducts only, and no Secrets', async () => {
    const granted = grants(await rulesOf('api.yaml', 'ClusterRole', 'offtake-api'));
    assert.ok(
      granted.every((g) => g.startsWith('offtake.dev/dataproducts ')),
      granted.join(', '),
    );
  });
});

describe('Dockerfile', () => {
  it('builds the one image on node:24 with production dependencies, entrypoint offtake', async () => {
    const text = await readFile(join(ROOT, 'Dockerfile'), 'utf8');
    const froms = [...text.matchAll(/^FROM (\S+)/gm)].map((m) => m[1]);
    assert.ok(froms.length >= 1 && froms.every((f) => f.startsWith('node:24')), froms.join(', '));
    assert.match(text, /npm ci --omit=dev/);
    assert.match(text, /tsc -p tsconfig\.build\.json/);
    assert.match(text, /^USER node$/m);
    assert.match(text, /^ENTRYPOINT \["offtake"\]$/m);
    // Everything the build compiles is copied in.
    const build = JSON.parse(await readFile(join(ROOT, 'tsconfig.build.json'), 'utf8')) as {
      include: string[];
    };
    for (const dir of build.include) assert.match(text, new RegExp(`^COPY ${dir} \\./${dir}$`, 'm'), dir);
  });

  it('webhook-cert.sh is valid bash', async () => {
    await run('bash', ['-n', join(DEPLOY, 'webhook-cert.sh')]);
  });
});
