/**
 * The OpenAPI 3.1 document of the HTTP API, generated from the same schema source as the CRD
 * and the validator. Built once at start-up.
 */
import { dataProductSchema, statusSchema } from '../crds/dataproduct.schema.ts';
import { toJsonSchema } from '../crds/json-schema.ts';
import { ERRORS } from '../lib/errors.ts';

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (schema: unknown) => ({ 'application/json': { schema }, 'application/yaml': { schema } });
const problem = (description: string) => ({
  description,
  content: { 'application/problem+json': { schema: ref('Problem') } },
});

const nsParam = {
  name: 'namespace',
  in: 'path',
  required: true,
  schema: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', maxLength: 63 },
};
const nameParam = { ...nsParam, name: 'name' };
const dryRunParam = {
  name: 'dryRun',
  in: 'query',
  required: false,
  schema: { enum: ['All'] },
  description: 'Validate only; store nothing.',
};
const selectorParam = {
  name: 'labelSelector',
  in: 'query',
  required: false,
  schema: { type: 'string' },
  description: 'Kubernetes label selector.',
};

const fieldSelectorParam = {
  name: 'fieldSelector',
  in: 'query',
  required: false,
  schema: { type: 'string' },
  description:
    'Kubernetes field selector over metadata.name and metadata.namespace, e.g. metadata.name=eu-big-orders.',
};
const watchParams = [
  {
    name: 'watch',
    in: 'query',
    required: false,
    schema: { type: 'boolean' },
    description:
      'Stream changes instead of answering a list: one JSON object per line (application/x-ndjson), ' +
      '{"type": "ADDED" | "MODIFIED" | "DELETED", "object": <DataProduct>}. Without resourceVersion the stream ' +
      'starts with an ADDED line per selected product, then every change after them; a failure once streaming ' +
      '(resourceVersion too old: watch-expired) is a last {"type": "ERROR", "object": <Problem>} line. ' +
      'The stream ends when the client disconnects, after timeoutSeconds, or when the server stops: ' +
      'resume from the last resourceVersion seen, and list again after an ERROR.',
  },
  {
    name: 'resourceVersion',
    in: 'query',
    required: false,
    schema: { type: 'string' },
    description:
      'With watch=true: stream the changes after this version (from a list or the last event seen).',
  },
  {
    name: 'timeoutSeconds',
    in: 'query',
    required: false,
    schema: { type: 'integer', minimum: 1, maximum: 86400 },
    description: 'With watch=true: end the stream after this many seconds.',
  },
];
const listResponses = () => ({
  '200': {
    description: 'The list; with watch=true, a stream of watch events, one per line',
    content: {
      ...json(ref('DataProductList')),
      'application/x-ndjson': { schema: ref('DataProductWatchEvent') },
    },
  },
});

