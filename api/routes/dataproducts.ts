import { Router, type Request, type Response } from 'express';
import { stringify as toYaml } from 'yaml';
import type { DataProduct } from '../../crds/generated/types.ts';
import { API_VERSION, DNS1123_LABEL, KIND } from '../../crds/dataproduct.schema.ts';
import { OfftakeError } from '../../lib/errors.ts';
import type {
  DataProductInput,
  ResourceStore,
  StoredDataProduct,
} from '../../lib/resource-store/resource-store.ts';
import type { Logger } from '../../lib/logger.ts';
import { bodyText, specBody, specMediaType, type SpecMediaType } from '../body.ts';
import { listQuery, listSelected, serveWatch } from './dataproduct-watch.ts';

/** What the DataProduct routes need from the validator: text in, a valid product or a coded error out. */
export interface SpecValidator {
  validateText(text: string, mediaType: SpecMediaType): DataProduct;
}

/** Dependencies of {@link dataProductsRouter}. */
export interface DataProductsDeps {
  store: ResourceStore;
  validator: SpecValidator;
  maxBodyBytes: number;
  /** Where a watch that fails unexpectedly is logged. */
  logger?: Logger;
}

const NAME_PATTERN = new RegExp(DNS1123_LABEL);

/** Checks a namespace or name taken from the URL path. */
export function checkPathName(kind: 'namespace' | 'name', raw: string | string[]): string {
  const value = Array.isArray(raw) ? raw.join('/') : raw;
  if (value.length > 63 || !NAME_PATTERN.test(value)) {
    throw new OfftakeError('invalid-name', `The ${kind} in the path is not a DNS-1123 label.`, {
      errors: [
        {
          pointer: `/metadata/${kind}`,
          kind: 'name',
          message: `${JSON.stringify(value.slice(0, 80))} must be 1-63 lower-case letters, digits or "-", starting and ending with a letter or digit`,
        },
      ],
    });
  }
  return value;
}

function dryRun(req: Request): boolean {
  const value = req.query.dryRun;
  if (value === undefined) return false;
  if (value === 'All') return true;
  throw new OfftakeError('invalid-parameter', 'dryRun must be "All" when given.', {
    errors: [
      { pointer: '/dryRun', message: `unsupported value ${JSON.stringify(value)}`, kind: 'parameter' },
    ],
  });
}

/** Answers JSON, or YAML when the client prefers it (Accept: application/yaml). */
export function sendObject(req: Request, res: Response, status: number, body: unknown): void {
  const preferred = req.accepts(['application/json', 'application/yaml']);
  if (preferred === 'application/yaml') {
    res.status(status).type('application/yaml').send(toYaml(body));
  } else {
    res.status(status).json(body);
  }
}

function toInput(product: DataProduct, namespace: string, pathName: string | undefined): DataProductInput {
  const meta = product.metadata;
  const mismatches = [];
  if (meta.namespace !== undefined && meta.namespace !== namespace) {
    mismatches.push({
      pointer: '/metadata/namespace',
      kind: 'path',
      message: `metadata.namespace ${JSON.stringify(meta.namespace)} does not match the namespace in the path (${JSON.stringify(namespace)})`,
    });
  }
  if (pathName !== undefined && meta.name !== pathName) {
    mismatches.push({
      pointer: '/metadata/name',
      kind: 'path',
      message: `metadata.name ${JSON.stringify(meta.name)} does not match the name in the path (${JSON.stringify(pathName)})`,
    });
  }
  if (mismatches.length > 0) {
    throw new OfftakeError('invalid-spec', 'The document does not match the request path.', {
      errors: mismatches,
    });
  }
  return {
    metadata: {
      name: meta.name,
      namespace,
      labels: meta.labels ?? {},
      annotations: meta.annotations ?? {},
      resourceVersion: meta.resourceVersion,
    },
    spec: product.spec,
  };
}

/** What a dry-run create would store: the server-owned fields filled as a real create would. */
function dryRunObject(input: DataProductInput): StoredDataProduct {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    metadata: {
      name: input.metadata.name,
      namespace: input.metadata.namespace,
      uid: '',
      resourceVersion: '',
      generation: 1,
      creationTimestamp: new Date().toISOString(),
      finalizers: [],
      labels: input.metadata.labels ?? {},
      annotations: input.metadata.annotations ?? {},
    },
    spec: input.spec,
  };
}

/**
 * The DataProduct resource API, Kubernetes style: create, read, replace, delete, list (with
 * label selector) and status, under `/v1`.
 */
