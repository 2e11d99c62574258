/**
 * Shared-placement postgres stores: per product a schema and a login role, both named
 * `dp_<ns>_<name>_<hash>`, in the platform's database.
 *
 * Who owns what. The pipeline writes with the platform's credentials, so the platform's role
 * owns the schema and everything in it; the product's role owns nothing. It gets USAGE on its
 * schema and SELECT on its table's reader view — not on the storage table behind it, nor on the
 * checkpoints — so it can read its data and cannot write, drop or alter anything, and it has no
 * privilege on any other schema (new schemas grant nothing to PUBLIC). It is NOSUPERUSER,
 * NOCREATEDB, NOCREATEROLE, NOINHERIT, NOREPLICATION, NOBYPASSRLS with a connection limit, and
 * its search_path is its schema, so `SELECT * FROM <table>` works. What PUBLIC holds in the
 * database by default (CONNECT, TEMP, reading the system catalogs) it holds too; a platform
 * that wants less revokes those from PUBLIC once, for every tenant.
 *
 * Builds: each build of the product has its own storage table (`_offtake_b<N>_<table>`); the
 * reader view named after the table is switched from one build's storage to the next in one
 * transaction (`PostgresSink.publishView`), so readers see the old rows or the new, never none.
 *
 * Crash safety: the role, the schema and their grants are made in one transaction (Postgres DDL
 * is transactional); the storage table comes from the sink's own idempotent `prepare`, then the
 * view is published and granted (one transaction). Every step checks before it acts, so running it again repairs what a crash
 * left. The password reaches the server only as a SCRAM verifier.
 */
import type pg from 'pg';
import { parse as parsePostgresUrl } from 'pg-connection-string';
import type { ProductRef } from '../worker/pipeline-keys.ts';
import type { PipelineProduct } from '../worker/pipeline-state-store.ts';
import type { PostgresSink } from '../worker/sinks/postgres-sink.ts';
import { quoteIdent } from '../worker/sinks/postgres-columns.ts';
import { postgresFailure } from './failures.ts';
import type { ProductConnection } from './product-connection.ts';
import { productSink, type ProductSinkDeps } from './product-sinks.ts';
import type { Credential, EnsureOptions, ProvisionedStore, Provisioner } from './provisioner.ts';
import { ProvisioningError } from './provisioning-error.ts';
import { scramSha256Verifier } from './scram.ts';
import { productStoreNames } from './store-names.ts';

/** Options of a {@link PostgresProvisioner}. */
export interface PostgresProvisionerOptions {
  /** The platform's pool (its role needs CREATEROLE and CREATE on the database). */
  pool: pg.Pool;
  /** The platform's libpq URL: host, port and database of the delivered URIs come from it. */
  url: string;
  sinks: ProductSinkDeps;
  /** Most concurrent sessions of one product's role (default 20). */
  connectionLimit?: number;
}

/** Where the platform's Postgres is, as products reach it. */
interface Endpoint {
  host: string;
  port: number;
  database: string;
  /** Query parameters carried over into the delivered URI (sslmode). */
  params: [string, string][];
}

function endpointOf(url: string): Endpoint {
  const parsed = parsePostgresUrl(url);
  const host =
    parsed.host === null || parsed.host === undefined || parsed.host === '' ? 'localhost' : parsed.host;
  const port = Number(parsed.port ?? 5432) || 5432;
  const database = parsed.database ?? 'postgres';
  const params: [string, string][] = [];
  try {
    const sslmode = new URL(url).searchParams.get('sslmode');
    if (sslmode !== null) params.push(['sslmode', sslmode]);
  } catch {
    // Not a URL (a key=value string): nothing to carry over.
  }
  return { host, port, database, params };
}

