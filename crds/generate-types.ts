/**
 * Renders the TypeScript types of a DataProduct from the schema source
 * (json-schema-to-typescript). Used by `generate.ts` and by the drift test.
 */
import { compile } from 'json-schema-to-typescript';
import { dataProductSchema, specSchema, statusSchema } from './dataproduct.schema.ts';
import { toJsonSchema } from './json-schema.ts';

const BANNER = '/* Generated from crds/dataproduct.schema.ts by `npm run generate`. Do not edit. */';

/** Returns the text of `crds/generated/types.ts`. */
export async function renderTypes(): Promise<string> {
  const opts = {
    bannerComment: '',
    additionalProperties: false,
    format: true,
    strictIndexSignatures: false,
    ignoreMinAndMaxItems: true,
  };
  const parts = await Promise.all([
    compile({ ...toJsonSchema(specSchema), title: 'DataProductSpec' }, 'DataProductSpec', opts),
    compile({ ...toJsonSchema(statusSchema), title: 'DataProductStatus' }, 'DataProductStatus', opts),
    compile(
      {
        ...toJsonSchema(dataProductSchema),
        title: 'DataProduct',
        properties: {
          ...(toJsonSchema(dataProductSchema).properties as object),
          spec: { tsType: 'DataProductSpec' },
          status: { tsType: 'DataProductStatus' },
        },
      },
      'DataProduct',
      opts,
    ),
  ]);
  return `${BANNER}\n\n${parts.join('\n')}`;
}
