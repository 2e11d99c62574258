/**
 * Small steps the Kubernetes suites share: install the DataProduct CRD and wait until it serves,
 * create a namespace and a product (so owner references carry a real uid), and read objects as
 * JSON through kubectl.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import type { DataProductSpec } from '../../crds/generated/types.ts';
import type { ControlPlane } from './control-plane.ts';

/** The CRD as generated into crds/. */
export const CRD_FILE = fileURLToPath(new URL('../../crds/offtake.dev_dataproducts.yaml', import.meta.url));

/** Runs kubectl and fails the test, with kubectl's stderr, unless it exits 0; returns stdout. */
export async function kubectlOk(cp: ControlPlane, args: string[], input?: string): Promise<string> {
  const result = await cp.kubectl(args, input);
  assert.equal(result.code, 0, `kubectl ${args.join(' ')}: ${result.stderr}`);
  return result.stdout;
}

/** Reads one object as JSON (kubectl get -o json). */
export async function getJson<T = Record<string, unknown>>(cp: ControlPlane, args: string[]): Promise<T> {
  return JSON.parse(await kubectlOk(cp, ['get', ...args, '-o', 'json'])) as T;
}

/** Applies the DataProduct CRD and waits until the API server serves DataProducts. */
export async function installCrd(cp: ControlPlane): Promise<void> {
  await kubectlOk(cp, ['apply', '-f', CRD_FILE]);
  await kubectlOk(cp, [
    'wait',
    '--for=condition=Established',
    'crd/dataproducts.offtake.dev',
    '--timeout=60s',
  ]);
}

/** Creates a namespace (idempotent). */
export async function createNamespace(cp: ControlPlane, name: string): Promise<void> {
  await kubectlOk(cp, ['create', 'namespace', name, '--dry-run=client', '-o', 'yaml']).then((yaml) =>
    kubectlOk(cp, ['apply', '-f', '-'], yaml),
  );
}

/** A DataProduct as created in the cluster: what owner references and Events need. */
export interface CreatedProduct {
  metadata: { name: string; namespace: string; uid: string };
  spec: DataProductSpec;
}

/** Creates a DataProduct with `kubectl create` and returns it as stored (uid, defaults applied). */
export async function createProduct(
  cp: ControlPlane,
  namespace: string,
  name: string,
  spec: DataProductSpec,
): Promise<CreatedProduct> {
  const manifest = {
    apiVersion: 'offtake.dev/v1alpha1',
    kind: 'DataProduct',
    metadata: { name, namespace },
    spec,
  };
  const created = JSON.parse(
    await kubectlOk(cp, ['create', '-o', 'json', '-f', '-'], stringify(manifest)),
  ) as CreatedProduct;
  assert.ok(created.metadata.uid, 'the API server gave the product a uid');
  return created;
}

/** A minimal valid spec of a dedicated product. */
export function dedicatedSpec(type: 'redis' | 'postgres'): DataProductSpec {
  return {
    source: { streams: ['orders'] },
    transform: { key: 'event.data.id', fields: { amount: 'event.data.amount' } },
    target: {
      type,
      placement: 'dedicated',
      ...(type === 'postgres' ? { postgres: { table: 'orders', columns: { amount: 'numeric' } } } : {}),
    },
  };
}
