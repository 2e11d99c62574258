/**
 * The postgres target: a table of the product's declared columns in the product's schema.
 *
 * Layout. The rows live in a storage table `_offtake_<table>` with the primary key `_key`, the
 * declared columns, the guard — `_offset_ms` and `_offset_seq` (numeric(20,0) each, so offsets
 * compare as numbers over their whole 64-bit range, never as "ms-seq" strings) and `_stream`
 * (collation "C", byte order, like every other sink) — and `_deleted`. A delete does not remove
 * the row: it clears the columns and sets `_deleted`, so the row keeps guarding the key and a
 * delete at offset N still beats an upsert older than N that arrives later, until
 * {@link PostgresSink.purgeTombstones} removes it once no older event can arrive (a partial index
 * over the deleted rows' times keeps that cheap). Readers use the view
 * named after the table, `<schema>.<table>`: `_key`, the declared columns, `_offset`
 * (`<ms>-<seq>`) and `_stream` of the live rows only. One table carries guard and data, so every
 * write is a single `INSERT ... ON CONFLICT (_key) DO UPDATE ... WHERE <stored position is
 * older>`, which Postgres runs atomically per row even under concurrent writers — parallel seed
 * jobs need no locks of their own. Rows are merged in `_key` order (collation "C") so concurrent
 * batches take row locks in one order and cannot deadlock.
 *
 * Writes. A batch is reduced to the newest record per key, checked and converted in TypeScript
 * (a value that does not fit its column is a {@link SinkRecordError}, nothing written), and held
 * as one array per column. Small batches bind the arrays and merge in one statement straight
 * from `unnest(...)`; batches of `bulkThreshold` records or more are streamed with `COPY ...
 * FROM STDIN` (text format, see `copy-encoder.ts`) into a temporary staging table and merged
 * from there in one set-based statement, all in one transaction. The checkpoint is upserted by
 * the same statement as the rows (a data-modifying CTE), so it commits with them or not at all.
 * Checkpoints are kept in `<schema>._offtake_checkpoints`, keyed by storage table and name.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { POSTGRES_COLUMN_TYPES } from '../../crds/dataproduct.schema.ts';
import { KEY_COLUMN, OFFSET_COLUMN } from '../../lib/validation/semantic.ts';
import { copyTextChunks } from './copy-encoder.ts';
import { copyIn } from './copy-in.ts';
import {
  FORMATTED_COLUMN_TYPES,
  checkIdentifier,
  isColumnType,
  isMismatch,
  quoteIdent,
  toColumnValue,
  type ColumnValue,
  type PostgresColumnType,
} from './postgres-columns.ts';
import { checkRecord, checkpointJson, compareRecords, offsetParts, parseCheckpoint } from './records.ts';
import type { Checkpoint, Sink, SinkRecord, SinkWriteResult } from './sink.ts';
import { SinkRecordError } from './sink-record-error.ts';

/** Options of a {@link PostgresSink}. */
export interface PostgresSinkOptions {
  /** The product's schema. */
  schema: string;
  /** The table (a view, see above) readers query. */
  table: string;
  /** Column name -> declared type, in table order. */
  columns: Record<string, PostgresColumnType>;
  /** Table holding checkpoints, in the same schema (default `_offtake_checkpoints`). */
  checkpointTable?: string;
  /** The storage table behind the view (default {@link storageTableName} of `table`). */
  storageTable?: string;
  /**
   * Whether `prepare` creates the view and `drop` drops it (default true). False when someone
   * else decides which storage table readers see (the operator, switching builds with
   * {@link PostgresSink.publishView}).
   */
  ownsView?: boolean;
  /** Batches of at least this many records (after keeping the newest per key) go through a staging table (default 500). */
  bulkThreshold?: number;
}

/** The default checkpoint table. */
export const DEFAULT_CHECKPOINT_TABLE = '_offtake_checkpoints';

/** The guard and bookkeeping columns of the storage table, after the declared ones. */
const OFFSET_MS = `${OFFSET_COLUMN}_ms`;
const OFFSET_SEQ = `${OFFSET_COLUMN}_seq`;
const STREAM = '_stream';
const DELETED = '_deleted';

/** Storage and view names start with this; a product table may not. */
const INTERNAL_TABLE_PREFIX = '_offtake';

/** Deleted rows removed per purge statement, so no one transaction grows large. */
const PURGE_BATCH = 10_000;

