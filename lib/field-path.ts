/**
 * Two spellings of "where in the object": Offtake's JSON pointers (RFC 6901, `/spec/source/streams/0`)
 * and Kubernetes' field paths (`spec.source.streams[0]`, as in a `Status` cause). The admission
 * webhook writes field paths for kube-apiserver; the Kubernetes resource store reads them back.
 */

/** A name that can stand after a dot in a field path (anything else goes in brackets). */
const PLAIN_SEGMENT = /^[A-Za-z_$][A-Za-z0-9_$-]*$/;

/** `/spec/source/streams/0` → `spec.source.streams[0]`; `''` (the whole object) → `''`. */
export function pointerToFieldPath(pointer: string): string {
  if (pointer === '') return '';
  const tokens = pointer
    .slice(1)
    .split('/')
    .map((token) => token.replaceAll('~1', '/').replaceAll('~0', '~'));
  let path = '';
  for (const token of tokens) {
    if (/^(0|[1-9][0-9]*)$/.test(token) || !PLAIN_SEGMENT.test(token)) path += `[${token}]`;
    else path += path === '' ? token : `.${token}`;
  }
  return path;
}

/**
 * `spec.source.streams[0]` → `/spec/source/streams/0`, and `metadata.labels[app/tier]` →
 * `/metadata/labels/app~1tier`. Kubernetes writes `<nil>` or nothing for "the whole object": `''`.
 */
export function fieldPathToPointer(field: string | undefined): string {
  if (field === undefined || field === '' || field === '<nil>') return '';
  let pointer = '';
  for (const match of field.matchAll(/([^.[\]]+)|\[([^\]]*)\]/g)) {
    const token = match[1] ?? match[2] ?? '';
    pointer += `/${token.replaceAll('~', '~0').replaceAll('/', '~1')}`;
  }
  return pointer;
}