/** Returns the OpenAPI document; `extraPaths` lets other routers (the event log) describe themselves. */
export function openApiDocument(
  version: string,
  extraPaths: Record<string, unknown> = {},
): Record<string, unknown> {
  const errorResponses = {
    '400': problem('Invalid input: the errors list says what and where.'),
    '404': problem('No such resource.'),
    '409': problem('Conflict: stale resourceVersion or existing name.'),
    '413': problem('Body too large.'),
    '415': problem('Unsupported media type.'),
  };
  return {
    openapi: '3.1.0',
    info: {
      title: 'Offtake API',
      version,
      description: 'Self-service data provisioning: DataProducts filled from the central event log.',
    },
    paths: {
      '/v1/dataproducts': {
        get: {
          summary: 'List or watch DataProducts in all namespaces',
          parameters: [selectorParam, fieldSelectorParam, ...watchParams],
          responses: { ...listResponses(), '400': errorResponses['400'] },
        },
      },
      '/v1/namespaces/{namespace}/dataproducts': {
        parameters: [nsParam],
        get: {
          summary: 'List or watch DataProducts in a namespace',
          parameters: [selectorParam, fieldSelectorParam, ...watchParams],
          responses: { ...listResponses(), '400': errorResponses['400'] },
        },
        post: {
          summary: 'Create a DataProduct',
          parameters: [dryRunParam],
          requestBody: { required: true, content: json(ref('DataProduct')) },
          responses: {
            '201': { description: 'Created', content: json(ref('DataProduct')) },
            ...errorResponses,
          },
        },
      },
      '/v1/namespaces/{namespace}/dataproducts/{name}': {
        parameters: [nsParam, nameParam],
        get: {
          summary: 'Read a DataProduct',
          responses: {
            '200': { description: 'The product', content: json(ref('DataProduct')) },
            '404': errorResponses['404'],
          },
        },
        put: {
          summary: 'Replace a DataProduct (optimistic concurrency with metadata.resourceVersion)',
          parameters: [dryRunParam],
          requestBody: { required: true, content: json(ref('DataProduct')) },
          responses: {
            '200': { description: 'Replaced', content: json(ref('DataProduct')) },
            ...errorResponses,
          },
        },
        delete: {
          summary: 'Delete a DataProduct',
          parameters: [
            dryRunParam,
            { name: 'resourceVersion', in: 'query', required: false, schema: { type: 'string' } },
          ],
          responses: {
            '200': { description: 'Deleted' },
            '202': { description: 'Deletion pending finalizers', content: json(ref('DataProduct')) },
            '404': errorResponses['404'],
            '409': errorResponses['409'],
          },
        },
      },
      '/v1/namespaces/{namespace}/dataproducts/{name}/status': {
        parameters: [nsParam, nameParam],
        get: {
          summary: 'Read the status of a DataProduct',
          responses: {
            '200': {
              description: 'The status',
              content: json({ type: 'object', properties: { status: ref('DataProductStatus') } }),
            },
            '404': errorResponses['404'],
          },
        },
      },
      '/healthz': { get: { summary: 'Liveness', responses: { '200': { description: 'Alive' } } } },
      '/readyz': {
        get: {
          summary: 'Readiness (backing services reachable)',
          responses: { '200': { description: 'Ready' }, '503': problem('Not ready') },
        },
      },
      ...extraPaths,
    },
    components: {
      schemas: {
        DataProduct: toJsonSchema(dataProductSchema),
        DataProductStatus: toJsonSchema(statusSchema),
        DataProductList: {
          type: 'object',
          properties: {
            apiVersion: { type: 'string' },
            kind: { const: 'DataProductList' },
            metadata: { type: 'object', properties: { resourceVersion: { type: 'string' } } },
            items: { type: 'array', items: ref('DataProduct') },
          },
        },
        DataProductWatchEvent: {
          type: 'object',
          description: 'One line of a watch stream.',
          required: ['type', 'object'],
          properties: {
            type: { enum: ['ADDED', 'MODIFIED', 'DELETED', 'ERROR'] },
            object: {
              description:
                'The product as of the change (for DELETED: as last stored); for ERROR, a Problem.',
              oneOf: [ref('DataProduct'), ref('Problem')],
            },
          },
        },
        Problem: {
          type: 'object',
          description: 'RFC 9457 problem details.',
          required: ['type', 'title', 'status', 'detail', 'code'],
          properties: {
            type: { type: 'string', format: 'uri' },
            title: { type: 'string' },
            status: { type: 'integer' },
            detail: { type: 'string' },
            instance: { type: 'string' },
            code: { enum: Object.keys(ERRORS), description: 'Stable error code.' },
            errors: {
              type: 'array',
              items: {
                type: 'object',
                required: ['pointer', 'message'],
                properties: {
                  pointer: { type: 'string', description: 'JSON pointer into the submitted document.' },
                  message: { type: 'string' },
                  line: { type: 'integer' },
                  column: { type: 'integer' },
                  expressionColumn: { type: 'integer', description: 'Column inside a CEL expression.' },
                  kind: { type: 'string' },
                },
              },
            },
          },
        },
      },
    },
  };
}