/** Purge statements per call: a large backlog is worked off over several calls, never in one long stall of the tail. */
const PURGE_RUNS = 10;

/** The longest identifier Postgres keeps (NAMEDATALEN - 1). */
const MAX_IDENTIFIER = 63;

/** Postgres' SQLSTATE for a missing table. */
const UNDEFINED_TABLE = '42P01';

function shortHash(text: string, length: number): string {
  return createHash('sha256').update(text).digest('hex').slice(0, length);
}

/**
 * The name of the storage table behind a product table: `_offtake_<table>`, or of one build of
 * it, `_offtake_b<build>_<table>` (table names start with a letter, so the build number cannot
 * run into them); for long names a truncation with a hash of the full name, so it always fits
 * 63 characters.
 */
export function storageTableName(table: string, build?: number): string {
  const name = `${INTERNAL_TABLE_PREFIX}_${build === undefined ? '' : `b${build}_`}${table}`;
  if (name.length <= MAX_IDENTIFIER) return name;
  const hash = shortHash(name, 8);
  return `${name.slice(0, MAX_IDENTIFIER - hash.length - 1)}_${hash}`;
}

/** A batch in column-major form, ready to be bound as one array per column. */
interface ColumnArrays {
  keys: string[];
  values: ColumnValue[][];
  ms: string[];
  seq: string[];
  streams: string[];
  deleted: boolean[];
}

/** The sink of a postgres target. The pool belongs to the caller. */
export class PostgresSink implements Sink {
  readonly schema: string;
  readonly table: string;
  readonly storageTable: string;
  readonly checkpointTable: string;
  readonly columns: Readonly<Record<string, PostgresColumnType>>;
  readonly bulkThreshold: number;
  readonly ownsView: boolean;
  private readonly pool: pg.Pool;
  private readonly columnNames: string[];
  private readonly columnTypes: PostgresColumnType[];
  /** Every column null: a delete's values. */
  private readonly nulls: readonly ColumnValue[];
  private readonly qualifiedStorage: string;
  private readonly qualifiedView: string;
  private readonly qualifiedCheckpoints: string;
  private readonly stagingTable: string;
  private readonly sql: {
    merge: Statement;
    mergeWithCheckpoint: Statement;
    stage: string;
    mergeStaged: Statement;
    mergeStagedWithCheckpoint: Statement;
    checkpoint: string;
    tombstoneIndex: string;
    purge: Statement;
  };

  constructor(pool: pg.Pool, opts: PostgresSinkOptions) {
    this.pool = pool;
    this.schema = checkIdentifier(opts.schema, 'schema');
    this.table = checkIdentifier(opts.table, 'table');
    if (this.table.startsWith(INTERNAL_TABLE_PREFIX)) {
      throw new Error(
        `A product table name may not start with "${INTERNAL_TABLE_PREFIX}" (Offtake's own tables do).`,
      );
    }
    this.checkpointTable = checkIdentifier(
      opts.checkpointTable ?? DEFAULT_CHECKPOINT_TABLE,
      'checkpoint table',
    );
    this.storageTable =
      opts.storageTable === undefined
        ? storageTableName(this.table)
        : checkIdentifier(opts.storageTable, 'storage table');
    if (!this.storageTable.startsWith(INTERNAL_TABLE_PREFIX)) {
      throw new Error(`A storage table name starts with "${INTERNAL_TABLE_PREFIX}".`);
    }
    this.ownsView = opts.ownsView ?? true;
    this.bulkThreshold = opts.bulkThreshold ?? 500;
    if (!Number.isInteger(this.bulkThreshold) || this.bulkThreshold < 1) {
      throw new Error('bulkThreshold must be a positive integer.');
    }
    if (typeof opts.columns !== 'object' || opts.columns === null || Object.keys(opts.columns).length === 0) {
      throw new Error('A postgres sink needs at least one column.');
    }
    const columns: Record<string, PostgresColumnType> = {};
    for (const [name, type] of Object.entries(opts.columns)) {
      checkIdentifier(name, 'column');
      if (name.startsWith('_'))
        throw new Error(
          `The column name ${JSON.stringify(name)} is reserved: names starting with "_" are Offtake's.`,
        );
      if (!isColumnType(type)) {
        throw new Error(
          `The column ${name} has an unknown type; use one of ${POSTGRES_COLUMN_TYPES.join(', ')}.`,
        );
      }
      columns[name] = type;
    }
    this.columns = Object.freeze(columns);
    this.columnNames = Object.keys(columns);
    this.columnTypes = Object.values(columns);
    this.nulls = Object.freeze(this.columnNames.map(() => null));

    const s = quoteIdent(this.schema);
    this.qualifiedStorage = `${s}.${quoteIdent(this.storageTable)}`;
    this.qualifiedView = `${s}.${quoteIdent(this.table)}`;
    this.qualifiedCheckpoints = `${s}.${quoteIdent(this.checkpointTable)}`;
    // Temporary tables are per session; the hash keeps sinks (and changed definitions) apart.
    this.stagingTable = `_offtake_stage_${shortHash(`${this.schema}.${this.storageTable}:${JSON.stringify(columns)}`, 16)}`;
    this.sql = this.buildSql();
  }

