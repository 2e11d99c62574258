/**
 * The DataProduct CRD on a real kube-apiserver (etcd + kube-apiserver built from Go modules):
 * Kubernetes accepts it as a structural schema, `kubectl explain` shows its descriptions, and the
 * API server itself enforces it — the spec in DESIGN.md goes in exactly as written, and what the
 * schema forbids is refused with the server's own error and leaves nothing stored.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { ApiException, CustomObjectsApi } from '@kubernetes/client-node';
import { parse, stringify } from 'yaml';
import { kubeConfigFor, startControlPlane, type ControlPlane } from './control-plane.ts';

const CRD_FILE = fileURLToPath(new URL('../../crds/offtake.dev_dataproducts.yaml', import.meta.url));
const EXAMPLE_FILE = fileURLToPath(new URL('../../examples/eu-big-orders.yaml', import.meta.url));
const CRD_NAME = 'dataproducts.offtake.dev';
const NAMESPACE = 'checkout';

interface Condition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

/** A node of the CRD's openAPIV3Schema, as far as the tests read it. */
interface SchemaNode {
  description: string;
  properties: Record<string, SchemaNode>;
}

/** A DataProduct as the tests send it: loosely typed, since most are broken on purpose. */
interface Product {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace: string };
  spec: {
    source: { streams: unknown };
    transform: { key: string; fields: Record<string, string> };
    target?: { type: string; postgres?: { table: string; columns: Record<string, string> } };
    [field: string]: unknown;
  };
}

/** A minimal valid DataProduct, for the tests to break one field at a time. */
function validProduct(name: string): Product {
  return {
    apiVersion: 'offtake.dev/v1alpha1',
    kind: 'DataProduct',
    metadata: { name, namespace: NAMESPACE },
    spec: {
      source: { streams: ['orders'] },
      transform: { key: 'event.data.customerId', fields: { amount: 'event.data.amount' } },
      target: { type: 'redis' },
    },
  };
}

/** Collapses runs of white space, since kubectl wraps long descriptions. */
function squash(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}

