/**
 * Renders the DataProduct CustomResourceDefinition (apiextensions.k8s.io/v1) from the schema
 * source. The output must be a structural schema: every node typed (or explicitly untyped with
 * `x-kubernetes-preserve-unknown-fields`), none of the keywords v1 CRDs reject.
 */
import { stringify } from 'yaml';
import {
  DNS1123_LABEL,
  GROUP,
  KIND,
  PLURAL,
  SHORT_NAMES,
  SINGULAR,
  VERSION,
  dataProductSchema,
  printerColumns,
  specSchema,
  statusSchema,
} from './dataproduct.schema.ts';
import type { SchemaNode } from './dataproduct.schema.ts';

/** A node of a CRD's openAPIV3Schema. */
export type CrdSchema = Record<string, unknown>;

/** The header of the committed CRD file. */
export const CRD_YAML_HEADER =
  '# Generated from crds/dataproduct.schema.ts by `npm run generate`. Do not edit.\n' +
  '# The DataProduct CustomResourceDefinition: kubectl apply -f crds/offtake.dev_dataproducts.yaml\n';

/**
 * Converts one schema node (recursively) into a structural CRD schema node. Arrays are copied so
 * that no two nodes share an object (the YAML writer would otherwise emit anchors).
 */
export function toCrdSchema(node: SchemaNode): CrdSchema {
  const union = node['x-offtake-union'];
  if (union) {
    // Kubernetes forbids `type` inside anyOf/oneOf, so a string-or-object node can only be
    // untyped. It cannot carry a CEL rule either: the apiserver has no CEL type for an untyped
    // node and rejects the CRD ("unable to convert structural schema to CEL declarations").
    // The admission webhook checks the full union with the same ajv validator as the API.
    const out: CrdSchema = { description: node.description, 'x-kubernetes-preserve-unknown-fields': true };
    if (node.default !== undefined) out.default = node.default;
    return out;
  }
  const out: CrdSchema = {};
  for (const [key, value] of Object.entries(node)) {
    if (key === 'uniqueItems') continue; // forbidden in v1 CRDs; `x-kubernetes-list-type: set` says it
    if (key === 'additionalProperties') {
      // `false` is what pruning already does, and v1 CRDs reject it.
      if (typeof value === 'object') out[key] = toCrdSchema(value as SchemaNode);
    } else if (key === 'properties') {
      out[key] = Object.fromEntries(
        Object.entries(value as Record<string, SchemaNode>).map(([name, child]) => [
          name,
          toCrdSchema(child),
        ]),
      );
    } else if (key === 'items') {
      out[key] = toCrdSchema(value as SchemaNode);
    } else {
      out[key] = structuredClone(value);
    }
  }
  return out;
}

/** Returns the DataProduct CustomResourceDefinition as a plain object. */
export function renderCrd(): Record<string, unknown> {
  const top = dataProductSchema.properties ?? {};
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${PLURAL}.${GROUP}` },
    spec: {
      group: GROUP,
      names: {
        kind: KIND,
        listKind: `${KIND}List`,
        plural: PLURAL,
        singular: SINGULAR,
        shortNames: [...SHORT_NAMES],
        categories: ['offtake'],
      },
      scope: 'Namespaced',
      versions: [
        {
          name: VERSION,
          served: true,
          storage: true,
          subresources: { status: {} },
          additionalPrinterColumns: printerColumns.map((column) => ({ ...column })),
          schema: {
            openAPIV3Schema: {
              type: 'object',
              description: dataProductSchema.description,
              properties: {
                apiVersion: { type: 'string', description: top.apiVersion.description },
                kind: { type: 'string', description: top.kind.description },
                // Only name/generateName may be constrained here; the apiserver owns the rest.
                metadata: { type: 'object' },
                spec: toCrdSchema(specSchema),
                status: toCrdSchema(statusSchema),
              },
              required: ['spec'],
              // Product names become Postgres schema and role names and Redis key prefixes, so
              // they must be DNS-1123 labels even on the kubectl path (Kubernetes itself allows
              // longer DNS subdomains with dots).
              'x-kubernetes-validations': [
                {
                  rule: `self.metadata.name.matches('${DNS1123_LABEL}') && size(self.metadata.name) <= 63`,
                  message:
                    'metadata.name must be a DNS-1123 label: lower case letters, digits and "-", at most 63',
                },
              ],
            },
          },
        },
      ],
    },
  };
}

/** Returns the text of `crds/offtake.dev_dataproducts.yaml` (before formatting). */
export function renderCrdYaml(): string {
  return CRD_YAML_HEADER + stringify(renderCrd(), { lineWidth: 0, aliasDuplicateObjects: false });
}
