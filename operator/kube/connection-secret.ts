/**
 * The connection Secret of a product in Kubernetes mode: `<product>-conn` in the product's
 * namespace, owned by the product, holding the same details as the API's connection endpoint — a
 * `uri` standard clients accept as is and its parts — so a workload mounts it or reads it with
 * `envFrom`. `status.connection.secretRef` names it.
 */
import type { V1Secret } from '@kubernetes/client-node';
import type { ProductRef } from '../../worker/pipeline-keys.ts';
import type { ConnectionReader, ProductConnection } from '../product-connection.ts';
import { ProvisioningError } from '../provisioning-error.ts';
import type { OwnedObjects } from './owned-objects.ts';
import { PRODUCT_LABEL, checkOwnership, ownedMetadata, type OwningProduct } from './ownership.ts';

/** The Secret's keys, in the order they are written (optional ones only when set). */
const KEYS = [
  'type',
  'uri',
  'host',
  'port',
  'user',
  'password',
  'database',
  'schema',
  'table',
  'keyPrefix',
  'currentKey',
  'stream',
  'key',
] as const satisfies readonly (keyof ProductConnection)[];

const TYPES = new Set<ProductConnection['type']>(['postgres', 'redis', 'topic']);

/** The name of a product's connection Secret (the connection record's name in embedded mode too). */
export function connectionSecretName(productName: string): string {
  return `${productName}-conn`;
}

/** The connection Secret `product` should have for `connection`. Pure. */
export function desiredConnectionSecret(product: OwningProduct, connection: ProductConnection): V1Secret {
  const data: Record<string, string> = {};
  for (const key of KEYS) {
    const value = connection[key];
    if (value !== undefined) data[key] = Buffer.from(String(value), 'utf8').toString('base64');
  }
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: ownedMetadata(product, connectionSecretName(product.metadata.name), {
      app: 'offtake',
      component: 'connection',
    }),
    type: 'Opaque',
    // `data`, not `stringData`: stringData is write-only, so server-side apply could never see
    // that what it applied is already there.
    data,
  };
}

/** The connection details a Secret holds; null when it is not a complete connection Secret. */
export function connectionFromSecret(secret: V1Secret): ProductConnection | null {
  const data = secret.data ?? {};
  const text = (key: string): string | undefined =>
    data[key] === undefined ? undefined : Buffer.from(data[key], 'base64').toString('utf8');
  const type = text('type') as ProductConnection['type'] | undefined;
  const port = Number(text('port'));
  const required = ['uri', 'host', 'user', 'password', 'database'].map(text);
  if (type === undefined || !TYPES.has(type) || !Number.isInteger(port) || required.includes(undefined))
    return null;
  const [uri, host, user, password, database] = required as string[];
  const connection: ProductConnection = { type, uri, host, port, user, password, database };
  for (const key of ['schema', 'table', 'keyPrefix', 'currentKey', 'stream', 'key'] as const) {
    const value = text(key);
    if (value !== undefined) connection[key] = value;
  }
  return connection;
}

/** Writes, reads and removes products' connection Secrets. */
export class ConnectionSecrets implements ConnectionReader {
  private readonly objects: OwnedObjects;

  constructor(objects: OwnedObjects) {
    this.objects = objects;
  }

  /** Applies the product's connection Secret; refuses to take over a Secret it does not own. */
  async apply(product: OwningProduct, connection: ProductConnection): Promise<V1Secret> {
    const desired = desiredConnectionSecret(product, connection);
    const existing = await this.objects.read('Secret', product.metadata.namespace, desired.metadata!.name!);
    checkOwnership('Secret', existing, product);
    return this.objects.apply('Secret', desired);
  }

  /** Deletes the product's connection Secret (access revoked); false when it was gone. */
  async delete(ref: ProductRef): Promise<boolean> {
    return this.objects.delete('Secret', ref.namespace, connectionSecretName(ref.name));
  }

  /** The product's connection details from its Secret; null while there is none. */
  async getConnection(namespace: string, name: string): Promise<ProductConnection | null> {
    const secret = await this.objects.read('Secret', namespace, connectionSecretName(name));
    // Only a Secret the operator wrote: a user's Secret of the same name is none of ours to serve.
    if (secret === undefined || secret.metadata?.labels?.[PRODUCT_LABEL] !== name) return null;
    const connection = connectionFromSecret(secret);
    if (connection === null) {
      throw new ProvisioningError(
        'ConnectionSecretInvalid',
        `The Secret ${namespace}/${connectionSecretName(name)} does not hold a complete connection.`,
      );
    }
    return connection;
  }
}
