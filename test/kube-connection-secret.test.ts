/**
 * The connection Secret, without a cluster: `<product>-conn`, owned by the product (controller),
 * labelled, holding the same uri and parts as the API's connection endpoint, and read back into
 * exactly the connection it was written from.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  connectionFromSecret,
  connectionSecretName,
  desiredConnectionSecret,
} from '../operator/kube/connection-secret.ts';
import { FIELD_MANAGER, PRODUCT_LABEL } from '../operator/kube/ownership.ts';
import type { ProductConnection } from '../operator/product-connection.ts';
import { validateObject } from './helpers/kube-models.ts';

const product = { metadata: { name: 'eu-orders', namespace: 'checkout', uid: 'u-1' } };
const postgres: ProductConnection = {
  type: 'postgres',
  uri: 'postgresql://dp_checkout_eu_orders_1a2b3c4d:pw@db.example:5432/offtake',
  host: 'db.example',
  port: 5432,
  user: 'dp_checkout_eu_orders_1a2b3c4d',
  password: 'pw',
  database: 'offtake',
  schema: 'dp_checkout_eu_orders_1a2b3c4d',
  table: 'eu_orders',
};

const decoded = (data: Record<string, string>) =>
  Object.fromEntries(Object.entries(data).map(([k, v]) => [k, Buffer.from(v, 'base64').toString('utf8')]));

describe('connection Secret', () => {
  it('is <product>-conn, a valid Secret owned by the product', async () => {
    const secret = desiredConnectionSecret(product, postgres);
    await validateObject(secret);
    assert.equal(secret.metadata!.name, 'eu-orders-conn');
    assert.equal(connectionSecretName('eu-orders'), 'eu-orders-conn');
    assert.equal(secret.metadata!.namespace, 'checkout');
    assert.equal(secret.metadata!.labels![PRODUCT_LABEL], 'eu-orders');
    assert.equal(secret.metadata!.labels!['app.kubernetes.io/managed-by'], FIELD_MANAGER);
    assert.equal(secret.metadata!.labels!['app.kubernetes.io/component'], 'connection');
    const [owner] = secret.metadata!.ownerReferences!;
    assert.deepEqual(
      [owner.kind, owner.name, owner.uid, owner.controller],
      ['DataProduct', 'eu-orders', 'u-1', true],
    );
  });

  it('holds the uri and its parts, and reads back into the same connection', () => {
    const secret = desiredConnectionSecret(product, postgres);
    assert.deepEqual(decoded(secret.data!), {
      type: 'postgres',
      uri: postgres.uri,
      host: 'db.example',
      port: '5432',
      user: postgres.user,
      password: 'pw',
      database: 'offtake',
      schema: postgres.schema,
      table: 'eu_orders',
    });
    assert.deepEqual(connectionFromSecret(secret), postgres);
    const redis: ProductConnection = {
      type: 'redis',
      uri: 'redis://dp:checkout:eu-orders:pw@127.0.0.1:6379/0',
      host: '127.0.0.1',
      port: 6379,
      user: 'dp:checkout:eu-orders',
      password: 'pw',
      database: '0',
      keyPrefix: 'offtake:dp:checkout:eu-orders:b1:',
      currentKey: 'offtake:dp:checkout:eu-orders:current',
    };
    assert.deepEqual(connectionFromSecret(desiredConnectionSecret(product, redis)), redis);
  });

  it('reads an incomplete Secret as no connection', () => {
    const secret = desiredConnectionSecret(product, postgres);
    const rest = { ...secret.data };
    delete rest.password;
    assert.equal(connectionFromSecret({ ...secret, data: rest }), null);
    assert.equal(
      connectionFromSecret({
        ...secret,
        data: { ...secret.data, type: Buffer.from('mongo').toString('base64') },
      }),
      null,
    );
  });
});
