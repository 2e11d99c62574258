/**
 * The DataProduct schema, written once. The CRD in `crds/` (see `generate.ts`), the API's ajv
 * validator, the OpenAPI document and the TypeScript types in `crds/generated/` all come from
 * the objects here; `test/crd.test.ts` fails when the committed files drift from this source.
 *
 * The schemas are JSON Schema in the subset Kubernetes accepts for structural CRD schemas,
 * plus one Offtake keyword: `x-offtake-union`, on a node whose value may take one of several
 * shapes (e.g. `startFrom: earliest` or `startFrom: {time: ...}`). Kubernetes forbids `type`
 * inside `anyOf` and cannot type a CEL rule on an untyped node, so the CRD renders such a node
 * as `x-kubernetes-preserve-unknown-fields`; ajv checks the full union, in the API and in the
 * admission webhook (the union's `rule` documents the same constraint in CEL form).
 */

/** A JSON Schema node as used here (structural-schema subset, with descriptions). */
export type SchemaNode = {
  type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  description: string;
  properties?: Record<string, SchemaNode>;
  additionalProperties?: SchemaNode | boolean;
  required?: string[];
  items?: SchemaNode;
  enum?: readonly (string | number)[];
  pattern?: string;
  format?: string;
  minLength?: number;
  maxLength?: number;
  minItems?: number;
  maxItems?: number;
  minProperties?: number;
  maxProperties?: number;
  minimum?: number;
  maximum?: number;
  default?: unknown;
  uniqueItems?: boolean;
  'x-offtake-union'?: { variants: SchemaNode[]; rule: string; message: string };
  'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
  'x-kubernetes-list-map-keys'?: string[];
  'x-kubernetes-validations'?: { rule: string; message: string }[];
};

/** The API group, version and kind of a DataProduct. */
export const GROUP = 'offtake.dev';
export const VERSION = 'v1alpha1';
export const KIND = 'DataProduct';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const PLURAL = 'dataproducts';
export const SINGULAR = 'dataproduct';
export const SHORT_NAMES = ['dp'];

/** Kubernetes DNS-1123 label: what product and namespace names must be. */
export const DNS1123_LABEL = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
/** A stream name in the event log. Safe inside a Redis key and a URL path segment. */
export const STREAM_NAME = '^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$';
/**
 * A Postgres identifier Offtake will create: lower case, never needs quoting. (RE2 has no
 * lookahead, so the semantic checks reject `pg_` prefixes and reserved words.)
 */
export const SQL_IDENTIFIER = '^[a-z_][a-z0-9_]*$';
/** A CloudEvents `type` value that may be listed in `source.types`. */
export const EVENT_TYPE = '^[A-Za-z0-9][A-Za-z0-9._/-]*$';

/** The Postgres column types a product may declare, mapped by the sink from CEL values. */
export const POSTGRES_COLUMN_TYPES = [
  'text',
  'integer',
  'bigint',
  'numeric',
  'double precision',
  'boolean',
  'timestamptz',
  'date',
  'jsonb',
] as const;

/** The phases a product's status summarises itself with. */
export const PHASES = ['Pending', 'Provisioning', 'Seeding', 'Ready', 'Failed', 'Deleting'] as const;

/** Most bytes a single CEL expression may have. */
export const MAX_EXPRESSION_LENGTH = 4096;

const celExpression = (what: string): SchemaNode => ({
  type: 'string',
  minLength: 1,
  maxLength: MAX_EXPRESSION_LENGTH,
  description:
    `${what} A CEL expression over \`event\` (fields: id, source, type, subject, time, offset, ` +
    `datacontenttype, data). Parsed and type-checked when the spec is submitted.`,
});

const startFrom: SchemaNode = {
  description:
    'Where the seed starts replaying: "earliest" (the start of each stream), "latest" (only events ' +
    'after the product is created), {time: RFC 3339 timestamp} or {offset: an event-log offset}.',
  default: 'earliest',
  'x-offtake-union': {
    variants: [
      { type: 'string', enum: ['earliest', 'latest'], description: 'The start or the end of each stream.' },
      {
        type: 'object',
        description: 'The first event at or after this time.',
        properties: {
          time: { type: 'string', format: 'date-time', description: 'An RFC 3339 timestamp.' },
        },
        required: ['time'],
        additionalProperties: false,
      },
      {
        type: 'object',
        description: 'The first event after this offset.',
        properties: {
          offset: {
            type: 'string',
            pattern: '^[0-9]+-[0-9]+$',
            description: 'An event-log offset, as returned by the event log API.',
          },
        },
        required: ['offset'],
        additionalProperties: false,
      },
    ],
    rule:
      "type(self) == string ? self in ['earliest', 'latest'] : " +
      '(type(self) == map && size(self) == 1 && (has(self.time) || has(self.offset)))',
    message: 'startFrom must be earliest, latest, {time: <RFC 3339>} or {offset: <offset>}',
  },
};

