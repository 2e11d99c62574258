/**
 * The validating admission webhook of the kubectl path: `POST /admission/validate` answers
 * kube-apiserver's AdmissionReview (admission.k8s.io/v1) with the same validation as the HTTP API
 * — the schema, the semantic rules and every CEL expression compiled — so `kubectl apply` of a
 * bad DataProduct is refused with the same problems, each with its field path and, for CEL, the
 * column inside the expression.
 *
 * A review that is not one (not JSON, no request, no uid) is a client error answered as
 * problem+json; a review of a bad product is a normal answer (200) with `allowed: false`.
 */
import { isDeepStrictEqual } from 'node:util';
import express, { Router } from 'express';
import { GROUP, KIND } from '../../crds/dataproduct.schema.ts';
import type { DataProduct } from '../../crds/generated/types.ts';
import { OfftakeError, type FieldError } from '../../lib/errors.ts';
import { pointerToFieldPath } from '../../lib/field-path.ts';
import type { ExtraRouter } from '../app.ts';
import { mediaTypeOf } from '../body.ts';

/** What the webhook needs from the validator: a parsed document in, a valid product or a coded error out. */
export interface ObjectValidator {
  validateObject(value: unknown): DataProduct;
}

/** Dependencies of {@link admissionRouter}. */
export interface AdmissionDeps {
  validator: ObjectValidator;
  /**
   * Largest review accepted, in bytes. A review carries the object and, on updates, the old
   * object (each up to the API server's ~1.5 MiB): the default is 4 MiB.
   */
  maxBodyBytes?: number;
}

/** The AdmissionReview version served (the webhook configuration's `admissionReviewVersions`). */
export const ADMISSION_REVIEW_API_VERSION = 'admission.k8s.io/v1';

/** The part of an AdmissionReview request the webhook reads. */
interface AdmissionRequest {
  uid: string;
  operation?: string;
  subResource?: string;
  namespace?: string;
  name?: string;
  object?: unknown;
  oldObject?: unknown;
}

/** The Status of a refusal, as kube-apiserver passes it on to the client. */
interface AdmissionStatus {
  status: 'Failure';
  code: number;
  reason: string;
  message: string;
  details?: {
    group: string;
    kind: string;
    name?: string;
    causes: { field: string; message: string; reason: string }[];
  };
}

/** The `response` of an AdmissionReview. */
interface AdmissionResponse {
  uid: string;
  allowed: boolean;
  status?: AdmissionStatus;
}

/** The server-owned or operator-owned metadata a webhook must not hold against the user's document. */
const CLIENT_METADATA = ['name', 'namespace', 'labels', 'annotations'] as const;

/** The annotation in which `kubectl apply` keeps the document it applied. */
const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';

/** `POST /admission/validate`. */
export function admissionRouter(deps: AdmissionDeps): Router {
  const router = Router();
  const limit = deps.maxBodyBytes ?? 4 * 1024 * 1024;
  router.post(
    '/validate',
    (req, _res, next) => {
      const type = mediaTypeOf(req.headers['content-type']);
      if (type !== 'application/json') {
        throw new OfftakeError(
          'unsupported-media-type',
          `An AdmissionReview is sent as application/json, not ${type ?? 'without a Content-Type'}.`,
        );
      }
      next();
    },
    express.raw({ type: () => true, limit }),
    (req, res) => {
      const request = reviewRequest(req.body);
      res.json({
        apiVersion: ADMISSION_REVIEW_API_VERSION,
        kind: 'AdmissionReview',
        response: review(request, deps.validator),
      });
    },
  );
  return router;
}

/** The webhook as an extra router of the app (at `/admission`), with its OpenAPI path. */
export function admissionRoute(deps: AdmissionDeps): ExtraRouter {
  return { path: '/admission', router: admissionRouter(deps), openApiPaths: admissionOpenApiPaths() };
}

/** Decides one review: allowed, or refused with every problem. */
function review(request: AdmissionRequest, validator: ObjectValidator): AdmissionResponse {
  const allowed = { uid: request.uid, allowed: true };
  // Deletes and connects carry no object to judge; a status write (if the webhook is registered
  // for subresources) is the operator's, checked by the CRD schema.
  if (request.operation === 'DELETE' || request.operation === 'CONNECT') return allowed;
  if (request.object === undefined || request.object === null) return allowed;
  if (request.subResource !== undefined && request.subResource !== '') return allowed;
  // An update that leaves the spec as it was (finalizers, labels, a deletion in progress) is
  // never refused: stricter rules in a newer Offtake must not block the teardown of an old product.
  if (
    request.operation === 'UPDATE' &&
    isDeepStrictEqual(specOf(request.object), specOf(request.oldObject))
  ) {
    return allowed;
  }
  const document = userDocument(request);
  try {
    validator.validateObject(document);
    return allowed;
  } catch (err) {
    if (!(err instanceof OfftakeError)) throw err;
    return { uid: request.uid, allowed: false, status: refusal(err, nameOf(document)) };
  }
}

/**
 * The document as the user wrote it: apiVersion, kind, the metadata a client sets, spec. The API
 * server's own metadata (uid, managedFields, …) and the operator's status are not the user's.
 */
