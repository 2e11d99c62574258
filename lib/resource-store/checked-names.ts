/**
 * The name checks both resource stores apply before a namespace or name reaches a Redis key or
 * a Kubernetes API path: DNS-1123 labels, or an `invalid-name` error pointing at the field.
 */
import { DNS1123_LABEL } from '../../crds/dataproduct.schema.ts';
import { OfftakeError } from '../errors.ts';

const NAME = new RegExp(DNS1123_LABEL);

/** Returns `value` when it is a DNS-1123 label; throws `invalid-name` otherwise. */
export function checkedName(kind: 'namespace' | 'name', value: unknown): string {
  if (typeof value !== 'string' || value.length > 63 || !NAME.test(value)) {
    const shown = typeof value === 'string' ? JSON.stringify(value.slice(0, 80)) : String(typeof value);
    throw new OfftakeError('invalid-name', `The ${kind} is not a DNS-1123 label.`, {
      errors: [
        {
          pointer: `/metadata/${kind}`,
          kind: 'name',
          message: `${shown} must be 1-63 lower-case letters, digits or "-", starting and ending with a letter or digit`,
        },
      ],
    });
  }
  return value;
}

/** A checked namespace and name. */
export function checkedRef(namespace: unknown, name: unknown): { namespace: string; name: string } {
  return { namespace: checkedName('namespace', namespace), name: checkedName('name', name) };
}