/** The `spec` of a DataProduct: what data, in what shape, into which store. */
export const specSchema: SchemaNode = {
  type: 'object',
  description: 'What the product holds: which events, in what shape, in which store.',
  required: ['source', 'transform', 'target'],
  additionalProperties: false,
  properties: {
    source: {
      type: 'object',
      description: 'Which events of the central event log feed the product.',
      required: ['streams'],
      additionalProperties: false,
      properties: {
        streams: {
          type: 'array',
          description: 'Names of the event-log streams to read (lower case letters, digits, "-", "_", ".").',
          minItems: 1,
          maxItems: 16,
          uniqueItems: true,
          'x-kubernetes-list-type': 'set',
          items: {
            type: 'string',
            minLength: 1,
            maxLength: 100,
            pattern: STREAM_NAME,
            description: 'A stream name.',
          },
        },
        types: {
          type: 'array',
          description: 'Only events whose CloudEvents type is listed; all types when absent.',
          minItems: 1,
          maxItems: 64,
          uniqueItems: true,
          'x-kubernetes-list-type': 'set',
          items: {
            type: 'string',
            minLength: 1,
            maxLength: 200,
            pattern: EVENT_TYPE,
            description: 'A CloudEvents type, e.g. OrderPlaced.',
          },
        },
        startFrom,
      },
    },
    filter: celExpression('Which events the product keeps: must evaluate to a bool. All events when absent.'),
    transform: {
      type: 'object',
      description: 'How a kept event becomes a record in the target.',
      required: ['key'],
      additionalProperties: false,
      properties: {
        key: celExpression('The record key: must evaluate to a string (or a value with a string form).'),
        fields: {
          type: 'object',
          description:
            'Output fields: a map from field name (lower case, digits, "_") to the CEL expression that computes it.',
          minProperties: 1,
          maxProperties: 200,
          additionalProperties: celExpression('The value of this output field.'),
          'x-kubernetes-validations': [
            {
              rule: `self.all(k, k.matches('${SQL_IDENTIFIER}') && size(k) <= 63)`,
              message: 'field names must be lower case letters, digits and "_", at most 63 characters',
            },
          ],
        },
        tombstone: celExpression(
          'When this evaluates to true the event deletes the record with its key instead of writing it.',
        ),
      },
    },
    target: {
      type: 'object',
      description: 'The store the product fills.',
      required: ['type'],
      additionalProperties: false,
      properties: {
        type: {
          type: 'string',
          enum: ['redis', 'postgres', 'topic'],
          description: 'The kind of store: redis, postgres or topic (a derived stream in the event log).',
        },
        placement: {
          type: 'string',
          enum: ['shared', 'dedicated'],
          default: 'shared',
          description:
            'shared: a tenant in a platform-owned server (own schema/role, ACL user/prefix, stream); ' +
            'dedicated: its own server (Kubernetes mode only).',
        },
        redis: {
          type: 'object',
          description: 'Options of a redis target.',
          additionalProperties: false,
          properties: {
            format: {
              type: 'string',
              enum: ['hash', 'json'],
              default: 'hash',
              description: 'How a record is stored: a Redis hash of its fields, or one JSON string.',
            },
            ttlSeconds: {
              type: 'integer',
              minimum: 1,
              maximum: 31536000,
              description: 'Expire each record this many seconds after its last write; never when absent.',
            },
          },
        },
        postgres: {
          type: 'object',
          description: "Options of a postgres target: the table in the product's own schema.",
          required: ['table', 'columns'],
          additionalProperties: false,
          properties: {
            table: {
              type: 'string',
              minLength: 1,
              maxLength: 63,
              pattern: SQL_IDENTIFIER,
              description:
                'Table name: lower case letters, digits and "_", not starting with a digit or "pg_".',
            },
            columns: {
              type: 'object',
              description:
                'Column name to Postgres type, one per transform field: ' +
                POSTGRES_COLUMN_TYPES.join(', ') +
                '.',
              minProperties: 1,
              maxProperties: 200,
              additionalProperties: {
                type: 'string',
                enum: POSTGRES_COLUMN_TYPES,
                description: 'A Postgres column type.',
              },
            },
          },
        },
        topic: {
          type: 'object',
          description: 'Options of a topic target: the derived stream in the event log.',
          additionalProperties: false,
          properties: {
            stream: {
              type: 'string',
              minLength: 1,
              maxLength: 100,
              pattern: STREAM_NAME,
              description: 'Name of the derived stream; "<namespace>.<name>" when absent.',
            },
          },
        },
      },
    },
    deletionPolicy: {
      type: 'string',
      enum: ['Delete', 'Retain'],
      default: 'Delete',
      description:
        'Delete: deleting the product drops its store and data. Retain: keeps the data, drops access.',
    },
  },
};

