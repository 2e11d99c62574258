/**
 * Helpers of the Kubernetes-mode tests: installing the DataProduct CRD on a test control plane,
 * making namespaces (each checked with kubectl), and a serving certificate for a webhook.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { ControlPlane } from './control-plane.ts';

const execFileAsync = promisify(execFile);

/** The CRD manifest, as users apply it. */
export const CRD_FILE = fileURLToPath(new URL('../../crds/offtake.dev_dataproducts.yaml', import.meta.url));

/** Applies the DataProduct CRD and waits until the API server serves it. */
export async function installCrd(cp: ControlPlane): Promise<void> {
  const applied = await cp.kubectl(['apply', '-f', CRD_FILE]);
  assert.equal(applied.code, 0, applied.stderr);
  const waited = await cp.kubectl([
    'wait',
    '--for=condition=Established',
    'crd/dataproducts.offtake.dev',
    '--timeout=60s',
  ]);
  assert.equal(waited.code, 0, waited.stderr);
}

/** Creates a namespace with a unique name starting with `stem`, and returns its name. */
export async function createNamespace(cp: ControlPlane, stem: string): Promise<string> {
  const name = `${stem}-${randomBytes(3).toString('hex')}`;
  const created = await cp.kubectl(['create', 'namespace', name]);
  assert.equal(created.code, 0, created.stderr);
  return name;
}

/** A serving certificate for 127.0.0.1 and the self-signed CA that issued it, all PEM. */
export interface ServingCertificate {
  caPem: string;
  certPem: string;
  keyPem: string;
}

/**
 * Makes, with openssl in `dir`, a self-signed CA and a serving certificate for 127.0.0.1 and
 * localhost — what kube-apiserver needs to call a webhook over HTTPS on this machine.
 */
export async function makeServingCertificate(dir: string): Promise<ServingCertificate> {
  const path = (name: string): string => join(dir, name);
  const openssl = (...args: string[]) => execFileAsync('openssl', args, { cwd: dir });
  const newKey = (name: string) =>
    openssl('genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', path(name));
  await newKey('webhook-ca.key');
  await openssl(
    ...['req', '-x509', '-new', '-key', path('webhook-ca.key'), '-out', path('webhook-ca.crt')],
    ...['-days', '2', '-subj', '/CN=offtake-webhook-test-ca'],
    ...['-addext', 'basicConstraints=critical,CA:TRUE'],
    ...['-addext', 'keyUsage=critical,keyCertSign,cRLSign,digitalSignature'],
  );
  await newKey('webhook.key');
  await openssl(
    ...['req', '-new', '-key', path('webhook.key'), '-out', path('webhook.csr')],
    ...['-subj', '/CN=offtake-webhook'],
  );
  await writeFile(
    path('webhook.ext'),
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=serverAuth',
      'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '',
    ].join('\n'),
  );
  await openssl(
    ...['x509', '-req', '-in', path('webhook.csr'), '-out', path('webhook.crt'), '-days', '2'],
    ...['-CA', path('webhook-ca.crt'), '-CAkey', path('webhook-ca.key'), '-CAcreateserial'],
    ...['-extfile', path('webhook.ext')],
  );
  return {
    caPem: await readFile(path('webhook-ca.crt'), 'utf8'),
    certPem: await readFile(path('webhook.crt'), 'utf8'),
    keyPem: await readFile(path('webhook.key'), 'utf8'),
  };
}
