/**
 * Failures of the Kubernetes API as the resource store's coded errors: the HTTP status and the
 * API server's `Status` (reason, message, causes) decide the {@link OfftakeError} code, and the
 * server's own message is kept — never the client's dump of headers.
 */
import { ApiException } from '@kubernetes/client-node';
import { OfftakeError, type FieldError } from '../errors.ts';
import { fieldPathToPointer } from '../field-path.ts';

/** The part of a Kubernetes `Status` object the mapping reads. */
export interface KubeStatus {
  kind?: string;
  code?: number;
  reason?: string;
  message?: string;
  details?: {
    name?: string;
    kind?: string;
    causes?: { field?: string; message?: string; reason?: string }[];
  };
}

/** What the failed call was doing, for messages: `DataProduct ns/name` or `DataProducts`. */
export interface KubeCall {
  /** What the call was about, e.g. `DataProduct checkout/eu-orders`. */
  subject: string;
  /** Whether the call wrote (a 400 then means invalid input, not an invalid parameter). */
  write: boolean;
}

/** The `Status` an {@link ApiException} carries (its body is JSON text), or undefined. */
export function kubeStatusOf(err: unknown): KubeStatus | undefined {
  if (!(err instanceof ApiException)) return undefined;
  const body: unknown = err.body;
  if (typeof body === 'object' && body !== null) return body;
  if (typeof body !== 'string' || body.trim() === '') return { code: err.code };
  try {
    return JSON.parse(body) as KubeStatus;
  } catch {
    return { code: err.code, message: body.trim().slice(0, 500) };
  }
}

/** The HTTP status of a Kubernetes API error, or undefined for any other error. */
export function kubeStatusCode(err: unknown): number | undefined {
  return err instanceof ApiException ? err.code : undefined;
}

/** The field errors of a Status' causes, as JSON pointers. */
export function causesOf(status: KubeStatus | undefined): FieldError[] {
  return (status?.details?.causes ?? []).map((cause) => ({
    pointer: fieldPathToPointer(cause.field),
    message: cause.message ?? cause.reason ?? 'invalid',
    kind: 'kubernetes',
  }));
}

/**
 * Maps a failed Kubernetes API call to an {@link OfftakeError}: 404 not-found, 409 already-exists
 * (reason AlreadyExists) or conflict, 410 watch-expired, 400/422 invalid-spec (writes) or
 * invalid-parameter (reads) with the causes as field errors, 413 too-large, 401/403 internal
 * (the platform's RBAC is wrong, not the user's request), everything else — 429, 5xx, a refused
 * or broken connection — unavailable. An OfftakeError passes through unchanged.
 */
export function kubeError(err: unknown, call: KubeCall): OfftakeError {
  if (err instanceof OfftakeError) return err;
  const code = kubeStatusCode(err);
  if (code === undefined) {
    const message = err instanceof Error ? err.message : String(err);
    return new OfftakeError('unavailable', `The Kubernetes API is not reachable: ${message}.`, {
      cause: err,
    });
  }
  const status = kubeStatusOf(err);
  const said = status?.message === undefined || status.message === '' ? `HTTP ${code}` : status.message;
  switch (code) {
    case 404:
      return new OfftakeError(
        'not-found',
        // Another kind missing (the namespace, or the CRD itself) is named by the server's message.
        status?.details?.kind === 'dataproducts'
          ? `${call.subject} does not exist.`
          : `${call.subject}: ${said}.`,
        { cause: err },
      );
    case 409:
      if (status?.reason === 'AlreadyExists') {
        return new OfftakeError('already-exists', `${call.subject} already exists.`, { cause: err });
      }
      return new OfftakeError(
        'conflict',
        `${call.subject} has been modified: ${said}. Read it again and retry.`,
        { cause: err },
      );
    case 410:
      return new OfftakeError(
        'watch-expired',
        `The requested resourceVersion is too old (${said}). List again and watch from the list's resourceVersion.`,
        { cause: err },
      );
    case 400:
    case 422:
      return new OfftakeError(call.write ? 'invalid-spec' : 'invalid-parameter', `${call.subject}: ${said}`, {
        cause: err,
        errors: causesOf(status),
      });
    case 413:
      return new OfftakeError('too-large', `${call.subject}: ${said}`, { cause: err });
    case 401:
    case 403:
      return new OfftakeError(
        'internal',
        `The Kubernetes API refused access to ${call.subject} (check Offtake's RBAC): ${said}`,
        { cause: err },
      );
    default:
      return new OfftakeError('unavailable', `The Kubernetes API failed on ${call.subject}: ${said}`, {
        cause: err,
      });
  }
}
