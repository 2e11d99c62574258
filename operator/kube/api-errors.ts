/**
 * Errors of the Kubernetes API as the operator shows them: the HTTP status and the API server's
 * own `Status.message` ("statefulsets.apps is forbidden: …"), never the client's dump of headers.
 */
import { ApiException } from '@kubernetes/client-node';
import { ProvisioningError } from '../provisioning-error.ts';

/** The HTTP status of a Kubernetes API error, or undefined for any other error. */
export function apiStatus(err: unknown): number | undefined {
  return err instanceof ApiException ? err.code : undefined;
}

/** Whether `err` is a 404 of the Kubernetes API. */
export function isNotFound(err: unknown): boolean {
  return apiStatus(err) === 404;
}

/** Whether `err` is a 409 (a conflict on resourceVersion, or AlreadyExists on create). */
export function isConflict(err: unknown): boolean {
  return apiStatus(err) === 409;
}

/** The API server's message for `err` (its `Status.message` when it sent one). */
export function apiMessage(err: unknown): string {
  if (!(err instanceof ApiException)) return err instanceof Error ? err.message : String(err);
  const body: unknown = err.body;
  let status: unknown = body;
  if (typeof body === 'string') {
    try {
      status = JSON.parse(body);
    } catch {
      return body.trim() === '' ? `HTTP ${err.code}` : body.trim();
    }
  }
  const message = (status as { message?: unknown } | null)?.message;
  return typeof message === 'string' && message !== '' ? message : `HTTP ${err.code}`;
}

/**
 * A Kubernetes API failure while `doing` something, as a {@link ProvisioningError} for the
 * product's status: Forbidden names the missing permission (the platform must grant it),
 * Invalid says the API server rejected what the operator rendered, anything else is retried.
 */
export function kubeFailure(err: unknown, doing: string): ProvisioningError {
  if (err instanceof ProvisioningError) return err;
  const status = apiStatus(err);
  const message = apiMessage(err);
  if (status === 401 || status === 403) {
    return new ProvisioningError(
      'PermissionDenied',
      `The operator may not do this while ${doing} (check its RBAC in deploy/): ${message}`,
      { cause: err },
    );
  }
  if (status === 422 || status === 400) {
    return new ProvisioningError('KubernetesRejected', `The API server rejected ${doing}: ${message}`, {
      cause: err,
    });
  }
  if (status === undefined || status >= 500 || status === 429) {
    return new ProvisioningError(
      'KubernetesUnavailable',
      `The Kubernetes API failed while ${doing}: ${message}. Retrying.`,
      { cause: err },
    );
  }
  return new ProvisioningError('KubernetesError', `The Kubernetes API failed while ${doing}: ${message}`, {
    cause: err,
  });
}
