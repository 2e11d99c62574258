/**
 * Redis ACL users of products and the URIs that reach them. A product's user may run only the
 * read commands its target needs, only on its own keys, read-only (`%R~`), and no Pub/Sub.
 * Commands without key arguments that would show other tenants' keys or the server (KEYS, SCAN,
 * RANDOMKEY, INFO, CONFIG, CLIENT LIST, MONITOR, FLUSHALL, …) are not granted: key patterns do
 * not restrict them.
 */
import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { redisFailure } from './failures.ts';
import type { ProductConnection } from './product-connection.ts';
import { redisGlob } from './store-names.ts';

/** Commands every product user may run: the handshake of standard clients. */
const CONNECTION_COMMANDS = [
  'ping',
  'echo',
  'hello',
  'quit',
  'reset',
  'client|setname',
  'client|getname',
  'client|id',
];

/** Read commands of a redis target's records (hashes or JSON strings). */
export const RECORD_READ_COMMANDS = [
  'get',
  'mget',
  'strlen',
  'getrange',
  'exists',
  'type',
  'ttl',
  'pttl',
  'hget',
  'hmget',
  'hgetall',
  'hkeys',
  'hvals',
  'hlen',
  'hexists',
  'hstrlen',
  'hscan',
];

/** Read commands of a derived stream. */
export const STREAM_READ_COMMANDS = ['xrange', 'xrevrange', 'xread', 'xlen', 'xinfo|stream'];

/** Where the platform's Redis is, as products reach it. */
export interface RedisEndpoint {
  scheme: 'redis' | 'rediss';
  host: string;
  port: number;
  db: number;
}

/** The endpoint of a Redis URL, without its credentials. */
export function redisEndpoint(url: string): RedisEndpoint {
  const u = new URL(url);
  const scheme = u.protocol === 'rediss:' ? 'rediss' : 'redis';
  const db = Number(u.pathname.replace(/^\//, '') || '0');
  return {
    scheme,
    host: u.hostname || '127.0.0.1',
    port: Number(u.port || 6379),
    db: Number.isInteger(db) ? db : 0,
  };
}

/** The URI and parts of a product user's connection. */
export function redisConnection(
  endpoint: RedisEndpoint,
  type: 'redis' | 'topic',
  user: string,
  password: string,
): ProductConnection {
  const db = endpoint.db === 0 ? '' : `/${endpoint.db}`;
  const uri = `${endpoint.scheme}://${encodeURIComponent(user)}:${encodeURIComponent(password)}@${endpoint.host}:${endpoint.port}${db}`;
  return {
    type,
    uri,
    host: endpoint.host,
    port: endpoint.port,
    user,
    password,
    database: String(endpoint.db),
  };
}

/**
 * Creates or redefines a product's ACL user in one command: `reset` first, so the rules are
 * exactly these whatever the user had; the password goes as its SHA-256 (`#…`), never in clear.
 */
export async function setProductUser(
  redis: Redis,
  options: { user: string; password: string; keys: string[]; commands: string[]; db: number },
): Promise<void> {
  const commands = [...CONNECTION_COMMANDS, ...options.commands, ...(options.db === 0 ? [] : ['select'])];
  await setAclUser(redis, options.user, options.password, [
    ...options.keys.map((key) => `%R~${key}`),
    '-@all',
    ...commands.map((c) => `+${c}`),
  ]);
}

/**
 * Creates or redefines an ACL user with exactly `rules` (key patterns and command rules): `reset`
 * first, no Pub/Sub channels, the password as its SHA-256 (`#…`), never in clear.
 */
export async function setAclUser(
  redis: Redis,
  user: string,
  password: string,
  rules: string[],
): Promise<void> {
  const hash = createHash('sha256').update(password).digest('hex');
  try {
    await redis.call('ACL', ['SETUSER', user, 'reset', 'on', `#${hash}`, 'resetchannels', ...rules]);
  } catch (err) {
    throw redisFailure(err, `creating the ACL user ${user}`);
  }
}

/** Deletes a product's ACL user (its connections are closed by Redis). */
export async function deleteProductUser(redis: Redis, user: string): Promise<void> {
  try {
    await redis.call('ACL', ['DELUSER', user]);
  } catch (err) {
    throw redisFailure(err, `deleting the ACL user ${user}`);
  }
}

/** The key pattern of every key starting with `prefix`. */
export function prefixPattern(prefix: string): string {
  return redisGlob(prefix);
}

/** Unlinks every key matching a glob, a SCAN page at a time (never KEYS). */
export async function unlinkMatching(redis: Redis, pattern: string): Promise<void> {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.unlink(...keys);
  } while (cursor !== '0');
}
