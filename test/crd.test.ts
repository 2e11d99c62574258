/**
 * The CRD side of "the schema, written once": the committed files match the source, and the
 * CRD is one Kubernetes accepts (valid CustomResourceDefinition, structural schema, RE2 patterns,
 * descriptions for `kubectl explain`).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import { CustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition';
import type { ICustomResourceDefinition } from 'kubernetes-models/apiextensions.k8s.io/v1/CustomResourceDefinition';
import { renderCrd } from '../crds/crd.ts';
import { renderTypes } from '../crds/generate-types.ts';

/** A node of an openAPIV3Schema, typed as far as the checks below read it. */
interface Node {
  [keyword: string]: unknown;
  type?: string;
  description?: string;
  pattern?: string;
  properties?: Record<string, Node>;
  items?: Node;
  additionalProperties?: Node | boolean;
  anyOf?: Node[];
  oneOf?: Node[];
  allOf?: Node[];
  not?: Node;
}

const FORBIDDEN = [
  'uniqueItems',
  'patternProperties',
  '$ref',
  'definitions',
  'dependencies',
  'additionalItems',
];
const FORBIDDEN_IN_JUNCTOR = ['type', 'description', 'default', 'additionalProperties', 'nullable'];

/** Calls `visit` on every schema node under `node`, depth first, with its path. */
function walk(
  node: Node,
  path: string,
  visit: (node: Node, path: string, inJunctor: boolean) => void,
  inJunctor = false,
): void {
  visit(node, path, inJunctor);
  for (const [name, child] of Object.entries(node.properties ?? {}))
    walk(child, `${path}.${name}`, visit, inJunctor);
  if (node.items) walk(node.items, `${path}[]`, visit, inJunctor);
  if (typeof node.additionalProperties === 'object')
    walk(node.additionalProperties, `${path}.*`, visit, inJunctor);
  for (const junctor of ['anyOf', 'oneOf', 'allOf'] as const) {
    (node[junctor] ?? []).forEach((branch, i) => walk(branch, `${path}.${junctor}[${i}]`, visit, true));
  }
  if (node.not) walk(node.not, `${path}.not`, visit, true);
}

/** What makes `schema` non-structural, one message per problem. */
function structuralViolations(schema: Node): string[] {
  const found: string[] = [];
  walk(schema, '', (node, path, inJunctor) => {
    const untyped =
      node['x-kubernetes-preserve-unknown-fields'] === true || node['x-kubernetes-int-or-string'] === true;
    if (!inJunctor && !node.type && !untyped) found.push(`${path}: no type`);
    for (const key of FORBIDDEN) if (key in node) found.push(`${path}: ${key}`);
    if (node.additionalProperties === false) found.push(`${path}: additionalProperties: false`);
    if (node.properties && node.additionalProperties !== undefined) {
      found.push(`${path}: properties with additionalProperties`);
    }
    if (inJunctor)
      for (const key of FORBIDDEN_IN_JUNCTOR) if (key in node) found.push(`${path}: ${key} in a junctor`);
  });
  return found;
}

/** Nodes without a description (what `kubectl explain` would show blank). */
function undescribed(schema: Node, root: string): string[] {
  const found: string[] = [];
  walk(schema, root, (node, path, inJunctor) => {
    if (!inJunctor && !(typeof node.description === 'string' && node.description.trim() !== ''))
      found.push(path);
  });
  return found;
}

/** Patterns RE2 (the apiserver's regex engine) cannot run: lookaround, backreferences, atomic groups. */
function nonRe2Patterns(schema: Node): string[] {
  const found: string[] = [];
  walk(schema, '', (node, path) => {
    if (typeof node.pattern !== 'string') return;
    if (/\(\?[=!<>]|\\[1-9]|\\k</.test(node.pattern)) found.push(`${path}: ${node.pattern}`);
  });
  return found;
}

const renderTypedCrd = (): ICustomResourceDefinition => renderCrd() as unknown as ICustomResourceDefinition;
const openApi = (): Node => renderTypedCrd().spec.versions[0].schema!.openAPIV3Schema as Node;

test('the committed CRD is exactly what the schema source renders', async () => {
  const committed = parse(
    await readFile(new URL('../crds/offtake.dev_dataproducts.yaml', import.meta.url), 'utf8'),
  );
  assert.deepEqual(
    committed,
    renderCrd(),
    'crds/offtake.dev_dataproducts.yaml is stale: run npm run generate',
  );
});

test('the committed types are exactly what the schema source renders', async () => {
  const committed = await readFile(new URL('../crds/generated/types.ts', import.meta.url), 'utf8');
  assert.equal(committed, await renderTypes(), 'crds/generated/types.ts is stale: run npm run generate');
});

test('the CRD is a valid apiextensions.k8s.io/v1 CustomResourceDefinition', () => {
  assert.doesNotThrow(() => new CustomResourceDefinition(renderTypedCrd()).validate());
});

test('the CustomResourceDefinition check rejects a broken CRD', () => {
  const broken = renderCrd() as { spec: { names: Record<string, unknown> } };
  delete broken.spec.names.plural;
  assert.throws(() => new CustomResourceDefinition(broken as never).validate(), /plural/);
});

test('the schema is structural', () => {
  assert.deepEqual(structuralViolations(openApi()), []);
});

test('every node under spec and status has a description', () => {
  const { spec, status } = openApi().properties!;
  assert.deepEqual([...undescribed(spec, 'spec'), ...undescribed(status, 'status')], []);
});

test('every pattern is RE2-safe', () => {
  assert.deepEqual(nonRe2Patterns(openApi()), []);
});

test('the checks above catch what they look for', () => {
  const bad: Node = {
    type: 'object',
    properties: {
      loose: { description: 'no type' },
      closed: { type: 'object', description: 'x', additionalProperties: false, uniqueItems: true },
      both: { type: 'object', description: 'x', properties: {}, additionalProperties: { type: 'string' } },
      union: { 'x-kubernetes-preserve-unknown-fields': true, anyOf: [{ type: 'string' }] },
      ref: { $ref: '#/definitions/x', pattern: '^(?!pg_)[a-z]+(\\1)$' },
    },
  };
  assert.deepEqual(structuralViolations(bad), [
    '.loose: no type',
    '.closed: uniqueItems',
    '.closed: additionalProperties: false',
    '.both: properties with additionalProperties',
    '.union.anyOf[0]: type in a junctor',
    '.ref: no type',
    '.ref: $ref',
  ]);
  assert.deepEqual(undescribed(bad, 'spec'), ['spec', 'spec.both.*', 'spec.union', 'spec.ref']);
  assert.deepEqual(nonRe2Patterns(bad), ['.ref: ^(?!pg_)[a-z]+(\\1)$']);
});

test('kubectl get shows phase, target and age; status is a subresource; dp is a short name', () => {
  const crd = renderTypedCrd();
  const version = crd.spec.versions[0];
  const columns = (version.additionalPrinterColumns ?? []).map((c) => `${c.name} ${c.jsonPath}`);
  assert.ok(columns.includes('Phase .status.phase'), columns.join(', '));
  assert.ok(columns.includes('Target .spec.target.type'), columns.join(', '));
  assert.ok(columns.includes('Age .metadata.creationTimestamp'), columns.join(', '));
  assert.deepEqual(version.subresources, { status: {} });
  assert.ok(crd.spec.names.shortNames?.includes('dp'));
  assert.equal(crd.metadata?.name, 'dataproducts.offtake.dev');
  assert.equal(crd.spec.scope, 'Namespaced');
});
