/**
 * Status for `kubectl get dataproducts`: the printer columns (phase, target, seeded %, lag, age)
 * point at fields the schema has and the operator writes, and the seeded percentage reads right.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { renderCrd } from '../crds/crd.ts';
import { statusSchema, specSchema, type SchemaNode } from '../crds/dataproduct.schema.ts';
import { seedPercent, seedStatus } from '../operator/product-status.ts';
import type { PipelineState } from '../worker/pipeline-runner.ts';

interface Column {
  name: string;
  type: string;
  jsonPath: string;
  priority?: number;
}

const columns = (): Column[] =>
  (renderCrd() as { spec: { versions: { additionalPrinterColumns: Column[] }[] } }).spec.versions[0]
    .additionalPrinterColumns;

/** The schema node a simple printer-column path (`.status.seed.percent`) names, if any. */
function nodeAt(path: string): SchemaNode | undefined {
  const [root, ...rest] = path.replace(/\[.*$/, '').slice(1).split('.');
  let node: SchemaNode | undefined =
    root === 'spec' ? specSchema : root === 'status' ? statusSchema : undefined;
  for (const key of rest) node = node?.properties?.[key];
  return node;
}

describe('printer columns', () => {
  it('show phase, target, seeded %, lag and age by default, placement and Ready with -o wide', () => {
    const shown = columns().filter((c) => (c.priority ?? 0) === 0);
    assert.deepEqual(
      shown.map((c) => [c.name, c.jsonPath]),
      [
        ['Phase', '.status.phase'],
        ['Target', '.spec.target.type'],
        ['Seeded%', '.status.seed.percent'],
        ['Lag', '.status.lag.events'],
        ['Age', '.metadata.creationTimestamp'],
      ],
    );
    assert.deepEqual(
      columns()
        .filter((c) => c.priority === 1)
        .map((c) => c.name),
      ['Placement', 'Ready', 'Reason', 'Dead-Letters'],
    );
  });

  it('point at schema fields of the column type', () => {
    for (const column of columns()) {
      if (column.jsonPath.startsWith('.metadata')) continue;
      const node = nodeAt(column.jsonPath);
      assert.ok(node, `${column.name}: ${column.jsonPath} is not in the schema`);
      if (column.jsonPath.includes('conditions[')) continue;
      assert.equal(node.type, column.type, `${column.name}: ${column.jsonPath}`);
    }
  });

  it('has a percent field bounded 0..100', () => {
    const percent = statusSchema.properties!.seed.properties!.percent;
    assert.deepEqual([percent.type, percent.minimum, percent.maximum], ['integer', 0, 100]);
  });
});

describe('seeded percentage', () => {
  it('rounds down and reaches 100 only once the seed is complete', () => {
    assert.equal(seedPercent(0, 0, false), 0);
    assert.equal(seedPercent(412, 1000, false), 41);
    assert.equal(seedPercent(999, 1000, false), 99);
    assert.equal(seedPercent(1000, 1000, false), 99, 'all read but not yet complete');
    assert.equal(seedPercent(1200, 1000, false), 99, 'a total that grew meanwhile');
    assert.equal(seedPercent(0, 0, true), 100, 'an empty seed is complete');
    assert.equal(seedPercent(1000, 1000, true), 100);
  });

  it('is written into status.seed', () => {
    const state = {
      seed: {
        highWaterMark: { orders: '5-0' },
        processed: 250,
        written: 250,
        deadLettered: 0,
        total: 1000,
        eventsPerSecond: 10,
        etaSeconds: 75,
        chunks: { total: 1, done: 0 },
        startedAt: '2030-01-01T00:00:00.000Z',
      },
    } as unknown as PipelineState;
    assert.equal(seedStatus(state).percent, 25);
    state.seed.completedAt = '2030-01-01T00:01:00.000Z';
    assert.equal(seedStatus(state).percent, 100);
  });
});