function userDocument(request: AdmissionRequest): unknown {
  const object = request.object;
  if (typeof object !== 'object' || object === null || Array.isArray(object)) return object;
  const rest: Record<string, unknown> = { ...(object as Record<string, unknown>) };
  const metadata = rest.metadata;
  delete rest.status;
  if (typeof metadata !== 'object' || metadata === null || Array.isArray(metadata)) return object;
  const kept: Record<string, unknown> = {};
  for (const field of CLIENT_METADATA) {
    const value = (metadata as Record<string, unknown>)[field];
    if (value !== undefined && value !== '') kept[field] = value;
  }
  // kubectl's copy of the applied document is not part of it (and may outgrow an annotation's limit).
  if (typeof kept.annotations === 'object' && kept.annotations !== null) {
    const annotations: Record<string, unknown> = { ...(kept.annotations as Record<string, unknown>) };
    delete annotations[LAST_APPLIED];
    kept.annotations = annotations;
  }
  // The API server fills these in before validating admission; the review repeats them.
  kept.name ??= request.name;
  kept.namespace ??= request.namespace;
  return { ...rest, metadata: kept };
}

function nameOf(document: unknown): string | undefined {
  const name = (document as { metadata?: { name?: unknown } } | null)?.metadata?.name;
  return typeof name === 'string' ? name : undefined;
}

function specOf(object: unknown): unknown {
  return typeof object === 'object' && object !== null ? (object as { spec?: unknown }).spec : undefined;
}

/**
 * The refusal's Status: 422 Invalid for a bad product (400 BadRequest for anything else), its
 * message the API's detail followed by one line per problem — the JSON pointer, the column in a
 * CEL expression, the API's message — and each problem as a cause with its Kubernetes field path.
 * kubectl prints the causes (`The DataProduct "x" is invalid: spec.filter: … (expression column
 * 12)`); API clients get the message as well, after kube-apiserver's "admission webhook … denied
 * the request".
 */
function refusal(err: OfftakeError, name: string | undefined): AdmissionStatus {
  const invalid = err.code === 'invalid-spec';
  const lines = [err.message, ...err.errors.map((e) => `  ${describe(e)}`)];
  const status: AdmissionStatus = {
    status: 'Failure',
    code: invalid ? 422 : 400,
    reason: invalid ? 'Invalid' : 'BadRequest',
    message: lines.join('\n'),
  };
  if (err.errors.length > 0) {
    status.details = {
      group: GROUP,
      kind: KIND,
      ...(name === undefined ? {} : { name }),
      causes: err.errors.map((e) => ({
        field: pointerToFieldPath(e.pointer),
        message:
          e.expressionColumn === undefined
            ? e.message
            : `${e.message} (expression column ${e.expressionColumn})`,
        reason: e.kind === undefined ? 'FieldValueInvalid' : `FieldValueInvalid:${e.kind}`,
      })),
    };
  }
  return status;
}

/** One problem as the CLI shows the API's: `pointer (expression column N): message`. */
function describe(e: FieldError): string {
  const where = e.expressionColumn === undefined ? '' : ` (expression column ${e.expressionColumn})`;
  return `${e.pointer === '' ? '/' : e.pointer}${where}: ${e.message}`;
}

/** The review's `request`, or a 400 saying why the body is not an AdmissionReview. */
function reviewRequest(body: unknown): AdmissionRequest {
  const text = Buffer.isBuffer(body) ? body.toString('utf8') : '';
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw new OfftakeError('invalid-json', `The body is not valid JSON: ${(cause as Error).message}`, {
      cause,
    });
  }
  const problems: FieldError[] = [];
  const review = typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : {};
  if (review.apiVersion !== ADMISSION_REVIEW_API_VERSION) {
    problems.push({
      pointer: '/apiVersion',
      kind: 'schema',
      message: `must be ${ADMISSION_REVIEW_API_VERSION} (set admissionReviewVersions: [v1] in the webhook configuration)`,
    });
  }
  if (review.kind !== 'AdmissionReview') {
    problems.push({ pointer: '/kind', kind: 'schema', message: 'must be AdmissionReview' });
  }
  const request = review.request;
  if (typeof request !== 'object' || request === null || Array.isArray(request)) {
    problems.push({ pointer: '/request', kind: 'schema', message: 'is required: an object' });
  } else if (
    typeof (request as { uid?: unknown }).uid !== 'string' ||
    (request as { uid: string }).uid === ''
  ) {
    problems.push({ pointer: '/request/uid', kind: 'schema', message: 'is required: a non-empty string' });
  }
  if (problems.length > 0) {
    throw new OfftakeError('invalid-parameter', 'The body is not an AdmissionReview request.', {
      errors: problems,
    });
  }
  return request as AdmissionRequest;
}

/** The OpenAPI path of the webhook. */
export function admissionOpenApiPaths(): Record<string, unknown> {
  return {
    '/admission/validate': {
      post: {
        summary: 'Validating admission webhook for DataProducts (kube-apiserver sends an AdmissionReview v1)',
        operationId: 'validateDataProductAdmission',
        requestBody: {
          required: true,
          content: { 'application/json': { schema: { type: 'object', description: 'AdmissionReview v1' } } },
        },
        responses: {
          '200': {
            description:
              'The AdmissionReview with its response: allowed, or refused with status 422 (Invalid) listing every problem.',
          },
          '400': { description: 'The body is not an AdmissionReview (problem+json).' },
          '413': { description: 'The review is too large (problem+json).' },
          '415': { description: 'The body is not application/json (problem+json).' },
        },
      },
    },
  };
}
