/**
 * Renders the schema source as plain JSON Schema (draft 2020-12 subset) for ajv, the OpenAPI
 * document and the TypeScript type generator: `x-offtake-union` becomes `oneOf` of its
 * variants and the Kubernetes-only keywords are dropped.
 */
import type { SchemaNode } from './dataproduct.schema.ts';

/** A JSON Schema object. */
export type JsonSchema = Record<string, unknown>;

const KUBERNETES_ONLY = new Set([
  'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys',
  'x-kubernetes-validations',
]);

/** Converts one schema node (recursively) into plain JSON Schema. */
export function toJsonSchema(node: SchemaNode): JsonSchema {
  const out: JsonSchema = {};
  for (const [key, value] of Object.entries(node)) {
    if (KUBERNETES_ONLY.has(key)) continue;
    if (key === 'x-offtake-union') {
      const union = value as NonNullable<SchemaNode['x-offtake-union']>;
      out.oneOf = union.variants.map(toJsonSchema);
    } else if (key === 'properties') {
      out.properties = Object.fromEntries(
        Object.entries(value as Record<string, SchemaNode>).map(([k, v]) => [k, toJsonSchema(v)]),
      );
    } else if ((key === 'items' || key === 'additionalProperties') && typeof value === 'object') {
      out[key] = toJsonSchema(value as SchemaNode);
    } else {
      out[key] = value;
    }
  }
  return out;
}
