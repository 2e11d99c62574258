/**
 * `GET /v1/namespaces/{namespace}/dataproducts/{name}/connection`: the connection details of a
 * product's store — a `uri` standard clients accept as is (`psql "$uri"`, `redis-cli -u "$uri"`)
 * and its parts. The answer carries a password: it is never cached and never logged.
 */
import { Router } from 'express';
import { API_VERSION } from '../../crds/dataproduct.schema.ts';
import { OfftakeError } from '../../lib/errors.ts';
import type { ResourceStore } from '../../lib/resource-store/resource-store.ts';
import type { ConnectionReader } from '../../operator/product-connection.ts';
import type { ExtraRouter } from '../app.ts';
import { checkPathName, sendObject } from './dataproducts.ts';

/** What {@link connectionRouter} needs. */
export interface ConnectionRouterDeps {
  store: ResourceStore;
  connections: ConnectionReader;
}

/** The router of the connection subresource; mount it at `/v1`. */
export function connectionRouter(deps: ConnectionRouterDeps): Router {
  const router = Router();
  router.get('/namespaces/:namespace/dataproducts/:name/connection', async (req, res) => {
    const namespace = checkPathName('namespace', req.params.namespace);
    const name = checkPathName('name', req.params.name);
    const product = await deps.store.get(namespace, name);
    const connection = await deps.connections.getConnection(namespace, name);
    if (connection === null) {
      throw new OfftakeError(
        'not-found',
        `DataProduct ${namespace}/${name} has no connection details yet: its store is not ready (see its StoreReady condition).`,
      );
    }
    res.set('Cache-Control', 'no-store');
    sendObject(req, res, 200, {
      apiVersion: API_VERSION,
      kind: 'DataProductConnection',
      metadata: { name, namespace, uid: product.metadata.uid },
      ...connection,
    });
  });
  return router;
}

/** The connection subresource as an extra router of the app (at `/v1`), with its OpenAPI path. */
export function connectionRoute(deps: ConnectionRouterDeps): ExtraRouter {
  return { path: '/v1', router: connectionRouter(deps), openApiPaths: connectionOpenApiPaths() };
}

/** The OpenAPI path of the connection subresource. */
export function connectionOpenApiPaths(): Record<string, unknown> {
  return {
    '/v1/namespaces/{namespace}/dataproducts/{name}/connection': {
      get: {
        summary: "Connection details of the product's store (uri, host, port, user, password, …)",
        operationId: 'getDataProductConnection',
        parameters: [
          { name: 'namespace', in: 'path', required: true, schema: { type: 'string' } },
          { name: 'name', in: 'path', required: true, schema: { type: 'string' } },
        ],
        responses: {
          '200': { description: 'The connection details; the answer holds a password.' },
          '404': { description: 'No such product, or its store is not ready yet.' },
        },
      },
    },
  };
}
