/**
 * Names of everything the operator creates for a product in the shared, platform-owned servers,
 * derived only from the product's validated namespace and name (and, for a topic, its spec).
 * Pure functions: the provisioners, the sink factory and the tests all name things here, so a
 * store made by one is always found by the others.
 */
import { createHash } from 'node:crypto';
import type { DataProductSpec } from '../crds/generated/types.ts';
import { checkStreamName } from '../lib/eventlog/event-log.ts';
import { buildOf, checkProductRef, type ProductRef } from '../worker/pipeline-keys.ts';
import { storageTableName } from '../worker/sinks/postgres-sink.ts';

/** The longest identifier Postgres keeps (NAMEDATALEN - 1). */
const MAX_POSTGRES_IDENTIFIER = 63;
/** Hex digits of the hash that keeps Postgres names collision-free. */
const HASH_LENGTH = 8;

/** Where a product's shared-placement store, and the build the reference names, live. */
export interface ProductStoreNames {
  /**
   * The product's Postgres schema and login role: `dp_<ns>_<name>_<hash>`, and the storage table
   * of a table of this build (see {@link storageTableName}).
   */
  postgres: { schema: string; role: string; storageTable(table: string): string };
  /**
   * The product's Redis ACL user (`dp:<ns>:<name>`) and the keys of a redis target. Everything
   * readers may read is under `productPrefix` (`<base>:`): the records of each build under
   * `keyPrefix` (`<base>:b<N>:`) and `currentKey` (`<base>:current`), which holds the key prefix
   * of the build readers should use. The sink's tombstones and checkpoints are beside the
   * product prefix (`<base>#b<N>#…`), outside the readers' reach.
   */
  redis: {
    user: string;
    productPrefix: string;
    currentKey: string;
    keyPrefix: string;
    tombstonePrefix: string;
    checkpointKey: string;
  };
  /** Glob patterns matching every key of every build of the product (records, pointer, tombstones, checkpoints). */
  redisPatterns: string[];
  /** The Redis hash where a topic target's sink keeps its checkpoints. */
  topicCheckpointKey: string;
  /** The name of the connection record (a Secret's name in Kubernetes mode). */
  connectionName: string;
}

function hash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, HASH_LENGTH);
}

/** The platform prefix whose names carry no trace of it (every name made before prefixes counted). */
export const DEFAULT_PLATFORM_PREFIX = 'offtake';

/**
 * The Postgres identifier of a product: `dp_<namespace>_<name>` with "-" as "_", cut so that it
 * fits 63 characters with `_<hash>` of the exact (namespace, name) after it. The hash keeps
 * `a-b/c` and `a/b-c` (both `dp_a_b_c`) apart; labels are lower case, so it never needs quoting.
 * Under another platform prefix than the default the prefix goes into the hash too, so two
 * Offtakes sharing one Postgres never name the same schema or role.
 */
export function postgresIdentifier(ref: ProductRef, platformPrefix = DEFAULT_PLATFORM_PREFIX): string {
  checkProductRef(ref);
  const readable = `dp_${ref.namespace}_${ref.name}`.replaceAll('-', '_');
  const room = MAX_POSTGRES_IDENTIFIER - HASH_LENGTH - 1;
  const hashed =
    platformPrefix === DEFAULT_PLATFORM_PREFIX
      ? `${ref.namespace}/${ref.name}`
      : `${platformPrefix}|${ref.namespace}/${ref.name}`;
  return `${readable.slice(0, room).replace(/_+$/, '')}_${hash(hashed)}`;
}

/**
 * The Redis ACL user of a product: `dp:<namespace>:<name>`, under another platform prefix than
 * the default `<prefix>:dp:<namespace>:<name>` (ACL users are server-wide, not per prefix).
 */
export function redisUserName(ref: ProductRef, platformPrefix = DEFAULT_PLATFORM_PREFIX): string {
  checkProductRef(ref);
  const user = `dp:${ref.namespace}:${ref.name}`;
  return platformPrefix === DEFAULT_PLATFORM_PREFIX ? user : `${platformPrefix}:${user}`;
}

/**
 * The names of a product's store under the platform's Redis prefix (e.g. `offtake`). Namespace
 * and name are DNS labels (no ":" or "#"), so no product's keys can fall under another's prefix.
 */
export function productStoreNames(platformPrefix: string, ref: ProductRef): ProductStoreNames {
  checkProductRef(ref);
  if (platformPrefix.length === 0) throw new RangeError('The platform prefix must not be empty.');
  const identifier = postgresIdentifier(ref, platformPrefix);
  const build = buildOf(ref);
  const base = `${platformPrefix}:dp:${ref.namespace}:${ref.name}`;
  return {
    postgres: {
      schema: identifier,
      role: identifier,
      storageTable: (table) => storageTableName(table, build),
    },
    redis: {
      user: redisUserName(ref, platformPrefix),
      productPrefix: `${base}:`,
      currentKey: `${base}:current`,
      keyPrefix: `${base}:b${build}:`,
      tombstonePrefix: `${base}#b${build}#tombstones:`,
      checkpointKey: `${base}#b${build}#checkpoints`,
    },
    redisPatterns: [redisGlob(`${base}:`), redisGlob(`${base}#`)],
    topicCheckpointKey: `${base}#b${build}#checkpoints`,
    connectionName: `${ref.name}-conn`,
  };
}

/** The derived stream of a topic target: `spec.target.topic.stream`, or `<namespace>.<name>`. */
export function topicStreamName(ref: ProductRef, spec: DataProductSpec): string {
  checkProductRef(ref);
  return checkStreamName(spec.target.topic?.stream ?? `${ref.namespace}.${ref.name}`);
}

/** A Redis glob that matches exactly the keys starting with `prefix` (or, with `exact`, the key itself). */
export function redisGlob(prefix: string, exact = false): string {
  const escaped = prefix.replace(/[\\*?[\]]/g, (c) => `\\${c}`);
  return exact ? escaped : `${escaped}*`;
}