  private buildSql(): PostgresSink['sql'] {
    const all = [KEY_COLUMN, ...this.columnNames, OFFSET_MS, OFFSET_SEQ, STREAM, DELETED].map(quoteIdent);
    const arrayTypes = ['text', ...this.columnTypes, 'numeric', 'numeric', 'text', 'boolean'];
    const unnest = `unnest(${arrayTypes.map((t, i) => `$${i + 1}::${t}[]`).join(', ')}) AS i(${all.join(', ')})`;
    const key = quoteIdent(KEY_COLUMN);
    const position = (alias: string) =>
      `(${alias}.${quoteIdent(OFFSET_MS)}, ${alias}.${quoteIdent(OFFSET_SEQ)}, ${alias}.${quoteIdent(STREAM)} COLLATE "C")`;
    const upsert = (from: string) =>
      `INSERT INTO ${this.qualifiedStorage} AS t (${all.join(', ')})\n` +
      `  SELECT ${all.join(', ')} FROM ${from} ORDER BY ${key} COLLATE "C"\n` +
      `  ON CONFLICT (${key}) DO UPDATE SET ${all
        .slice(1)
        .map((c) => `${c} = EXCLUDED.${c}`)
        .join(', ')}\n` +
      `  WHERE ${position('t')} < ${position('EXCLUDED')}\n` +
      `  RETURNING 1`;
    const checkpointCte = (first: number) =>
      `INSERT INTO ${this.qualifiedCheckpoints} (sink, name, position, updated_at) VALUES ($${first}, $${first + 1}, $${first + 2}::jsonb, now())\n` +
      `  ON CONFLICT (sink, name) DO UPDATE SET position = EXCLUDED.position, updated_at = EXCLUDED.updated_at`;
    const merge = (from: string, checkpointAt?: number) =>
      `WITH written AS (\n  ${upsert(from)}\n)` +
      (checkpointAt === undefined ? '' : `, checkpoint AS (\n  ${checkpointCte(checkpointAt)}\n)`) +
      `\nSELECT count(*)::int AS written FROM written`;
    const staging = `pg_temp.${quoteIdent(this.stagingTable)}`;
    return {
      merge: statement(merge(unnest)),
      mergeWithCheckpoint: statement(merge(unnest, arrayTypes.length + 1)),
      // ENCODING: the text is sent as UTF-8 whatever the session's client_encoding says.
      stage: `COPY ${staging} (${all.join(', ')}) FROM STDIN WITH (FORMAT text, ENCODING 'UTF8')`,
      mergeStaged: statement(merge(staging)),
      mergeStagedWithCheckpoint: statement(merge(staging, 1)),
      checkpoint: checkpointCte(1),
      tombstoneIndex:
        `CREATE INDEX IF NOT EXISTS ${quoteIdent(`${INTERNAL_TABLE_PREFIX}_tombstones_${shortHash(this.storageTable, 16)}`)}` +
        ` ON ${this.qualifiedStorage} (${quoteIdent(OFFSET_MS)}) WHERE ${quoteIdent(DELETED)}`,
      // The outer conditions are checked again on a row another writer changed meanwhile: a key
      // brought back by a newer upsert is not a tombstone any more and stays.
      purge: statement(
        `WITH purged AS (\n  DELETE FROM ${this.qualifiedStorage} AS t\n` +
          `  WHERE t.${quoteIdent(DELETED)} AND t.${quoteIdent(OFFSET_MS)} < $1::numeric AND t.${key} IN (\n` +
          `    SELECT ${key} FROM ${this.qualifiedStorage} WHERE ${quoteIdent(DELETED)} AND ${quoteIdent(OFFSET_MS)} < $1::numeric LIMIT $2)\n` +
          `  RETURNING 1\n)\nSELECT count(*)::int AS purged FROM purged`,
      ),
    };
  }

