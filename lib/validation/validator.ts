/**
 * The DataProduct validator: everything between a request body's text and a valid, typed
 * DataProduct. The schema is compiled once; each call parses the text, validates it against the
 * schema and the semantic rules, and reports every problem at once with its JSON pointer and,
 * for text input, its line and column.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { dataProductSchema } from '../../crds/dataproduct.schema.ts';
import type { DataProduct } from '../../crds/generated/types.ts';
import { toJsonSchema } from '../../crds/json-schema.ts';
import { OfftakeError, type FieldError } from '../errors.ts';
import { parseDocument, type DocumentMediaType, type Locator } from './parse-document.ts';
import { schemaErrors } from './schema-errors.ts';
import { checkSemantics } from './semantic.ts';

export { validateName, type NameKind } from './names.ts';

/** Most problems reported for one document; past that they are consequences of the first ones. */
export const MAX_REPORTED_ERRORS = 100;

/** Options of a {@link DataProductValidator}. */
export interface DataProductValidatorOptions {
  /** Whether `placement: dedicated` is accepted (Kubernetes mode). Default false (embedded). */
  allowDedicated?: boolean;
}

/** True when `pointer` is `ancestor` or lies below it. */
function isAtOrBelow(pointer: string, ancestor: string): boolean {
  return pointer === ancestor || pointer.startsWith(`${ancestor}/`);
}

function summary(errors: FieldError[], total: number): string {
  const first = errors[0];
  const where = first.pointer === '' ? '' : `${first.pointer}: `;
  const at = first.line === undefined ? '' : ` (line ${first.line}, column ${first.column})`;
  if (total === 1) return `1 problem in the DataProduct: ${where}${first.message}${at}`;
  const shown = total > errors.length ? `; the first ${errors.length} are listed` : '';
  return `${total} problems in the DataProduct${shown}. First: ${where}${first.message}${at}`;
}

/**
 * Validates DataProducts. Construct once (the schema compiles in the constructor) and share.
 */
export class DataProductValidator {
  readonly #validate: ValidateFunction;
  readonly #allowDedicated: boolean;

  constructor(options: DataProductValidatorOptions = {}) {
    this.#allowDedicated = options.allowDedicated ?? false;
    // strict: unknown keywords are schema bugs (toJsonSchema strips the Kubernetes-only ones);
    // verbose: errors carry the data and parent schema the messages need; useDefaults: the
    // result carries the schema's defaults, as the kube-apiserver applies them to CRs.
    const ajv = new Ajv({ allErrors: true, strict: true, verbose: true, useDefaults: true });
    // ajv-formats is CommonJS; its default export is the plugin function at run time.
    (addFormats as unknown as (a: Ajv) => Ajv)(ajv);
    this.#validate = ajv.compile(toJsonSchema(dataProductSchema));
  }

  /**
   * Parses `text` as YAML or JSON and validates it. Returns the DataProduct (with schema
   * defaults applied) or throws an {@link OfftakeError}: `invalid-yaml`, `invalid-json`,
   * `multiple-documents` (from parsing) or `invalid-spec` with every problem, each with its
   * pointer, line and column.
   */
  validateText(text: string, mediaType: DocumentMediaType): DataProduct {
    const { value, locate } = parseDocument(text, mediaType);
    return this.validateObject(value, locate);
  }

  /**
   * Validates a parsed document. Returns a copy with the schema's defaults applied (the input
   * is not changed), or throws `invalid-spec` listing up to {@link MAX_REPORTED_ERRORS} problems:
   * schema violations, then semantic ones (names, target options, placement, columns, CEL),
   * ordered by position when `locate` knows positions.
   */
  validateObject(value: unknown, locate?: Locator): DataProduct {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      const message = 'the document must be a mapping with apiVersion, kind, metadata and spec';
      throw new OfftakeError('invalid-spec', message, { errors: [{ pointer: '', message, kind: 'schema' }] });
    }
    const copy = structuredClone(value);
    const valid = this.#validate(copy);
    const schemaProblems = valid
      ? []
      : schemaErrors(this.#validate.errors as ErrorObject[], dataProductSchema);
    const failed = schemaProblems.map((e) => e.pointer);
    const semanticProblems = checkSemantics(copy, {
      allowDedicated: this.#allowDedicated,
      // Whatever the schema already rejected is not checked again (no CEL on a non-string).
      skip: (pointer) => failed.some((f) => isAtOrBelow(pointer, f)),
    });
    const all = [...schemaProblems, ...semanticProblems];
    if (all.length === 0) return copy as DataProduct;

    let errors = all;
    if (locate !== undefined) {
      errors = all.map((e) => ({ ...e, ...locate(e.pointer) }));
      if (errors.every((e) => e.line !== undefined)) {
        errors.sort((a, b) => (a.line ?? 0) - (b.line ?? 0) || (a.column ?? 0) - (b.column ?? 0));
      }
    }
    const reported = errors.slice(0, MAX_REPORTED_ERRORS);
    throw new OfftakeError('invalid-spec', summary(reported, errors.length), {
      errors: reported,
      extensions: errors.length > reported.length ? { totalErrors: errors.length } : {},
    });
  }
}
