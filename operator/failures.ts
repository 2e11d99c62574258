/**
 * Turns what went wrong into what a user reads: a reason and a message, and whether a retry can
 * help. Messages name the server (host and port, never credentials) and what failed; stack
 * traces and SQL stay in the operator's log.
 */
import { isOfftakeError } from '../lib/errors.ts';
import type { Failure } from './product-status.ts';
import { ProvisioningError } from './provisioning-error.ts';

/** A classified failure. */
export interface ClassifiedFailure extends Failure {
  terminal: boolean;
}

/** Node socket errors that mean "the server is not reachable right now". */
const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  'ENOENT',
]);

function text(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Wraps a Postgres (node-postgres) error as a {@link ProvisioningError}: unreachable servers,
 * refused logins and missing privileges each get their reason; `where` says which server.
 */
export function postgresFailure(err: unknown, where: string, doing: string): ProvisioningError {
  if (err instanceof ProvisioningError) return err;
  const code = (err as { code?: unknown }).code;
  const message = text(err);
  if (code === '28P01' || code === '28000') {
    return new ProvisioningError(
      'PostgresAuthFailed',
      `Postgres at ${where} refused the platform's login while ${doing}: ${message}.`,
      {
        cause: err,
      },
    );
  }
  if (code === '42501') {
    return new ProvisioningError(
      'PermissionDenied',
      `The platform's Postgres role lacks a privilege while ${doing} (it needs CREATEROLE and CREATE on the database): ${message}.`,
      { cause: err },
    );
  }
  if (
    (typeof code === 'string' &&
      (UNREACHABLE.has(code) || code.startsWith('08') || code.startsWith('57P'))) ||
    code === '53300' ||
    /timeout|terminated|Connection ended|connect E|ECONNREFUSED/i.test(message)
  ) {
    return new ProvisioningError(
      'PostgresUnavailable',
      `Cannot reach Postgres at ${where} while ${doing}: ${message}. Retrying.`,
      {
        cause: err,
      },
    );
  }
  return new ProvisioningError('PostgresError', `Postgres at ${where} failed while ${doing}: ${message}.`, {
    cause: err,
  });
}

/** Wraps a Redis (ioredis) error as a {@link ProvisioningError}. */
export function redisFailure(err: unknown, doing: string): ProvisioningError {
  if (err instanceof ProvisioningError) return err;
  const message = text(err);
  if (message.startsWith('NOPERM')) {
    return new ProvisioningError(
      'PermissionDenied',
      `The platform's Redis user may not do this while ${doing} (it needs the ACL command): ${message}.`,
      { cause: err },
    );
  }
  if (isOfftakeError(err, 'unavailable') || UNREACHABLE.has(String((err as { code?: unknown }).code))) {
    return new ProvisioningError(
      'RedisUnavailable',
      `Cannot reach Redis while ${doing}: ${message}. Retrying.`,
      { cause: err },
    );
  }
  return new ProvisioningError('RedisError', `Redis failed while ${doing}: ${message}.`, { cause: err });
}

/** The reason, message and retry decision of any error a reconcile step threw. */
export function classifyFailure(err: unknown): ClassifiedFailure {
  if (err instanceof ProvisioningError)
    return { reason: err.reason, message: err.message, terminal: err.terminal };
  if (isOfftakeError(err, 'invalid-spec') || isOfftakeError(err, 'invalid-name')) {
    return { reason: 'InvalidSpec', message: err.message, terminal: true };
  }
  if (isOfftakeError(err, 'unavailable'))
    return { reason: 'Unavailable', message: err.message, terminal: false };
  if (isOfftakeError(err)) return { reason: 'Error', message: err.message, terminal: false };
  return { reason: 'InternalError', message: `Internal error: ${text(err)}`, terminal: false };
}
