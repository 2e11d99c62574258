/**
 * Offline validation of Kubernetes objects against the API's OpenAPI schemas (kubernetes-models):
 * types, required fields and formats, without a cluster. The cluster suites in test/k8s/ then
 * prove what only a real API server checks.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** A class of kubernetes-models: constructing one and calling validate() throws on a schema violation. */
type ModelClass = new (data: unknown) => { validate(): void };

/** The kubernetes-models module path of an apiVersion and kind, e.g. `apps/v1/StatefulSet`. */
function modelPath(apiVersion: string, kind: string): string {
  return `kubernetes-models/${apiVersion}/${kind}`;
}

/** Whether kubernetes-models knows the kind (CRDs of other projects, e.g. cert-manager's, it does not). */
export function hasModel(apiVersion: string, kind: string): boolean {
  try {
    return existsSync(fileURLToPath(import.meta.resolve(modelPath(apiVersion, kind))));
  } catch {
    return false;
  }
}

/** Validates `object` against the schema of its apiVersion and kind; throws naming what is wrong. */
export async function validateObject(object: { apiVersion?: string; kind?: string }): Promise<void> {
  const { apiVersion, kind } = object;
  if (apiVersion === undefined || kind === undefined) throw new Error('the object has no apiVersion or kind');
  const module = (await import(modelPath(apiVersion, kind))) as Record<string, ModelClass>;
  const Model = module[kind];
  // JSON round trip: what would be sent (no undefined fields, Dates as strings).
  new Model(JSON.parse(JSON.stringify(object))).validate();
}
