/**
 * Writes the files generated from the schema source: the CRD (and its copy in deploy/, which
 * kustomize reads: it cannot reach outside its directory) and the TypeScript types.
 * `node crds/generate.ts --check` writes nothing and exits 1 naming each stale file.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { format, resolveConfig } from 'prettier';
import { renderCrdYaml } from './crd.ts';
import { renderTypes } from './generate-types.ts';

const CRD_FILE = fileURLToPath(new URL('./offtake.dev_dataproducts.yaml', import.meta.url));
const DEPLOY_CRD_FILE = fileURLToPath(
  new URL('../deploy/base/crd/offtake.dev_dataproducts.yaml', import.meta.url),
);
const TYPES_FILE = fileURLToPath(new URL('./generated/types.ts', import.meta.url));

// Formatted here so that `prettier --check .` and `--check` agree on the committed text.
async function formattedCrdYaml(): Promise<string> {
  const options = (await resolveConfig(CRD_FILE)) ?? {};
  return format(renderCrdYaml(), { ...options, filepath: CRD_FILE });
}

async function readOrEmpty(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return '';
  }
}

const check = process.argv.includes('--check');
const root = fileURLToPath(new URL('..', import.meta.url));
const crdYaml = await formattedCrdYaml();
const files: [string, string][] = [
  [CRD_FILE, crdYaml],
  [DEPLOY_CRD_FILE, crdYaml],
  [TYPES_FILE, await renderTypes()],
];
for (const [path, text] of files) {
  const shown = path.slice(root.length);
  if ((await readOrEmpty(path)) === text) continue;
  if (check) {
    console.error(`stale: ${shown} differs from crds/dataproduct.schema.ts; run npm run generate`);
    process.exitCode = 1;
  } else {
    await writeFile(path, text);
    console.log(`wrote ${shown}`);
  }
}