function literal(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** Provisions postgres targets in the platform's Postgres. */
export class PostgresProvisioner implements Provisioner {
  readonly type = 'postgres' as const;
  private readonly pool: pg.Pool;
  private readonly endpoint: Endpoint;
  private readonly sinks: ProductSinkDeps;
  private readonly connectionLimit: number;
  /** host:port for messages (never the URL: it may hold the platform's password). */
  private readonly where: string;

  constructor(options: PostgresProvisionerOptions) {
    this.pool = options.pool;
    this.endpoint = endpointOf(options.url);
    this.sinks = options.sinks;
    this.connectionLimit = options.connectionLimit ?? 20;
    this.where = `${this.endpoint.host}:${this.endpoint.port}`;
  }

  async ensure(
    product: PipelineProduct,
    credential: Credential,
    options: EnsureOptions,
  ): Promise<ProvisionedStore> {
    const { schema, role } = productStoreNames(this.sinks.platformPrefix, product).postgres;
    const table = product.spec.target.postgres?.table;
    if (table === undefined) {
      throw new ProvisioningError('InvalidSpec', 'A postgres target needs spec.target.postgres.', {
        terminal: true,
      });
    }
    const r = quoteIdent(role);
    const s = quoteIdent(schema);
    try {
      await this.inTransaction(async (client) => {
        await this.lock(client, role);
        const verifier = literal(scramSha256Verifier(credential.password));
        const exists = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role]);
        const options =
          `LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT NOREPLICATION NOBYPASSRLS ` +
          `CONNECTION LIMIT ${this.connectionLimit}`;
        if (exists.rowCount === 0) {
          await client.query(`CREATE ROLE ${r} WITH ${options} PASSWORD ${verifier}`);
        } else if (credential.created) {
          // The role outlived its password record: it takes the new password.
          await client.query(`ALTER ROLE ${r} WITH ${options} PASSWORD ${verifier}`);
        }
        const schemaExists = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
        if (schemaExists.rowCount === 0) await client.query(`CREATE SCHEMA ${s}`);
        await client.query(`GRANT USAGE ON SCHEMA ${s} TO ${r}`);
        await client.query(`ALTER ROLE ${r} SET search_path = ${s}`);
      });
      const sink = productSink(this.sinks, product) as PostgresSink;
      try {
        await sink.prepare();
      } catch (err) {
        if (err instanceof Error && err.message.includes('already exists with other columns')) {
          throw new ProvisioningError('TableConflict', err.message, { terminal: true, cause: err });
        }
        throw err;
      }
      if (options.publish) {
        const replacing = (options.replacing ?? []).flatMap((p) => p.spec.target.postgres?.table ?? []);
        if (await this.published(sink, replacing)) {
          await this.pool.query(`GRANT SELECT ON ${s}.${quoteIdent(sink.table)} TO ${r}`);
        } else {
          await sink.publishView({ grantTo: role, replacing });
        }
      }
    } catch (err) {
      throw postgresFailure(err, this.where, `creating schema ${schema} and role ${role}`);
    }
    return {
      connection: this.connection(role, credential.password, schema, table),
      description: `Schema ${schema} with the view ${table}, readable by role ${role}, is ready.`,
    };
  }

  private connection(user: string, password: string, schema: string, table: string): ProductConnection {
    const { host, port, database, params } = this.endpoint;
    const auth = `${encodeURIComponent(user)}:${encodeURIComponent(password)}`;
    const query = new URLSearchParams(params);
    let uri: string;
    if (host.startsWith('/')) {
      // A unix socket: libpq takes its directory as the host parameter.
      query.set('host', host);
      query.set('port', String(port));
      uri = `postgresql://${auth}@/${encodeURIComponent(database)}?${query.toString()}`;
    } else {
      const shownHost = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
      const rest = query.size > 0 ? `?${query.toString()}` : '';
      uri = `postgresql://${auth}@${shownHost}:${port}/${encodeURIComponent(database)}${rest}`;
    }
    return { type: 'postgres', uri, host, port, user, password, database, schema, table };
  }

  /** Ends the role's sessions, revokes what it was granted and drops it. The schema stays. */
  async revokeAccess(ref: ProductRef): Promise<void> {
    const { schema, role } = productStoreNames(this.sinks.platformPrefix, ref).postgres;
    const r = quoteIdent(role);
    const s = quoteIdent(schema);
    try {
      await this.inTransaction(async (client) => {
        await this.lock(client, role);
        const exists = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [role]);
        if (exists.rowCount === 0) return;
        await client.query(`ALTER ROLE ${r} NOLOGIN`);
        await client.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1', [
          role,
        ]);
        const schemaExists = await client.query('SELECT 1 FROM pg_namespace WHERE nspname = $1', [schema]);
        if (schemaExists.rowCount !== 0) {
          await client.query(`REVOKE ALL ON ALL TABLES IN SCHEMA ${s} FROM ${r}`);
          await client.query(`REVOKE ALL ON SCHEMA ${s} FROM ${r}`);
        }
        await client.query(`DROP ROLE ${r}`);
      });
    } catch (err) {
      throw postgresFailure(err, this.where, `dropping role ${role}`);
    }
  }

  /** True when the view already reads this build's storage and no view of `replacing` is left. */
  private async published(sink: PostgresSink, replacing: readonly string[]): Promise<boolean> {
    const { rows } = await this.pool.query<{ reads: boolean; others: number }>(
      `SELECT EXISTS (
                SELECT 1 FROM pg_depend d JOIN pg_rewrite w ON d.objid = w.oid
                 WHERE w.ev_class = to_regclass($1) AND d.refobjid = to_regclass($2)
              ) AS reads,
              (SELECT count(*)::int FROM pg_views WHERE schemaname = $3 AND viewname = ANY($4::text[])) AS others`,
      [
        `${quoteIdent(sink.schema)}.${quoteIdent(sink.table)}`,
        `${quoteIdent(sink.schema)}.${quoteIdent(sink.storageTable)}`,
        sink.schema,
        replacing.filter((t) => t !== sink.table),
      ],
    );
    return rows[0].reads && rows[0].others === 0;
  }

  /** Drops one build's storage table and checkpoints (the view readers use is not this build's). */
  async dropBuild(product: PipelineProduct): Promise<void> {
    const sink = productSink(this.sinks, product) as PostgresSink;
    try {
      await sink.drop();
    } catch (err) {
      throw postgresFailure(
        err,
        this.where,
        `dropping build ${product.build ?? 1} of ${sink.schema}.${sink.table}`,
      );
    }
  }

  /** Drops the product's schema and everything in it. */
  async dropData(ref: ProductRef): Promise<void> {
    const { schema, role } = productStoreNames(this.sinks.platformPrefix, ref).postgres;
    try {
      await this.inTransaction(async (client) => {
        await this.lock(client, role);
        await client.query(`DROP SCHEMA IF EXISTS ${quoteIdent(schema)} CASCADE`);
      });
    } catch (err) {
      throw postgresFailure(err, this.where, `dropping schema ${schema}`);
    }
  }

  /** Nothing to do: a retained schema simply stays, owned by the platform. */
  retainData(): Promise<void> {
    return Promise.resolve();
  }

  /** Serialises the operator's work on one product's objects (and the sink's `prepare`, which locks the schema). */
  private async lock(client: pg.PoolClient, role: string): Promise<void> {
    await client.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`offtake-operator:${role}`]);
  }

  private async inTransaction(body: (client: pg.PoolClient) => Promise<void>): Promise<void> {
    const client = await this.pool.connect();
    let broken: Error | undefined;
    const onError = (err: Error) => {
      broken ??= err;
    };
    client.on('error', onError);
    try {
      await client.query('BEGIN');
      await body(client);
      await client.query('COMMIT');
    } catch (err) {
      if (broken === undefined) await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }
}