const condition: SchemaNode = {
  type: 'object',
  description: 'One aspect of the product’s state (Kubernetes API conventions).',
  required: ['type', 'status'],
  properties: {
    type: { type: 'string', description: 'StoreReady, Seeded, Ready or Deleting.', maxLength: 316 },
    status: { type: 'string', enum: ['True', 'False', 'Unknown'], description: 'True, False or Unknown.' },
    reason: { type: 'string', maxLength: 1024, description: 'CamelCase reason for the last transition.' },
    message: { type: 'string', maxLength: 32768, description: 'Human-readable details.' },
    lastTransitionTime: {
      type: 'string',
      format: 'date-time',
      description: 'When the status last changed.',
    },
    observedGeneration: {
      type: 'integer',
      minimum: 0,
      description: 'The metadata.generation this condition was computed from.',
    },
  },
};

/** The `status` of a DataProduct, written only by the operator through the status path. */
export const statusSchema: SchemaNode = {
  type: 'object',
  description: 'What the operator observed. Conditions are the truth; phase is a summary.',
  properties: {
    observedGeneration: {
      type: 'integer',
      minimum: 0,
      description: 'The metadata.generation the status reflects.',
    },
    phase: {
      type: 'string',
      enum: [...PHASES],
      description: 'A summary for humans: Pending, Provisioning, Seeding, Ready, Failed or Deleting.',
    },
    conditions: {
      type: 'array',
      description: 'StoreReady, Seeded, Ready and Deleting conditions.',
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['type'],
      items: condition,
    },
    seed: {
      type: 'object',
      description: 'Progress of the seed (the replay up to the high-water mark).',
      properties: {
        highWaterMark: { type: 'string', description: 'The log head when the seed began.' },
        processed: { type: 'integer', minimum: 0, description: 'Events read so far.' },
        written: { type: 'integer', minimum: 0, description: 'Records written so far.' },
        deadLettered: { type: 'integer', minimum: 0, description: 'Events sent to the dead-letter stream.' },
        total: { type: 'integer', minimum: 0, description: 'Events to replay in all.' },
        percent: {
          type: 'integer',
          minimum: 0,
          maximum: 100,
          description: 'Share of the seed replayed, in whole percent (100 only once seeded).',
        },
        eventsPerSecond: { type: 'number', minimum: 0, description: 'Current replay rate.' },
        etaSeconds: { type: 'number', minimum: 0, description: 'Estimated seconds until seeded.' },
        startedAt: { type: 'string', format: 'date-time', description: 'When the seed began.' },
        completedAt: { type: 'string', format: 'date-time', description: 'When the seed ended.' },
      },
    },
    lag: {
      type: 'object',
      description: 'How far the live tail is behind the log.',
      properties: {
        events: { type: 'integer', minimum: 0, description: 'Events in the log not yet applied.' },
        seconds: { type: 'number', minimum: 0, description: 'Age of the oldest unapplied event.' },
      },
    },
    checkpoint: { type: 'string', description: 'The last offset whose effect is durably in the target.' },
    deadLetters: {
      type: 'object',
      description:
        'Events the pipeline of the build readers use could not process (an expression failed on them, or ' +
        'the target refused the record): the stream that holds them, with the source offset, the failing ' +
        'expression and the error of each (offtake deadletters <name> shows them), and how many there are.',
      properties: {
        stream: { type: 'string', description: 'The dead-letter stream in the event log.' },
        count: { type: 'integer', minimum: 0, description: 'Events sent to it, by the seed and the tail.' },
      },
    },
    builds: {
      type: 'object',
      description:
        'The builds of the store: the one readers use and, after a spec change, the next one being seeded ' +
        'beside it (blue/green); readers switch to it atomically once it is seeded.',
      properties: {
        active: {
          type: 'object',
          description: 'The build readers use.',
          properties: {
            build: { type: 'integer', minimum: 1, description: 'Its number.' },
            generation: {
              type: 'integer',
              minimum: 0,
              description: 'The metadata.generation of the spec it was seeded from.',
            },
          },
        },
        next: {
          type: 'object',
          description: 'The build being seeded for the current spec, while readers still use the active one.',
          properties: {
            build: { type: 'integer', minimum: 1, description: 'Its number.' },
            generation: { type: 'integer', minimum: 0, description: 'The metadata.generation of its spec.' },
            processed: { type: 'integer', minimum: 0, description: 'Events of its seed replayed so far.' },
            total: { type: 'integer', minimum: 0, description: 'Events its seed replays in all.' },
          },
        },
      },
    },
    connection: {
      type: 'object',
      description: 'Where the product’s connection details are delivered.',
      properties: {
        secretRef: {
          type: 'object',
          description: 'The Secret (Kubernetes) or connection record (embedded) holding the credentials.',
          properties: { name: { type: 'string', description: 'Its name.' } },
        },
      },
    },
  },
};

