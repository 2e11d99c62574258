import { pino, type Logger } from 'pino';

/** Offtake's structured logger (pino). Secrets never go into log fields: see `redact`. */
export type { Logger };

/** Creates the process logger at the given level. */
export function createLogger(level: string, name = 'offtake'): Logger {
  return pino({
    name,
    level,
    redact: {
      paths: ['password', '*.password', 'uri', '*.uri', 'req.headers.authorization', 'url'],
      censor: '[redacted]',
    },
  });
}