export function dataProductsRouter(deps: DataProductsDeps): Router {
  const router = Router();
  const body = specBody(deps.maxBodyBytes);

  const readProduct = (req: Request, namespace: string, name?: string): DataProductInput => {
    const format = specMediaType(req.headers['content-type']);
    const product = deps.validator.validateText(bodyText(req.body), format);
    return toInput(product, namespace, name);
  };

  /** A list, or with `?watch=true` a stream of changes (see dataproduct-watch.ts). */
  const listOrWatch = async (req: Request, res: Response, namespace: string | undefined) => {
    const query = listQuery(req);
    const selection = { namespace, labelSelector: query.labelSelector, fields: query.fields };
    if (query.watch) {
      const { resourceVersion, timeoutSeconds } = query;
      await serveWatch(req, res, deps.store, selection, {
        resourceVersion,
        timeoutSeconds,
        logger: deps.logger,
      });
      return;
    }
    const result = await listSelected(deps.store, selection);
    sendObject(req, res, 200, listBody(result.items, result.resourceVersion));
  };

  router.get('/dataproducts', async (req, res) => {
    await listOrWatch(req, res, undefined);
  });

  router.get('/namespaces/:namespace/dataproducts', async (req, res) => {
    await listOrWatch(req, res, checkPathName('namespace', req.params.namespace));
  });

  router.post('/namespaces/:namespace/dataproducts', ...body, async (req, res) => {
    const namespace = checkPathName('namespace', req.params.namespace);
    const input = readProduct(req, namespace);
    if (dryRun(req)) {
      sendObject(req, res, 201, dryRunObject(input));
      return;
    }
    const created = await deps.store.create(input);
    res.location(`/v1/namespaces/${namespace}/dataproducts/${created.metadata.name}`);
    sendObject(req, res, 201, created);
  });

  router.get('/namespaces/:namespace/dataproducts/:name', async (req, res) => {
    const namespace = checkPathName('namespace', req.params.namespace);
    const name = checkPathName('name', req.params.name);
    sendObject(req, res, 200, await deps.store.get(namespace, name));
  });

  router.put('/namespaces/:namespace/dataproducts/:name', ...body, async (req, res) => {
    const namespace = checkPathName('namespace', req.params.namespace);
    const name = checkPathName('name', req.params.name);
    const input = readProduct(req, namespace, name);
    if (dryRun(req)) {
      const current = await deps.store.get(namespace, name);
      checkVersion(current, input.metadata.resourceVersion);
      sendObject(req, res, 200, {
        ...current,
        metadata: { ...current.metadata, ...input.metadata },
        spec: input.spec,
      });
      return;
    }
    sendObject(req, res, 200, await deps.store.replace(input));
  });

  router.delete('/namespaces/:namespace/dataproducts/:name', async (req, res) => {
    const namespace = checkPathName('namespace', req.params.namespace);
    const name = checkPathName('name', req.params.name);
    const resourceVersion =
      typeof req.query.resourceVersion === 'string' ? req.query.resourceVersion : undefined;
    if (dryRun(req)) {
      const current = await deps.store.get(namespace, name);
      checkVersion(current, resourceVersion);
      sendObject(req, res, current.metadata.finalizers.length > 0 ? 202 : 200, current);
      return;
    }
    const marked = await deps.store.delete(namespace, name, resourceVersion);
    if (marked !== undefined) {
      // Finalizers hold the object until the operator has torn down what it made.
      sendObject(req, res, 202, marked);
      return;
    }
    sendObject(req, res, 200, {
      apiVersion: 'v1',
      kind: 'Status',
      status: 'Success',
      details: { name, namespace, group: 'offtake.dev', kind: 'dataproducts' },
    });
  });

  router.get('/namespaces/:namespace/dataproducts/:name/status', async (req, res) => {
    const namespace = checkPathName('namespace', req.params.namespace);
    const name = checkPathName('name', req.params.name);
    const product = await deps.store.get(namespace, name);
    const { metadata } = product;
    sendObject(req, res, 200, {
      apiVersion: product.apiVersion,
      kind: product.kind,
      metadata: {
        name: metadata.name,
        namespace: metadata.namespace,
        generation: metadata.generation,
        resourceVersion: metadata.resourceVersion,
        deletionTimestamp: metadata.deletionTimestamp,
      },
      status: product.status ?? {},
    });
  });

  return router;
}

function checkVersion(current: StoredDataProduct, resourceVersion: string | undefined): void {
  if (resourceVersion !== undefined && resourceVersion !== current.metadata.resourceVersion) {
    throw new OfftakeError(
      'conflict',
      `The object has been modified: you sent resourceVersion ${resourceVersion}, the current one is ${current.metadata.resourceVersion}. Read it again and retry.`,
    );
  }
}

function listBody(items: StoredDataProduct[], resourceVersion: string) {
  return { apiVersion: API_VERSION, kind: `${KIND}List`, metadata: { resourceVersion }, items };
}
