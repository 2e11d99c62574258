/**
 * Who owns what the operator makes in a cluster: the labels every object of a product carries and
 * the owner reference that ties it to its DataProduct, so `kubectl get all -l offtake.dev/product=x`
 * finds them and the garbage collector removes them with the product.
 */
import type { V1ObjectMeta, V1OwnerReference } from '@kubernetes/client-node';
import { API_VERSION, KIND } from '../../crds/dataproduct.schema.ts';
import { ProvisioningError } from '../provisioning-error.ts';

/** The one field manager of every object the operator applies (server-side apply). */
export const FIELD_MANAGER = 'offtake-operator';

/** Label naming the product an object belongs to (its name; the object lives in its namespace). */
export const PRODUCT_LABEL = 'offtake.dev/product';

/** The part of a DataProduct the operator needs to own objects for it. */
export interface OwningProduct {
  metadata: { name: string; namespace: string; uid: string };
}

/** What an object is within its product, as the `app.kubernetes.io/*` labels say it. */
export interface ObjectRole {
  /** `app.kubernetes.io/name`: the application, e.g. `redis`, `postgres`, `offtake-worker`. */
  app: string;
  /** `app.kubernetes.io/component`: e.g. `store`, `worker`, `connection`. */
  component: string;
}

/**
 * The labels of an object the operator makes for `product`. All values are label-safe: product
 * names are DNS-1123 labels of at most 63 characters.
 */
export function productLabels(product: OwningProduct, role: ObjectRole): Record<string, string> {
  return {
    'app.kubernetes.io/name': role.app,
    'app.kubernetes.io/instance': product.metadata.name,
    'app.kubernetes.io/component': role.component,
    'app.kubernetes.io/part-of': 'offtake',
    'app.kubernetes.io/managed-by': FIELD_MANAGER,
    [PRODUCT_LABEL]: product.metadata.name,
  };
}

/**
 * The selector of a product's pods of one component. Kept to two labels that never change for
 * the life of the workload: a StatefulSet's or Deployment's selector is immutable.
 */
export function productSelector(product: OwningProduct, component: string): Record<string, string> {
  return { [PRODUCT_LABEL]: product.metadata.name, 'app.kubernetes.io/component': component };
}

/**
 * The owner reference to the product: `controller: true` (the operator manages the object) and
 * `blockOwnerDeletion: true` (foreground deletion of the product waits for it). Setting
 * blockOwnerDeletion needs `update` on `dataproducts/finalizers`, which deploy/ grants.
 */
export function ownerReference(product: OwningProduct): V1OwnerReference {
  return {
    apiVersion: API_VERSION,
    kind: KIND,
    name: product.metadata.name,
    uid: product.metadata.uid,
    controller: true,
    blockOwnerDeletion: true,
  };
}

/** The metadata of an object the operator makes for `product`: name, namespace, labels, owner. */
export function ownedMetadata(product: OwningProduct, name: string, role: ObjectRole): V1ObjectMeta {
  return {
    name,
    namespace: product.metadata.namespace,
    labels: productLabels(product, role),
    ownerReferences: [ownerReference(product)],
  };
}

/** Whether `meta` names `product` as its controller (same uid: a re-created product is another owner). */
export function isControlledBy(meta: V1ObjectMeta | undefined, product: OwningProduct): boolean {
  return (meta?.ownerReferences ?? []).some(
    (ref) => ref.controller === true && ref.uid === product.metadata.uid && ref.kind === KIND,
  );
}

/**
 * Checks that an existing object may be applied over for `product`: absent, controlled by it, or
 * left by an earlier product of the same name (our labels, another uid). An object someone else
 * made under the same name is never taken over: that would hand its data to the product.
 */
export function checkOwnership(
  kind: string,
  existing: { metadata?: V1ObjectMeta } | undefined,
  product: OwningProduct,
): void {
  if (existing === undefined || isControlledBy(existing.metadata, product)) return;
  const labels = existing.metadata?.labels ?? {};
  if (
    labels['app.kubernetes.io/managed-by'] === FIELD_MANAGER &&
    labels[PRODUCT_LABEL] === product.metadata.name
  )
    return;
  const { namespace, name } = product.metadata;
  throw new ProvisioningError(
    'ObjectNotOwned',
    `A ${kind} ${namespace}/${existing.metadata?.name ?? '?'} exists that DataProduct ${namespace}/${name} does ` +
      'not own; the operator will not take it over. Delete or rename it.',
  );
}