describe('the DataProduct CRD on a real kube-apiserver', () => {
  let cp: ControlPlane;
  let crdSchema: SchemaNode;

  before(async () => {
    cp = await startControlPlane();
    const crd = parse(await readFile(CRD_FILE, 'utf8'));
    crdSchema = crd.spec.versions[0].schema.openAPIV3Schema;
    const ns = await cp.kubectl(['create', 'namespace', NAMESPACE]);
    assert.equal(ns.code, 0, ns.stderr);
  });

  after(async () => {
    await cp?.stop();
  });

  it('is accepted by kubectl apply and becomes Established with a structural schema', async () => {
    const applied = await cp.kubectl(['apply', '--validate=strict', '-f', CRD_FILE]);
    assert.equal(applied.code, 0, applied.stderr);
    assert.match(
      applied.stdout,
      /customresourcedefinition\.apiextensions\.k8s\.io\/dataproducts\.offtake\.dev/,
    );

    const waited = await cp.kubectl([
      'wait',
      '--for=condition=Established',
      `crd/${CRD_NAME}`,
      '--timeout=60s',
    ]);
    assert.equal(waited.code, 0, waited.stderr);

    const got = await cp.kubectl(['get', 'crd', CRD_NAME, '-o', 'json']);
    assert.equal(got.code, 0, got.stderr);
    const conditions = JSON.parse(got.stdout).status.conditions as Condition[];
    const byType = new Map(conditions.map((c) => [c.type, c]));
    assert.equal(byType.get('Established')?.status, 'True');
    assert.equal(byType.get('NamesAccepted')?.status, 'True');
    // The API server adds NonStructuralSchema (status True) when a schema is not structural.
    assert.equal(byType.get('NonStructuralSchema'), undefined, JSON.stringify(conditions));
  });

  it('shows the schema descriptions in kubectl explain', async () => {
    const spec = crdSchema.properties.spec;
    const postgres = spec.properties.target.properties.postgres;
    // The CRD's OpenAPI is published a moment after it is Established: ask until it is there.
    const explain = async (path: string, expected: string): Promise<string> => {
      let last = { stdout: '', stderr: '', code: -1 };
      for (let attempt = 0; attempt < 60; attempt++) {
        last = await cp.kubectl(['explain', path]);
        if (last.code === 0 && squash(last.stdout).includes(squash(expected))) return last.stdout;
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
      assert.fail(`kubectl explain ${path} never showed "${expected}": ${last.stdout}${last.stderr}`);
    };

    const specText = await explain('dataproduct.spec', spec.description);
    assert.match(specText, /GROUP:\s+offtake\.dev/);
    for (const field of ['source', 'filter', 'transform', 'target', 'deletionPolicy']) {
      assert.match(specText, new RegExp(`^\\s+${field}\\s`, 'm'), `spec.${field} listed`);
    }
    assert.ok(squash(specText).includes(squash(spec.properties.target.description)));

    const postgresText = await explain('dataproduct.spec.target.postgres', postgres.description);
    assert.match(postgresText, /^\s+table\s+<string> -required-/m);
    assert.match(postgresText, /^\s+columns\s+<map\[string\]string> -required-/m);
    assert.ok(squash(postgresText).includes(squash(postgres.properties.table.description)));
  });

  it('accepts examples/eu-big-orders.yaml exactly as written (strict field validation, server-side apply)', async () => {
    const example = parse(await readFile(EXAMPLE_FILE, 'utf8'));
    const applied = await cp.kubectl(['apply', '--server-side', '--validate=strict', '-f', EXAMPLE_FILE]);
    assert.equal(applied.code, 0, applied.stderr);
    assert.match(applied.stdout, /dataproduct\.offtake\.dev\/eu-big-orders serverside-applied/);

    const got = await cp.kubectl(['get', 'dataproduct', 'eu-big-orders', '-n', NAMESPACE, '-o', 'json']);
    assert.equal(got.code, 0, got.stderr);
    const stored = JSON.parse(got.stdout);
    assert.deepEqual(stored.spec, example.spec);
    assert.equal(stored.metadata.generation, 1);

    // The printer columns read the stored object.
    const table = await cp.kubectl(['get', 'dp', '-n', NAMESPACE, '-o', 'wide']);
    assert.equal(table.code, 0, table.stderr);
    assert.match(table.stdout, /^NAME\s+PHASE\s+TARGET\s+SEEDED%\s+LAG\s+AGE\s+PLACEMENT\s+READY\s+REASON/m);
    assert.match(table.stdout, /^eu-big-orders\s+postgres\s+\S+\s+shared\b/m);
  });

  it('fills in the schema defaults on a client-side apply too', async () => {
    const applied = await cp.kubectl(
      ['apply', '--validate=strict', '-f', '-'],
      stringify(validProduct('defaults')),
    );
    assert.equal(applied.code, 0, applied.stderr);
    const got = await cp.kubectl(['get', 'dataproduct', 'defaults', '-n', NAMESPACE, '-o', 'json']);
    const spec = JSON.parse(got.stdout).spec;
    assert.equal(spec.target.placement, 'shared');
    assert.equal(spec.deletionPolicy, 'Delete');
    assert.equal(spec.source.startFrom, 'earliest');
  });

  describe('refuses, with the API server’s own error, what the schema forbids', () => {
    /**
     * Sends `product` twice: through kubectl (what a user sees) and straight to the API server
     * (the status it returns), then checks that nothing was stored under its name.
     */
    async function refuse(product: Product): Promise<{ kubectl: string; causes: string[] }> {
      const viaKubectl = await cp.kubectl(['apply', '--validate=strict', '-f', '-'], stringify(product));
      assert.notEqual(viaKubectl.code, 0, `kubectl apply accepted it: ${viaKubectl.stdout}`);

      const api = kubeConfigFor(cp).makeApiClient(CustomObjectsApi);
      const err: unknown = await api
        .createNamespacedCustomObject({
          group: 'offtake.dev',
          version: 'v1alpha1',
          namespace: NAMESPACE,
          plural: 'dataproducts',
          body: product,
          fieldValidation: 'Strict',
        })
        .then(
          () => assert.fail('the API server accepted it'),
          (e: unknown) => e,
        );
      assert.ok(err instanceof ApiException, String(err));
      const status = typeof err.body === 'string' ? JSON.parse(err.body) : err.body;
      assert.equal(err.code, status.code);
      assert.equal(status.kind, 'Status');

      const name = product.metadata.name;
      const left = await cp.kubectl(['get', 'dataproducts', '-n', NAMESPACE, '-o', 'name']);
      assert.doesNotMatch(left.stdout, new RegExp(`/${name}$`, 'm'), 'nothing stored');

      const causes = ((status.details?.causes ?? []) as { field?: string; message?: string }[]).map(
        (c) => `${c.field ?? ''}: ${c.message ?? ''}`,
      );
      assert.equal(status.reason, err.code === 422 ? 'Invalid' : 'BadRequest', status.message);
      return { kubectl: viaKubectl.stderr, causes: causes.length > 0 ? causes : [status.message] };
    }

    it('a missing required field', async () => {
      const product = validProduct('no-target');
      delete product.spec.target;
      const { kubectl, causes } = await refuse(product);
      assert.match(kubectl, /spec\.target: Required value/);
      assert.ok(
        causes.some((c) => /^spec\.target: Required value/.test(c)),
        causes.join('\n'),
      );
    });

    it('a value outside an enum', async () => {
      const product = validProduct('bad-enum');
      product.spec.target!.type = 'mysql';
      const { kubectl, causes } = await refuse(product);
      assert.match(
        kubectl,
        /spec\.target\.type: Unsupported value: "mysql": supported values: "redis", "postgres", "topic"/,
      );
      assert.ok(
        causes.some((c) => c.startsWith('spec.target.type: Unsupported value')),
        causes.join('\n'),
      );
    });

    it('a metadata.name that is no DNS-1123 label (the CRD’s x-kubernetes-validations rule)', async () => {
      const { kubectl, causes } = await refuse(validProduct('EU_big_orders'));
      assert.match(kubectl, /metadata\.name must be a DNS-1123 label/);
      assert.ok(
        causes.some((c) => c.includes('metadata.name must be a DNS-1123 label')),
        causes.join('\n'),
      );
    });

    it('a value of the wrong type', async () => {
      const product = validProduct('wrong-type');
      product.spec.source.streams = 'orders';
      const { kubectl, causes } = await refuse(product);
      assert.match(
        kubectl,
        /spec\.source\.streams: Invalid value: "string": spec\.source\.streams in body must be of type array/,
      );
      assert.ok(
        causes.some((c) => c.startsWith('spec.source.streams: Invalid value')),
        causes.join('\n'),
      );
    });

    it('a transform field name the CEL rule on transform.fields rejects', async () => {
      const product = validProduct('bad-field-name');
      product.spec.transform.fields = { 'Order Amount': 'event.data.amount' };
      const { kubectl } = await refuse(product);
      assert.match(
        kubectl,
        /spec\.transform\.fields: Invalid value: "object": field names must be lower case/,
      );
    });

    it('a pattern violation in a nested field', async () => {
      const product = validProduct('bad-table');
      product.spec.target = {
        type: 'postgres',
        postgres: { table: '1orders', columns: { amount: 'numeric' } },
      };
      const { kubectl } = await refuse(product);
      assert.match(kubectl, /spec\.target\.postgres\.table: Invalid value: "1orders": .*should match/);
    });

    it('an unknown field, under strict field validation', async () => {
      const product = validProduct('unknown-field');
      product.spec.filtr = "event.data.region == 'EU'";
      const { kubectl, causes } = await refuse(product);
      assert.match(kubectl, /unknown field "spec\.filtr"/);
      assert.ok(
        causes.some((c) => c.includes('unknown field "spec.filtr"')),
        causes.join('\n'),
      );
    });
  });
});
