/**
 * The connection details of a product's store, as delivered to its users: a `uri` that standard
 * clients accept as is (`psql "$uri"`, `redis-cli -u "$uri"`) and its parts.
 */

/** Connection details of a product's store. Holds a password: never log it. */
export interface ProductConnection {
  type: 'postgres' | 'redis' | 'topic';
  /** `postgresql://…` or `redis://…`, credentials included. */
  uri: string;
  /** Host name, or for a Postgres reached over a unix socket, the socket's directory. */
  host: string;
  port: number;
  user: string;
  password: string;
  /** Postgres: the database; Redis: the database number. */
  database: string;
  /** postgres: the product's schema and the table (a view) to read. */
  schema?: string;
  table?: string;
  /**
   * redis: every record key of the build readers use starts with this. A spec change builds the
   * records anew under another prefix and then switches `currentKey` to it (blue/green): a
   * long-lived reader reads `currentKey` (GET) to follow the switch.
   */
  keyPrefix?: string;
  /** redis: the key holding the key prefix of the build to read. */
  currentKey?: string;
  /** topic: the derived stream's name in the event log and its Redis key (XRANGE / XREAD it). */
  stream?: string;
  key?: string;
}

/** Reads the connection details of a product; null while its store is not ready. */
export interface ConnectionReader {
  getConnection(namespace: string, name: string): Promise<ProductConnection | null>;
}
