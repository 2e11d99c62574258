/**
 * How the pipeline runtime opens Redis connections: a factory called once per connection it
 * needs (its own state, each BullMQ queue, worker and flow producer), so the caller decides the
 * server, credentials and TLS in one place.
 */
import { Redis, type RedisOptions } from 'ioredis';

/**
 * Opens a new Redis connection for `role` (a short name shown by CLIENT LIST). Connections must
 * have `maxRetriesPerRequest: null`: BullMQ's workers block on them and require it.
 */
export type RedisConnector = (role: string) => Redis;

/** A {@link RedisConnector} for a Redis URL, with BullMQ's required settings. */
export function redisConnector(url: string, options: RedisOptions = {}): RedisConnector {
  return (role) =>
    new Redis(url, {
      connectionName: `offtake-${role}`,
      ...options,
      maxRetriesPerRequest: null,
    });
}