  /**
   * Why `record` cannot be written to this table, or undefined: the checks of `checkRecord`
   * (Postgres text cannot hold U+0000), every field a declared column, every value fitting its
   * column type (see `toColumnValue`).
   */
  validateRecord(record: SinkRecord): string | undefined {
    const converted = this.convert(record);
    return typeof converted === 'string' ? converted : undefined;
  }

  /**
   * A record's values in column order (null for a delete), or why it cannot be written. Each
   * record is checked and converted once: the conversion is most of the sink's CPU per record.
   */
  private convert(record: SinkRecord): readonly ColumnValue[] | null | string {
    const why = checkRecord(record, { allowNul: false });
    if (why !== undefined) return why;
    const fields = record.fields;
    if (record.op === 'delete' || fields === undefined) return record.op === 'delete' ? null : this.nulls;
    for (const name in fields) {
      if (Object.hasOwn(fields, name) && !Object.hasOwn(this.columns, name))
        return `the field ${JSON.stringify(name.slice(0, 64))} has no column in the table`;
    }
    const values: ColumnValue[] = new Array<ColumnValue>(this.columnNames.length);
    for (let c = 0; c < this.columnNames.length; c++) {
      const name = this.columnNames[c];
      const converted = toColumnValue(this.columnTypes[c], fields[name]);
      if (isMismatch(converted)) return `the value of field ${JSON.stringify(name)} ${converted.mismatch}`;
      values[c] = converted;
    }
    return values;
  }

  /** Checks every record and converts the newest per key into column arrays; throws {@link SinkRecordError}. */
  private toColumns(records: readonly SinkRecord[]): ColumnArrays {
    const newest = new Map<string, number>();
    const converted: (readonly ColumnValue[] | null)[] = new Array<readonly ColumnValue[] | null>(
      records.length,
    );
    for (let i = 0; i < records.length; i++) {
      const values = this.convert(records[i]);
      if (typeof values === 'string') throw new SinkRecordError(i, values);
      converted[i] = values;
      const seen = newest.get(records[i].key);
      if (seen === undefined || compareRecords(records[seen], records[i]) < 0) newest.set(records[i].key, i);
    }
    const out: ColumnArrays = {
      keys: [],
      values: this.columnNames.map(() => []),
      ms: [],
      seq: [],
      streams: [],
      deleted: [],
    };
    for (const i of newest.values()) {
      const record = records[i];
      const values = converted[i] ?? this.nulls;
      out.keys.push(record.key);
      for (let c = 0; c < this.columnNames.length; c++) out.values[c].push(values[c]);
      const { ms, seq } = offsetParts(record.offset);
      out.ms.push(ms);
      out.seq.push(seq);
      out.streams.push(record.stream);
      out.deleted.push(record.op === 'delete');
    }
    return out;
  }

