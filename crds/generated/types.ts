/* Generated from crds/dataproduct.schema.ts by `npm run generate`. Do not edit. */

/**
 * What the product holds: which events, in what shape, in which store.
 */
export interface DataProductSpec {
  /**
   * Which events of the central event log feed the product.
   */
  source: {
    /**
     * Names of the event-log streams to read (lower case letters, digits, "-", "_", ".").
     *
     * @minItems 1
     * @maxItems 16
     *
     * Items: A stream name.
     */
    streams: string[];
    /**
     * Only events whose CloudEvents type is listed; all types when absent.
     *
     * @minItems 1
     * @maxItems 64
     *
     * Items: A CloudEvents type, e.g. OrderPlaced.
     */
    types?: string[];
    /**
     * Where the seed starts replaying: "earliest" (the start of each stream), "latest" (only events after the product is created), {time: RFC 3339 timestamp} or {offset: an event-log offset}.
     */
    startFrom?:
      | ("earliest" | "latest")
      | {
          /**
           * An RFC 3339 timestamp.
           */
          time: string;
        }
      | {
          /**
           * An event-log offset, as returned by the event log API.
           */
          offset: string;
        };
  };
  /**
   * Which events the product keeps: must evaluate to a bool. All events when absent. A CEL expression over `event` (fields: id, source, type, subject, time, offset, datacontenttype, data). Parsed and type-checked when the spec is submitted.
   */
  filter?: string;
  /**
   * How a kept event becomes a record in the target.
   */
  transform: {
    /**
     * The record key: must evaluate to a string (or a value with a string form). A CEL expression over `event` (fields: id, source, type, subject, time, offset, datacontenttype, data). Parsed and type-checked when the spec is submitted.
     */
    key: string;
    /**
     * Output fields: a map from field name (lower case, digits, "_") to the CEL expression that computes it.
     */
    fields?: {
      /**
       * The value of this output field. A CEL expression over `event` (fields: id, source, type, subject, time, offset, datacontenttype, data). Parsed and type-checked when the spec is submitted.
       */
      [k: string]: string;
    };
    /**
     * When this evaluates to true the event deletes the record with its key instead of writing it. A CEL expression over `event` (fields: id, source, type, subject, time, offset, datacontenttype, data). Parsed and type-checked when the spec is submitted.
     */
    tombstone?: string;
  };
  /**
   * The store the product fills.
   */
  target: {
    /**
     * The kind of store: redis, postgres or topic (a derived stream in the event log).
     */
    type: "redis" | "postgres" | "topic";
    /**
     * shared: a tenant in a platform-owned server (own schema/role, ACL user/prefix, stream); dedicated: its own server (Kubernetes mode only).
     */
    placement?: "shared" | "dedicated";
    /**
     * Options of a redis target.
     */
    redis?: {
      /**
       * How a record is stored: a Redis hash of its fields, or one JSON string.
       */
      format?: "hash" | "json";
      /**
       * Expire each record this many seconds after its last write; never when absent.
       */
      ttlSeconds?: number;
    };
    /**
     * Options of a postgres target: the table in the product's own schema.
     */
    postgres?: {
      /**
       * Table name: lower case letters, digits and "_", not starting with a digit or "pg_".
       */
      table: string;
      /**
       * Column name to Postgres type, one per transform field: text, integer, bigint, numeric, double precision, boolean, timestamptz, date, jsonb.
       */
      columns: {
        /**
         * A Postgres column type.
         */
        [k: string]:
          "text" | "integer" | "bigint" | "numeric" | "double precision" | "boolean" | "timestamptz" | "date" | "jsonb";
      };
    };
    /**
     * Options of a topic target: the derived stream in the event log.
     */
    topic?: {
      /**
       * Name of the derived stream; "<namespace>.<name>" when absent.
       */
      stream?: string;
    };
  };
  /**
   * Delete: deleting the product drops its store and data. Retain: keeps the data, drops access.
   */
  deletionPolicy?: "Delete" | "Retain";
}

/**
 * What the operator observed. Conditions are the truth; phase is a summary.
 */
