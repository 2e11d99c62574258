import { createHash, timingSafeEqual } from 'node:crypto';
import express, { type Express, type RequestHandler, type Router } from 'express';
import type { Logger } from '../lib/logger.ts';
import type { OfftakeMetrics } from '../lib/metrics.ts';
import { OfftakeError } from '../lib/errors.ts';
import type { ResourceStore } from '../lib/resource-store/resource-store.ts';
import { openApiDocument } from './openapi.ts';
import { problemHandler } from './problem.ts';
import { dataProductsRouter, type SpecValidator } from './routes/dataproducts.ts';

/** Everything the HTTP API is built from; `server.ts` (or a test) supplies it. */
export interface AppDeps {
  store: ResourceStore;
  validator: SpecValidator;
  logger: Logger;
  maxBodyBytes: number;
  version: string;
  /** Answers whether the backing services are reachable, for `/readyz`. */
  ready: () => Promise<boolean>;
  /**
   * When set, every `/v1` request must carry `Authorization: Bearer <apiToken>` (health,
   * OpenAPI and the admission webhook, which kube-apiserver calls, stay open).
   */
  apiToken?: string;
  /** More routers (e.g. the event log's `/v1/streams`), with their OpenAPI paths. */
  extraRouters?: ExtraRouter[];
  /**
   * Served at `/metrics` (Prometheus text), and fed with every request's route, code and
   * duration. `/metrics` needs the bearer token when the API has one.
   */
  metrics?: OfftakeMetrics;
}

/** A router mounted at `path`, with the OpenAPI paths it serves. */
export interface ExtraRouter {
  path: string;
  router: Router;
  openApiPaths?: Record<string, unknown>;
}

/** Refuses a request without the bearer token; compares in constant time (digests of equal length). */
function requireBearer(token: string): RequestHandler {
  const expected = createHash('sha256').update(token).digest();
  return (req, res, next) => {
    const header = req.get('authorization') ?? '';
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    const given = createHash('sha256')
      .update(match?.[1] ?? '')
      .digest();
    if (match !== null && timingSafeEqual(given, expected)) {
      next();
      return;
    }
    res.set('WWW-Authenticate', 'Bearer realm="offtake"');
    next(
      new OfftakeError(
        'unauthorized',
        match === null
          ? 'This API needs a bearer token: send Authorization: Bearer <token> (the CLI reads OFFTAKE_API_TOKEN).'
          : 'The bearer token is not valid.',
      ),
    );
  };
}

/** Where `res.locals` keeps the mount path of the router that took the request. */
const MOUNT = 'offtakeMount';

/**
 * Counts each request once its answer is finished (or the client went away), labelled by the
 * route pattern that served it (`/v1/namespaces/:namespace/dataproducts/:name`), never the raw path.
 */
function measureRequests(metrics: OfftakeMetrics): RequestHandler {
  return (req, res, next) => {
    const start = process.hrtime.bigint();
    res.once('close', () => {
      const pattern = (req.route as { path?: unknown } | undefined)?.path;
      const mounted = res.locals[MOUNT] as string | undefined;
      const route = typeof pattern === 'string' ? `${mounted ?? ''}${pattern}` : 'unmatched';
      const seconds = Number(process.hrtime.bigint() - start) / 1e9;
      metrics.httpRequests.inc({ method: req.method, route, code: String(res.statusCode) });
      metrics.httpDuration.observe({ method: req.method, route }, seconds);
    });
    next();
  };
}

/** Builds the express app without listening, so tests call it in-process. */
export function createApp(deps: AppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');

  const extraPaths = Object.assign(
    {},
    ...(deps.extraRouters ?? []).map((r) => r.openApiPaths ?? {}),
  ) as Record<string, unknown>;
  const openApi = JSON.stringify(openApiDocument(deps.version, extraPaths));
  const { metrics } = deps;
  if (metrics !== undefined) app.use(measureRequests(metrics));

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    if (!(await deps.ready().catch(() => false))) {
      throw new OfftakeError('unavailable', 'A backing service (Redis) is not reachable.');
    }
    res.json({ status: 'ready' });
  });
  app.get('/openapi.json', (_req, res) => {
    res.type('application/json').send(openApi);
  });

  if (metrics !== undefined) {
    if (deps.apiToken !== undefined) app.use('/metrics', requireBearer(deps.apiToken));
    app.get('/metrics', async (_req, res) => {
      const { contentType, text } = await metrics.exposition();
      res.type(contentType).send(text);
    });
  }
  if (deps.apiToken !== undefined) app.use('/v1', requireBearer(deps.apiToken));
  // Each router's mount path is noted for the metrics: an error leaves the router before the
  // answer is counted, and express then no longer says where it was mounted.
  const mount = (path: string, router: Router) =>
    app.use(
      path,
      (_req, res, next) => {
        res.locals[MOUNT] = path;
        next();
      },
      router,
    );
  mount('/v1', dataProductsRouter(deps));
  for (const extra of deps.extraRouters ?? []) mount(extra.path, extra.router);

  app.use((req, _res, next) => {
    next(new OfftakeError('not-found', `No route for ${req.method} ${req.path}.`));
  });
  app.use(problemHandler(deps.logger));
  return app;
}