/** The `metadata` fields a client may send; server-owned ones are accepted and ignored on write. */
export const metadataSchema: SchemaNode = {
  type: 'object',
  description: 'Standard object metadata.',
  required: ['name'],
  additionalProperties: false,
  properties: {
    name: {
      type: 'string',
      minLength: 1,
      maxLength: 63,
      pattern: DNS1123_LABEL,
      description: 'The product name: a DNS-1123 label (lower case letters, digits and "-", at most 63).',
    },
    namespace: {
      type: 'string',
      minLength: 1,
      maxLength: 63,
      pattern: DNS1123_LABEL,
      description: 'The namespace: a DNS-1123 label.',
    },
    labels: {
      type: 'object',
      description: 'Labels, for selection (Kubernetes label syntax).',
      maxProperties: 64,
      additionalProperties: { type: 'string', maxLength: 63, description: 'A label value.' },
    },
    annotations: {
      type: 'object',
      description: 'Annotations: free-form strings.',
      maxProperties: 64,
      additionalProperties: { type: 'string', maxLength: 65536, description: 'An annotation value.' },
    },
    uid: { type: 'string', description: 'Set by the server.' },
    resourceVersion: { type: 'string', description: 'Optimistic-concurrency token; send it back on update.' },
    generation: { type: 'integer', description: 'Set by the server; rises on every spec change.' },
    creationTimestamp: { type: 'string', description: 'Set by the server.' },
    deletionTimestamp: { type: 'string', description: 'Set by the server when deletion was requested.' },
    finalizers: {
      type: 'array',
      description: 'Set by the operator; deletion waits until it is empty.',
      items: { type: 'string', description: 'A finalizer name.' },
    },
  },
};

/** A whole DataProduct document as submitted to the API. */
export const dataProductSchema: SchemaNode = {
  type: 'object',
  description:
    'A DataProduct: a self-service request for a store (redis, postgres or topic) filled from the ' +
    'central event log through a CEL filter and transform, and kept current.',
  required: ['apiVersion', 'kind', 'metadata', 'spec'],
  additionalProperties: false,
  properties: {
    apiVersion: { type: 'string', enum: [API_VERSION], description: `Always ${API_VERSION}.` },
    kind: { type: 'string', enum: [KIND], description: `Always ${KIND}.` },
    metadata: metadataSchema,
    spec: specSchema,
    status: statusSchema,
  },
};

/**
 * Printer columns for `kubectl get dataproducts`: phase, target, seeded %, lag and age; with
 * `-o wide` also placement, the Ready condition, its reason and the dead letters.
 */
export const printerColumns = [
  { name: 'Phase', type: 'string', jsonPath: '.status.phase', description: 'Lifecycle summary.' },
  { name: 'Target', type: 'string', jsonPath: '.spec.target.type', description: 'redis, postgres or topic.' },
  {
    name: 'Seeded%',
    type: 'integer',
    jsonPath: '.status.seed.percent',
    description: 'Share of the seed replayed, in whole percent.',
  },
  {
    name: 'Lag',
    type: 'integer',
    jsonPath: '.status.lag.events',
    description: 'Events in the log the live tail has not applied yet.',
  },
  { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp', description: 'Time since creation.' },
  {
    name: 'Placement',
    type: 'string',
    jsonPath: '.spec.target.placement',
    description: 'shared or dedicated.',
    priority: 1,
  },
  {
    name: 'Ready',
    type: 'string',
    jsonPath: '.status.conditions[?(@.type=="Ready")].status',
    description: 'Whether the product is seeded and current.',
    priority: 1,
  },
  {
    name: 'Reason',
    type: 'string',
    jsonPath: '.status.conditions[?(@.type=="Ready")].reason',
    description: 'Why the product is (not) Ready.',
    priority: 1,
  },
  {
    name: 'Dead-Letters',
    type: 'integer',
    jsonPath: '.status.deadLetters.count',
    description: 'Events the pipeline could not process (offtake deadletters <name> shows them).',
    priority: 1,
  },
] as const;