export interface DataProductStatus {
  /**
   * The metadata.generation the status reflects.
   */
  observedGeneration?: number;
  /**
   * A summary for humans: Pending, Provisioning, Seeding, Ready, Failed or Deleting.
   */
  phase?: "Pending" | "Provisioning" | "Seeding" | "Ready" | "Failed" | "Deleting";
  /**
   * StoreReady, Seeded, Ready and Deleting conditions.
   *
   * Items: One aspect of the product’s state (Kubernetes API conventions).
   */
  conditions?: {
    /**
     * StoreReady, Seeded, Ready or Deleting.
     */
    type: string;
    /**
     * True, False or Unknown.
     */
    status: "True" | "False" | "Unknown";
    /**
     * CamelCase reason for the last transition.
     */
    reason?: string;
    /**
     * Human-readable details.
     */
    message?: string;
    /**
     * When the status last changed.
     */
    lastTransitionTime?: string;
    /**
     * The metadata.generation this condition was computed from.
     */
    observedGeneration?: number;
  }[];
  /**
   * Progress of the seed (the replay up to the high-water mark).
   */
  seed?: {
    /**
     * The log head when the seed began.
     */
    highWaterMark?: string;
    /**
     * Events read so far.
     */
    processed?: number;
    /**
     * Records written so far.
     */
    written?: number;
    /**
     * Events sent to the dead-letter stream.
     */
    deadLettered?: number;
    /**
     * Events to replay in all.
     */
    total?: number;
    /**
     * Share of the seed replayed, in whole percent (100 only once seeded).
     */
    percent?: number;
    /**
     * Current replay rate.
     */
    eventsPerSecond?: number;
    /**
     * Estimated seconds until seeded.
     */
    etaSeconds?: number;
    /**
     * When the seed began.
     */
    startedAt?: string;
    /**
     * When the seed ended.
     */
    completedAt?: string;
  };
  /**
   * How far the live tail is behind the log.
   */
  lag?: {
    /**
     * Events in the log not yet applied.
     */
    events?: number;
    /**
     * Age of the oldest unapplied event.
     */
    seconds?: number;
  };
  /**
   * The last offset whose effect is durably in the target.
   */
  checkpoint?: string;
  /**
   * Events the pipeline of the build readers use could not process (an expression failed on them, or the target refused the record): the stream that holds them, with the source offset, the failing expression and the error of each (offtake deadletters <name> shows them), and how many there are.
   */
  deadLetters?: {
    /**
     * The dead-letter stream in the event log.
     */
    stream?: string;
    /**
     * Events sent to it, by the seed and the tail.
     */
    count?: number;
  };
  /**
   * The builds of the store: the one readers use and, after a spec change, the next one being seeded beside it (blue/green); readers switch to it atomically once it is seeded.
   */
  builds?: {
    /**
     * The build readers use.
     */
    active?: {
      /**
       * Its number.
       */
      build?: number;
      /**
       * The metadata.generation of the spec it was seeded from.
       */
      generation?: number;
    };
    /**
     * The build being seeded for the current spec, while readers still use the active one.
     */
    next?: {
      /**
       * Its number.
       */
      build?: number;
      /**
       * The metadata.generation of its spec.
       */
      generation?: number;
      /**
       * Events of its seed replayed so far.
       */
      processed?: number;
      /**
       * Events its seed replays in all.
       */
      total?: number;
    };
  };
  /**
   * Where the product’s connection details are delivered.
   */
  connection?: {
    /**
     * The Secret (Kubernetes) or connection record (embedded) holding the credentials.
     */
    secretRef?: {
      /**
       * Its name.
       */
      name?: string;
    };
  };
}

/**
 * A DataProduct: a self-service request for a store (redis, postgres or topic) filled from the central event log through a CEL filter and transform, and kept current.
 */
export interface DataProduct {
  /**
   * Always offtake.dev/v1alpha1.
   */
  apiVersion: "offtake.dev/v1alpha1";
  /**
   * Always DataProduct.
   */
  kind: "DataProduct";
  /**
   * Standard object metadata.
   */
  metadata: {
    /**
     * The product name: a DNS-1123 label (lower case letters, digits and "-", at most 63).
     */
    name: string;
    /**
     * The namespace: a DNS-1123 label.
     */
    namespace?: string;
    /**
     * Labels, for selection (Kubernetes label syntax).
     */
    labels?: {
      /**
       * A label value.
       */
      [k: string]: string;
    };
    /**
     * Annotations: free-form strings.
     */
    annotations?: {
      /**
       * An annotation value.
       */
      [k: string]: string;
    };
    /**
     * Set by the server.
     */
    uid?: string;
    /**
     * Optimistic-concurrency token; send it back on update.
     */
    resourceVersion?: string;
    /**
     * Set by the server; rises on every spec change.
     */
    generation?: number;
    /**
     * Set by the server.
     */
    creationTimestamp?: string;
    /**
     * Set by the server when deletion was requested.
     */
    deletionTimestamp?: string;
    /**
     * Set by the operator; deletion waits until it is empty.
     *
     * Items: A finalizer name.
     */
    finalizers?: string[];
  };
  spec: DataProductSpec;
  status?: DataProductStatus;
}
