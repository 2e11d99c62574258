/**
 * Offtake's configuration: read once from the environment (and CLI flags) into a typed,
 * frozen object, then passed to whatever needs it. No other module reads `process.env`.
 */

/** Everything a running Offtake process can be configured with. */
export interface OfftakeConfig {
  /** Redis holding the embedded resource store and the event log. */
  readonly redisUrl: string;
  /** PostgreSQL for postgres targets (any libpq URL, unix-socket form included). */
  readonly postgresUrl: string | undefined;
  /** HTTP port of the API server. */
  readonly port: number;
  /** Address the API server binds to. */
  readonly host: string;
  /** Largest request body accepted, in bytes. */
  readonly maxBodyBytes: number;
  /** Key prefix under which Offtake keeps its own state in Redis. */
  readonly redisPrefix: string;
  /** Log level (pino): fatal, error, warn, info, debug, trace, silent. */
  readonly logLevel: string;
}

/** The defaults every setting falls back to. */
export const DEFAULT_CONFIG: OfftakeConfig = Object.freeze({
  redisUrl: 'redis://127.0.0.1:6379',
  postgresUrl: undefined,
  port: 8080,
  host: '0.0.0.0',
  maxBodyBytes: 1024 * 1024,
  redisPrefix: 'offtake',
  logLevel: 'info',
});

function intSetting(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) {
    throw new Error(`${name} must be a non-negative integer, got ${JSON.stringify(raw)}`);
  }
  return value;
}

/** Reads the configuration from an environment map (normally `process.env`), then applies overrides. */
export function loadConfig(
  env: Record<string, string | undefined>,
  overrides: Partial<OfftakeConfig> = {},
): OfftakeConfig {
  const fromEnv: OfftakeConfig = {
    redisUrl: env.OFFTAKE_REDIS_URL || DEFAULT_CONFIG.redisUrl,
    postgresUrl: env.OFFTAKE_POSTGRES_URL || DEFAULT_CONFIG.postgresUrl,
    port: intSetting('OFFTAKE_PORT', env.OFFTAKE_PORT, DEFAULT_CONFIG.port),
    host: env.OFFTAKE_HOST || DEFAULT_CONFIG.host,
    maxBodyBytes: intSetting(
      'OFFTAKE_MAX_BODY_BYTES',
      env.OFFTAKE_MAX_BODY_BYTES,
      DEFAULT_CONFIG.maxBodyBytes,
    ),
    redisPrefix: env.OFFTAKE_REDIS_PREFIX || DEFAULT_CONFIG.redisPrefix,
    logLevel: env.OFFTAKE_LOG_LEVEL || DEFAULT_CONFIG.logLevel,
  };
  const defined = Object.fromEntries(Object.entries(overrides).filter(([, v]) => v !== undefined));
  return Object.freeze({ ...fromEnv, ...defined });
}
