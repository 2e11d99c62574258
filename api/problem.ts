import type { ErrorRequestHandler, RequestHandler } from 'express';
import { OfftakeError } from '../lib/errors.ts';
import type { Logger } from '../lib/logger.ts';

/** The media type of every error response (RFC 9457). */
export const PROBLEM_MEDIA_TYPE = 'application/problem+json';

/** Sends an {@link OfftakeError} as problem+json. */
export function sendProblem(res: Parameters<RequestHandler>[1], err: OfftakeError, instance: string): void {
  res
    .status(err.status)
    .type(PROBLEM_MEDIA_TYPE)
    .send(JSON.stringify(err.toProblem(instance)));
}

/**
 * The one error middleware: coded errors become their problem; body-parser's own errors map to
 * their codes; anything else is logged with its stack and answered as an opaque 500 — a user
 * never sees a stack trace.
 */
export function problemHandler(logger: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, next) => {
    if (res.headersSent) {
      next(err);
      return;
    }
    const instance = req.originalUrl;
    if (err instanceof OfftakeError) {
      if (err.status >= 500) logger.error({ err, instance }, 'request failed');
      sendProblem(res, err, instance);
      return;
    }
    const e = err as { type?: string; status?: number; limit?: number } | undefined;
    if (e?.type === 'entity.too.large' || e?.status === 413) {
      sendProblem(
        res,
        new OfftakeError('too-large', `The body exceeds the limit of ${e.limit ?? '?'} bytes.`),
        instance,
      );
      return;
    }
    if (e?.type === 'encoding.unsupported' || e?.type === 'charset.unsupported') {
      sendProblem(
        res,
        new OfftakeError('unsupported-media-type', 'The body encoding or charset is not supported.'),
        instance,
      );
      return;
    }
    if (e?.type === 'request.aborted') {
      sendProblem(
        res,
        new OfftakeError('invalid-parameter', 'The request was aborted by the client.'),
        instance,
      );
      return;
    }
    logger.error({ err, instance }, 'unexpected error');
    sendProblem(
      res,
      new OfftakeError('internal', 'An internal error occurred; it has been logged.'),
      instance,
    );
  };
}