  /**
   * Creates the schema (when missing), the storage table, the checkpoint table and the view.
   * Idempotent and safe to run concurrently (an advisory lock per schema). Throws when the
   * table exists with other columns: a changed spec needs its data dropped and seeded again.
   */
  async prepare(): Promise<void> {
    const s = quoteIdent(this.schema);
    const internal = [
      `${quoteIdent(OFFSET_MS)} numeric(20,0) NOT NULL`,
      `${quoteIdent(OFFSET_SEQ)} numeric(20,0) NOT NULL`,
      `${quoteIdent(STREAM)} text COLLATE "C" NOT NULL`,
      `${quoteIdent(DELETED)} boolean NOT NULL`,
    ];
    const declared = this.columnNames.map((c, i) => `${quoteIdent(c)} ${this.columnTypes[i]}`);
    await this.inTransaction(async (client) => {
      await this.lockSchema(client);
      const exists = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [this.schema]);
      if (exists.rowCount === 0) await client.query(`CREATE SCHEMA ${s}`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${this.qualifiedStorage} (${quoteIdent(KEY_COLUMN)} text PRIMARY KEY, ${[...declared, ...internal].join(', ')})`,
      );
      await this.checkStorageColumns(client);
      await client.query(this.sql.tombstoneIndex);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${this.qualifiedCheckpoints} (sink text NOT NULL, name text NOT NULL, position jsonb NOT NULL, updated_at timestamptz NOT NULL, PRIMARY KEY (sink, name))`,
      );
      if (this.ownsView)
        await client.query(`CREATE OR REPLACE VIEW ${this.qualifiedView} AS ${this.viewQuery()}`);
    });
  }

  /** The reader view's query: the live rows of the storage table, with `_offset` as text. */
  private viewQuery(): string {
    const columns = [
      quoteIdent(KEY_COLUMN),
      ...this.columnNames.map(quoteIdent),
      `${quoteIdent(OFFSET_MS)}::text || '-' || ${quoteIdent(OFFSET_SEQ)}::text AS ${quoteIdent(OFFSET_COLUMN)}`,
      quoteIdent(STREAM),
    ];
    return `SELECT ${columns.join(', ')} FROM ${this.qualifiedStorage} WHERE NOT ${quoteIdent(DELETED)}`;
  }

  /**
   * Points readers at this sink's storage table, in one transaction: drops the views named in
   * `replacing` (an earlier build's table names) and the view named `table`, creates it anew over
   * this storage table (its columns may differ, which `CREATE OR REPLACE` cannot do) and grants
   * SELECT on it to `grantTo`. A reader's query runs wholly before or wholly after the switch
   * (DROP VIEW waits for the queries using it), so readers never see a missing or half-built table.
   */
  async publishView(options: { grantTo?: string; replacing?: readonly string[] } = {}): Promise<void> {
    const s = quoteIdent(this.schema);
    await this.inTransaction(async (client) => {
      await this.lockSchema(client);
      for (const view of new Set([...(options.replacing ?? []), this.table])) {
        await client.query(`DROP VIEW IF EXISTS ${s}.${quoteIdent(checkIdentifier(view, 'table'))}`);
      }
      await client.query(`CREATE VIEW ${this.qualifiedView} AS ${this.viewQuery()}`);
      if (options.grantTo !== undefined) {
        await client.query(`GRANT SELECT ON ${this.qualifiedView} TO ${quoteIdent(options.grantTo)}`);
      }
    });
  }

  private async checkStorageColumns(client: pg.PoolClient): Promise<void> {
    const { rows } = await client.query<{ name: string; type: string }>(
      `SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute
        WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped`,
      [this.qualifiedStorage],
    );
    const expected = new Map<string, string>([
      [KEY_COLUMN, 'text'],
      ...this.columnNames.map((c, i): [string, string] => [c, FORMATTED_COLUMN_TYPES[this.columnTypes[i]]]),
      [OFFSET_MS, 'numeric(20,0)'],
      [OFFSET_SEQ, 'numeric(20,0)'],
      [STREAM, 'text'],
      [DELETED, 'boolean'],
    ]);
    const actual = new Map(rows.map((r) => [r.name, r.type]));
    const differs =
      actual.size !== expected.size || [...expected].some(([name, type]) => actual.get(name) !== type);
    if (differs) {
      throw new Error(
        `The table ${this.schema}.${this.table} already exists with other columns than the spec declares; ` +
          'drop the product data and seed again to change its columns.',
      );
    }
  }

  /**
   * Applies a batch: one statement for small batches, COPY into the staging table plus one merge
   * for large ones (one transaction); with `checkpoint`, stored in the same statement. Throws
   * {@link SinkRecordError} (nothing written) when a record is invalid.
   */
  async write(
    records: readonly SinkRecord[],
    checkpoint?: { name: string; position: Checkpoint },
  ): Promise<SinkWriteResult> {
    const columns = this.toColumns(records);
    const checkpointParams =
      checkpoint === undefined
        ? []
        : [this.storageTable, checkpoint.name, checkpointJson(checkpoint.name, checkpoint.position)];
    const n = columns.keys.length;
    if (n === 0) {
      if (checkpoint !== undefined) await this.pool.query(this.sql.checkpoint, checkpointParams);
      return { written: 0, skipped: records.length };
    }
    const arrays = [
      columns.keys,
      ...columns.values,
      columns.ms,
      columns.seq,
      columns.streams,
      columns.deleted,
    ];
    let written: number;
    if (n < this.bulkThreshold) {
      const { name, text } = checkpoint === undefined ? this.sql.merge : this.sql.mergeWithCheckpoint;
      const result = await this.pool.query<{ written: number }>({
        name,
        text,
        values: [...arrays, ...checkpointParams],
      });
      written = result.rows[0].written;
    } else {
      written = await this.inTransaction(async (client) => {
        await client.query(
          `CREATE TEMP TABLE IF NOT EXISTS ${quoteIdent(this.stagingTable)} (LIKE ${this.qualifiedStorage}) ON COMMIT DELETE ROWS`,
        );
        await copyIn(client, this.sql.stage, copyTextChunks(arrays));
        const { name, text } =
          checkpoint === undefined ? this.sql.mergeStaged : this.sql.mergeStagedWithCheckpoint;
        const result = await client.query<{ written: number }>({ name, text, values: checkpointParams });
        return result.rows[0].written;
      });
    }
    return { written, skipped: records.length - written };
  }

  async readCheckpoint(name: string): Promise<Checkpoint | null> {
    try {
      const { rows } = await this.pool.query<{ position: unknown }>(
        `SELECT position FROM ${this.qualifiedCheckpoints} WHERE sink = $1 AND name = $2`,
        [this.storageTable, name],
      );
      return rows.length === 0 ? null : parseCheckpoint(rows[0].position);
    } catch (err) {
      if ((err as { code?: string }).code === UNDEFINED_TABLE) return null;
      throw err;
    }
  }

  /**
   * Deletes the rows of deleted keys whose event is older than `beforeMs` (the milliseconds of an
   * offset, decimal), {@link PURGE_BATCH} per statement and at most {@link PURGE_RUNS} statements
   * (the rest goes at the next call); returns how many.
   */
  async purgeTombstones(beforeMs: string): Promise<number> {
    let purged = 0;
    for (let run = 0; run < PURGE_RUNS; run++) {
      const { rows } = await this.pool.query<{ purged: number }>({
        ...this.sql.purge,
        values: [beforeMs, PURGE_BATCH],
      });
      purged += rows[0].purged;
      if (rows[0].purged < PURGE_BATCH) break;
    }
    return purged;
  }

  /**
   * Drops the view (when the sink owns it), the storage table and its checkpoints (and the
   * checkpoint table once no other table of the schema has any). The schema stays: whoever
   * created it drops it.
   */
  async drop(): Promise<void> {
    await this.inTransaction(async (client) => {
      await this.lockSchema(client);
      if (this.ownsView) await client.query(`DROP VIEW IF EXISTS ${this.qualifiedView}`);
      await client.query(`DROP TABLE IF EXISTS ${this.qualifiedStorage}`);
      const { rows } = await client.query<{ exists: boolean }>(
        'SELECT to_regclass($1) IS NOT NULL AS exists',
        [this.qualifiedCheckpoints],
      );
      if (!rows[0].exists) return;
      await client.query(`DELETE FROM ${this.qualifiedCheckpoints} WHERE sink = $1`, [this.storageTable]);
      const left = await client.query(`SELECT 1 FROM ${this.qualifiedCheckpoints} LIMIT 1`);
      if (left.rowCount === 0) await client.query(`DROP TABLE ${this.qualifiedCheckpoints}`);
    });
  }

  /** Nothing to release: the pool belongs to the caller. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  private async lockSchema(client: pg.PoolClient): Promise<void> {
    await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [
      `offtake-sink:${this.schema}`,
    ]);
  }

  /** Runs `body` in a transaction on one pooled connection; a connection that failed is discarded. */
  private async inTransaction<T>(body: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    // A connection that dies while checked out reports here instead of as an uncaught 'error'.
    const onError = (err: Error) => {
      broken ??= err;
    };
    client.on('error', onError);
    try {
      await client.query('BEGIN');
      const result = await body(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      if (broken === undefined) {
        await client.query('ROLLBACK').catch((rollbackError: unknown) => {
          broken ??= rollbackError instanceof Error ? rollbackError : new Error(String(rollbackError));
        });
      }
      throw err;
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }
}

/** A statement prepared once per connection under a name derived from its text. */
interface Statement {
  name: string;
  text: string;
}

/** Names a statement by its text, so equal texts share a prepared statement and different ones never collide. */
function statement(text: string): Statement {
  return { name: `offtake_sink_${shortHash(text, 24)}`, text };
}
