import express, { type RequestHandler } from 'express';
import { OfftakeError } from '../lib/errors.ts';

/** The text formats a DataProduct body may come in. */
export type SpecMediaType = 'yaml' | 'json';

const SPEC_MEDIA_TYPES: Record<string, SpecMediaType> = {
  'application/json': 'json',
  'application/yaml': 'yaml',
  'application/x-yaml': 'yaml',
  'text/yaml': 'yaml',
  'text/x-yaml': 'yaml',
};

/** The media type of a request as a bare lower-case `type/subtype`, or undefined. */
export function mediaTypeOf(header: string | undefined): string | undefined {
  if (!header) return undefined;
  return header.split(';')[0].trim().toLowerCase() || undefined;
}

/** Which spec format a Content-Type header names, or a 415 error saying what is accepted. */
export function specMediaType(header: string | undefined): SpecMediaType {
  const type = mediaTypeOf(header);
  const format = type === undefined ? undefined : SPEC_MEDIA_TYPES[type];
  if (format === undefined) {
    throw new OfftakeError(
      'unsupported-media-type',
      `${type === undefined ? 'The request has no Content-Type' : `Content-Type ${type} is not accepted`}; ` +
        'send application/yaml or application/json.',
      { extensions: { accepted: Object.keys(SPEC_MEDIA_TYPES) } },
    );
  }
  const charset = /charset=([^;]+)/i
    .exec(header ?? '')?.[1]
    ?.trim()
    .toLowerCase();
  if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
    throw new OfftakeError('unsupported-media-type', `charset ${charset} is not accepted; send UTF-8.`);
  }
  return format;
}

/**
 * Middleware that checks the Content-Type first (415 before reading anything), then reads the
 * body as raw bytes up to `limit` (413 past it) into `req.body` as a Buffer.
 */
export function specBody(limit: number): RequestHandler[] {
  return [
    (req, _res, next) => {
      specMediaType(req.headers['content-type']);
      next();
    },
    express.raw({ type: () => true, limit }),
  ];
}

/** The body read by {@link specBody}, as UTF-8 text. */
export function bodyText(body: unknown): string {
  if (!Buffer.isBuffer(body)) return '';
  const text = body.toString('utf8');
  if (text.includes('\uFFFD') && !Buffer.from(text, 'utf8').equals(body)) {
    throw new OfftakeError('invalid-spec', 'The body is not valid UTF-8.');
  }
  return text;
}
