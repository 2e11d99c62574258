/**
 * The user's day-to-day commands, talking to a running Offtake API over HTTP:
 * `apply -f`, `get [-w]`, `describe`, `status [--watch]`, `connection`, `delete [--wait]`, `publish`
 * (a file of any size, in batches).
 */
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { InvalidArgumentError, type Command } from 'commander';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import type { StoredDataProduct } from '../lib/resource-store/resource-store.ts';
import { ApiClient, ApiError, type ProductSelection } from './api-client.ts';
import { followProducts, type ProductChange } from './product-watch.ts';
import { isReady, progressDetail, progressView, type ProductLabel } from './progress-view.ts';

interface GlobalOpts {
  server: string;
  namespace: string;
}

/** How much one `publish` request carries at most: a batch closes at whichever limit it reaches first. */
interface BatchLimits {
  /** Events per request. */
  events: number;
  /** Bytes of a request body. */
  bytes: number;
}

/** Well within the API's default limits (1000 events, a 4 MiB body) and quick to retry. */
const DEFAULT_PUBLISH_BATCH: BatchLimits = Object.freeze({ events: 500, bytes: 1024 * 1024 });

/** The API token the commands send (env OFFTAKE_API_TOKEN: never a flag, so it stays out of shell history and `ps`). */
const API_TOKEN = process.env.OFFTAKE_API_TOKEN || undefined;

function client(cmd: Command): { api: ApiClient; namespace: string } {
  const opts = cmd.optsWithGlobals<GlobalOpts>();
  return { api: new ApiClient(opts.server, API_TOKEN), namespace: opts.namespace };
}

/** Prints an API error the way a user wants to read it: what, then where. */
export function formatApiError(err: ApiError): string {
  const lines = [`error: ${err.problem.title}: ${err.problem.detail}`];
  for (const e of err.problem.errors ?? []) {
    const where = [
      e.line !== undefined ? `line ${e.line}, column ${e.column ?? '?'}` : undefined,
      e.expressionColumn !== undefined ? `expression column ${e.expressionColumn}` : undefined,
    ].filter(Boolean);
    lines.push(`  ${e.pointer}${where.length ? ` (${where.join('; ')})` : ''}: ${e.message}`);
  }
  return lines.join('\n');
}

async function run(action: () => Promise<void>): Promise<void> {
  try {
    await action();
  } catch (err) {
    if (err instanceof ApiError) {
      process.stderr.write(formatApiError(err) + '\n');
      process.exitCode = 1;
      return;
    }
    throw err;
  }
}

function positiveInteger(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < 1) throw new InvalidArgumentError('must be a whole number above 0');
  return n;
}

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('must be a number of seconds above 0');
  return n;
}

/** How a watch ended: the caller's test said done, Ctrl-C, or the timeout. */
type WatchEnd = 'done' | 'interrupted' | 'timeout';

/**
 * Follows the selected products, handing each change to `onChange` until it answers true, Ctrl-C
 * or `timeoutSeconds`. Ctrl-C ends the watch quietly: it is how a user stops `get -w`.
 */
async function watchUntil(
  api: ApiClient,
  selection: ProductSelection,
  onChange: (change: ProductChange) => boolean,
  timeoutSeconds?: number,
): Promise<WatchEnd> {
  const stop = new AbortController();
  let end: WatchEnd = 'done';
  const interrupt = () => {
    end = 'interrupted';
    stop.abort();
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  const timer =
    timeoutSeconds === undefined
      ? undefined
      : setTimeout(() => {
          end = 'timeout';
          stop.abort();
        }, timeoutSeconds * 1000);
  try {
    for await (const change of followProducts(api, selection, { signal: stop.signal })) {
      if (onChange(change)) {
        end = 'done';
        break;
      }
    }
    return end;
  } finally {
    clearTimeout(timer);
    process.off('SIGINT', interrupt);
    process.off('SIGTERM', interrupt);
    stop.abort();
  }
}

/** Adds the client commands to the program. */
export function registerClientCommands(program: Command): void {
  program
    .option(
      '-s, --server <url>',
      'Offtake API address (env OFFTAKE_SERVER)',
      process.env.OFFTAKE_SERVER ?? 'http://127.0.0.1:8080',
    )
    .option(
      '-n, --namespace <ns>',
      'namespace (env OFFTAKE_NAMESPACE)',
      process.env.OFFTAKE_NAMESPACE ?? 'default',
    );

  program
    .command('apply')
    .description('create or update the DataProduct in a YAML or JSON file')
    .requiredOption('-f, --file <path>', 'the spec file')
    .option('--dry-run', 'validate only, store nothing')
    .action(async (opts: { file: string; dryRun?: boolean }, cmd: Command) =>
      run(async () => {
        const { api, namespace } = client(cmd);
        const text = await readFile(opts.file, 'utf8');
        const type = /\.json$/i.test(opts.file) ? 'application/json' : 'application/yaml';
        const result = await api.apply(namespace, text, type, opts.dryRun === true);
        process.stdout.write(
          `dataproduct/${result.object.metadata.name} ${result.action}${opts.dryRun ? ' (dry run)' : ''} ` +
            `(generation ${result.object.metadata.generation})\n`,
        );
      }),
    );

  program
    .command('get')
    .description('list DataProducts, or show one')
    .argument('[name]')
    .option('-A, --all-namespaces', 'list in every namespace')
    .option('-l, --selector <selector>', 'label selector')
    .option('-o, --output <format>', 'table, yaml or json', 'table')
    .option(
      '-w, --watch',
      'after listing, show changes until Ctrl-C: seed progress (a bar per product on a terminal, a line per change otherwise), or with -o json/yaml each change',
    )
    .action(
      async (
        name: string | undefined,
        opts: { allNamespaces?: boolean; selector?: string; output: string; watch?: boolean },
        cmd: Command,
      ) =>
        run(async () => {
          const { api, namespace } = client(cmd);
          if (opts.watch) {
            const selection = {
              namespace: opts.allNamespaces ? undefined : namespace,
              labelSelector: opts.selector,
              name,
            };
            await watchProducts(api, selection, opts.output, opts.allNamespaces === true);
            return;
          }
          const items = name
            ? [await api.get(namespace, name)]
            : await api.list(opts.allNamespaces ? undefined : namespace, opts.selector);
          if (opts.output === 'yaml') process.stdout.write(toYaml(name ? items[0] : items));
          else if (opts.output === 'json')
            process.stdout.write(JSON.stringify(name ? items[0] : items, null, 2) + '\n');
          else process.stdout.write(table(items, opts.allNamespaces === true));
        }),
    );

  program
    .command('describe')
    .description('show a DataProduct: spec summary, conditions, seed progress, connection (password hidden)')
    .argument('<name>')
    .action(async (name: string, _opts: unknown, cmd: Command) =>
      run(async () => {
        const { api, namespace } = client(cmd);
        const p = await api.get(namespace, name);
        process.stdout.write(
          toYaml({
            name: p.metadata.name,
            namespace: p.metadata.namespace,
            generation: p.metadata.generation,
            created: p.metadata.creationTimestamp,
            deleting: p.metadata.deletionTimestamp,
            source: p.spec.source,
            target: p.spec.target,
            phase: p.status?.phase ?? 'Pending',
            progress: progressDetail(p),
            conditions: p.status?.conditions ?? [],
            seed: p.status?.seed,
            lag: p.status?.lag,
            builds: p.status?.builds,
            connection: await describedConnection(api, namespace, name),
          }),
        );
      }),
    );

  program
    .command('status')
    .description("show DataProducts' progress; with --watch, follow it live until they are all Ready")
    .argument('<names...>')
    .option(
      '-w, --watch',
      'follow the progress (a bar per product on a terminal, a line per change otherwise) until Ready',
    )
    .option('--timeout <seconds>', 'with --watch: give up (exit 1) after this long', seconds)
    .action(async (names: string[], opts: { watch?: boolean; timeout?: number }, cmd: Command) =>
      run(async () => {
        const { api, namespace } = client(cmd);
        // Each must exist: an unknown name is an error now, not a wait for ever.
        const products = await Promise.all(names.map((name) => api.get(namespace, name)));
        if (!opts.watch) {
          for (const product of products) {
            process.stdout.write(`${product.metadata.name} ${progressDetail(product)}\n`);
            for (const c of product.status?.conditions ?? []) {
              process.stdout.write(`  ${c.type}=${c.status} ${c.reason ?? ''}: ${c.message ?? ''}\n`);
            }
          }
          return;
        }
        await followUntilReady(api, namespace, [...new Set(names)], opts.timeout);
      }),
    );

  program
    .command('connection')
    .description("print the connection details of a product's store (they include its password)")
    .argument('<name>')
    .argument('[field]', 'print only this field, e.g. uri, keyPrefix, schema, table, stream, key')
    .option('-o, --output <format>', 'yaml or json', 'yaml')
    .action(async (name: string, field: string | undefined, opts: { output: string }, cmd: Command) =>
      run(async () => {
        const { api, namespace } = client(cmd);
        const connection = (await api.connection(namespace, name)) as unknown as Record<string, unknown>;
        if (field !== undefined) {
          const value = connection[field];
          if (typeof value !== 'string' && typeof value !== 'number') {
            const fields = Object.keys(connection).filter((k) => typeof connection[k] !== 'object');
            process.stderr.write(
              `error: the connection of ${name} has no field ${field}; it has ${fields.join(', ')}\n`,
            );
            process.exitCode = 1;
            return;
          }
          process.stdout.write(`${String(value)}\n`);
        } else if (opts.output === 'json') {
          process.stdout.write(`${JSON.stringify(connection, null, 2)}\n`);
        } else {
          process.stdout.write(toYaml(connection));
        }
      }),
    );

  program
    .command('delete')
    .description('delete a DataProduct (its store is torn down)')
    .argument('<name>')
    .option('--wait', 'wait until the teardown is done and the product is gone')
    .option('--timeout <seconds>', 'with --wait: give up (exit 1) after this long', seconds)
    .action(async (name: string, opts: { wait?: boolean; timeout?: number }, cmd: Command) =>
      run(async () => {
        const { api, namespace } = client(cmd);
        const pending = await api.delete(namespace, name);
        process.stdout.write(
          `dataproduct/${name} ${pending ? 'deletion requested (tearing down)' : 'deleted'}\n`,
        );
        if (!pending || !opts.wait) return;
        let last: StoredDataProduct | undefined;
        const end = await watchUntil(
          api,
          { namespace, name },
          (change) => {
            if (change.type === 'DELETED') return true;
            if (change.type === 'SYNCED') return change.objects.length === 0;
            last = change.object;
            return false;
          },
          opts.timeout,
        );
        if (end === 'done') {
          process.stdout.write(`dataproduct/${name} deleted\n`);
          return;
        }
        process.stderr.write(
          `error: dataproduct/${name} is not gone${end === 'timeout' ? ` after ${opts.timeout}s` : ''}` +
            `${last === undefined ? '' : ` (${progressDetail(last)})`}\n`,
        );
        process.exitCode = 1;
      }),
    );

  program
    .command('publish')
    .description(
      'append the events in an NDJSON (or JSON array) file to a stream of the event log, in batches, in order; ' +
        'the file is checked whole first, and re-running stores nothing twice',
    )
    .argument('<stream>')
    .argument('<file>')
    .option(
      '--batch-events <n>',
      'most events per request (the API takes at most 1000 by default)',
      positiveInteger,
      DEFAULT_PUBLISH_BATCH.events,
    )
    .option(
      '--batch-bytes <n>',
      'most bytes per request (the API takes at most 4 MiB by default)',
      positiveInteger,
      DEFAULT_PUBLISH_BATCH.bytes,
    )
    .action(
      async (stream: string, file: string, opts: { batchEvents: number; batchBytes: number }, cmd: Command) =>
        run(async () => {
          const { api } = client(cmd);
          await publishFile(api, stream, file, { events: opts.batchEvents, bytes: opts.batchBytes });
        }),
    );

  program
    .command('validate')
    .description('validate a spec file against a running API without storing it')
    .argument('<file>')
    .action(async (file: string, _opts: unknown, cmd: Command) =>
      run(async () => {
        const { api, namespace } = client(cmd);
        const text = await readFile(file, 'utf8');
        const doc = parseYaml(text) as { metadata?: { name?: string } } | null;
        await api.apply(
          namespace,
          text,
          /\.json$/i.test(file) ? 'application/json' : 'application/yaml',
          true,
        );
        process.stdout.write(`${file}: dataproduct/${doc?.metadata?.name ?? '?'} is valid\n`);
      }),
    );
}

/** `get -w`: every change until Ctrl-C, as progress (table) or as watch events (json, yaml). */
async function watchProducts(
  api: ApiClient,
  selection: ProductSelection,
  output: string,
  allNamespaces: boolean,
): Promise<void> {
  if (output === 'json' || output === 'yaml') {
    await watchUntil(api, selection, (change) => {
      if (change.type === 'SYNCED') return false;
      const event = { type: change.type, object: change.object };
      process.stdout.write(output === 'json' ? `${JSON.stringify(event)}\n` : `---\n${toYaml(event)}`);
      return false;
    });
    return;
  }
  const label: ProductLabel = allNamespaces
    ? (p) => `${p.metadata.namespace}/${p.metadata.name}`
    : (p) => p.metadata.name;
  const view = progressView(process.stdout, label);
  try {
    await watchUntil(api, selection, (change) => {
      if (change.type === 'DELETED') view.remove(change.object);
      else if (change.type !== 'SYNCED') view.show(change.object);
      return false;
    });
  } finally {
    view.stop();
  }
}

/** `status --watch`: the products' progress until each is Ready for its current spec. */
async function followUntilReady(
  api: ApiClient,
  namespace: string,
  names: string[],
  timeoutSeconds: number | undefined,
): Promise<void> {
  const view = progressView(process.stdout, (p) => p.metadata.name);
  const latest = new Map<string, StoredDataProduct>();
  let deleted: string | undefined;
  let end: WatchEnd;
  // One product by field selector; several by their namespace, the others' changes skipped here.
  const selection = names.length === 1 ? { namespace, name: names[0] } : { namespace };
  try {
    end = await watchUntil(
      api,
      selection,
      (change) => {
        if (change.type === 'SYNCED') {
          const present = new Set(change.objects.map((p) => p.metadata.name));
          deleted = names.find((name) => !present.has(name));
          return deleted !== undefined;
        }
        const name = change.object.metadata.name;
        if (!names.includes(name)) return false;
        if (change.type === 'DELETED') {
          deleted = name;
          return true;
        }
        latest.set(name, change.object);
        view.show(change.object);
        return names.every((n) => {
          const product = latest.get(n);
          return product !== undefined && isReady(product);
        });
      },
      timeoutSeconds,
    );
  } finally {
    view.stop();
  }
  if (end === 'done' && deleted === undefined) return;
  if (end === 'interrupted') {
    process.exitCode = 130;
    return;
  }
  if (deleted !== undefined) {
    process.stderr.write(`error: dataproduct/${deleted} was deleted\n`);
  } else {
    for (const name of names) {
      const product = latest.get(name);
      if (product !== undefined && isReady(product)) continue;
      process.stderr.write(
        `error: dataproduct/${name} is not Ready after ${timeoutSeconds}s` +
          `${product === undefined ? '' : ` (${progressDetail(product)})`}\n`,
      );
    }
  }
  process.exitCode = 1;
}

// ---------------------------------------------------------------------------------------------
// publish: a file of any size, checked whole, then sent in batches, in order, one at a time

/** One event of a file: its JSON text and where it is in the file. */
interface FileEvent {
  text: string;
  /** 0-based position among the file's events. */
  index: number;
  /** 1-based line of an NDJSON file; absent in a JSON file, whose events are named by pointer. */
  line?: number;
}

/** A file of events, read in two passes: `check` reads it whole and sends nothing; `events` streams it. */
interface EventFile {
  /** Checks every event's JSON syntax (throws {@link FileError}); answers how many events there are. */
  check(): Promise<number>;
  events(): AsyncIterable<FileEvent>;
}

/** A problem of the file itself, found before anything is sent: `message` starts with where it is. */
class FileError extends Error {
  override name = 'FileError';
}

/** What the API confirmed so far: events appended, events already there, and the last one. */
interface PublishTally {
  appended: number;
  duplicates: number;
  lastOffset?: string;
  /** The last confirmed event of the file. */
  last?: FileEvent;
}

const NDJSON = 'application/x-ndjson';
const NOT_BLANK = /\S/;
// ignoreBOM keeps a BOM where it is: only the file's first line may start with one.
const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Where an event is, for a user: `line 1700` of an NDJSON file, `/1699` (a JSON pointer) of a JSON array. */
function placeOf(event: FileEvent, pointer = ''): string {
  return event.line === undefined
    ? `/${event.index}${pointer}`
    : `line ${event.line}${pointer ? ` ${pointer}` : ''}`;
}

/**
 * A JSON.parse error with where it is: `line 1700, column 62: not valid JSON: Expected ...`.
 * `line` is the file line of an NDJSON event (parsed alone); without it, the parser's line counts.
 */
function syntaxProblem(err: unknown, line?: number): string {
  const message = err instanceof Error ? err.message : String(err);
  const at = /\s*in JSON at position \d+(?: \(line (\d+) column (\d+)\))?/.exec(message);
  const lineNo = line ?? at?.[1];
  const column = at?.[2] === undefined ? '' : `, column ${at[2]}`;
  const shown = at === null ? message : message.replace(at[0], '');
  return `${lineNo === undefined ? '' : `line ${lineNo}${column}: `}not valid JSON: ${shown}`;
}

function describeValue(value: unknown): string {
  if (value === null) return 'null';
  return Array.isArray(value) ? 'an array' : `a ${typeof value}`;
}

/** The lines of a file as bytes, streamed, split at '\n' (a byte that never occurs inside a UTF-8 character). */
async function* fileLines(path: string): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    let start = 0;
    let end: number;
    while ((end = chunk.indexOf(10, start)) !== -1) {
      pending.push(chunk.subarray(start, end));
      yield pending.length === 1 ? pending[0] : Buffer.concat(pending);
      pending = [];
      start = end + 1;
    }
    if (start < chunk.length) pending.push(chunk.subarray(start));
  }
  yield Buffer.concat(pending);
}

/** The events of an NDJSON file, streamed: one per non-blank line, as the API reads NDJSON. */
async function* ndjsonEvents(path: string): AsyncGenerator<FileEvent> {
  let line = 0;
  let index = 0;
  for await (const bytes of fileLines(path)) {
    line++;
    let text: string;
    try {
      text = UTF8.decode(bytes);
    } catch {
      throw new FileError(`line ${line}: not valid UTF-8`);
    }
    if (line === 1 && text.startsWith('\uFEFF')) text = text.slice(1);
    if (text.endsWith('\r')) text = text.slice(0, -1);
    if (NOT_BLANK.test(text)) yield { text, index: index++, line };
  }
}

/** Throws a {@link FileError} unless the NDJSON line is a JSON object. */
function checkLine(event: FileEvent): void {
  let value: unknown;
  try {
    value = JSON.parse(event.text);
  } catch (err) {
    throw new FileError(syntaxProblem(err, event.line));
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new FileError(`${placeOf(event)}: an event must be a JSON object, not ${describeValue(value)}`);
  }
}

/** An NDJSON file: checked line by line, then streamed again to send it; never held whole. */
function ndjsonFile(path: string): EventFile {
  return {
    async check() {
      let count = 0;
      for await (const event of ndjsonEvents(path)) {
        checkLine(event);
        count++;
      }
      return count;
    },
    events: () => ndjsonEvents(path),
  };
}

/** A JSON file, one event or an array of them: parsed whole (a JSON array cannot be split unparsed). */
function jsonFile(path: string): EventFile {
  let loaded: FileEvent[] | undefined;
  const load = async (): Promise<FileEvent[]> => {
    let text: string;
    try {
      text = UTF8.decode(await readFile(path));
    } catch (err) {
      if (err instanceof TypeError) throw new FileError('is not valid UTF-8');
      throw err;
    }
    let value: unknown;
    try {
      value = JSON.parse(text.startsWith('\uFEFF') ? text.slice(1) : text);
    } catch (err) {
      throw new FileError(syntaxProblem(err));
    }
    const values = Array.isArray(value) ? (value as unknown[]) : [value];
    return values.map((event, index) => {
      if (typeof event !== 'object' || event === null || Array.isArray(event)) {
        throw new FileError(`/${index}: an event must be a JSON object, not ${describeValue(event)}`);
      }
      return { text: JSON.stringify(event), index };
    });
  };
  return {
    check: async () => (loaded ??= await load()).length,
    async *events() {
      yield* (loaded ??= await load());
    },
  };
}

/** `cannot be read: ENOENT: ...` for a file system error (a missing file, a directory), else undefined. */
function unreadable(err: unknown): string | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && err instanceof Error ? `cannot be read: ${err.message}` : undefined;
}

/** Splits events into batches of at most `limits.events` events and `limits.bytes` bytes as NDJSON, in order. */
async function* batchesOf(
  events: AsyncIterable<FileEvent>,
  limits: BatchLimits,
): AsyncGenerator<FileEvent[]> {
  let batch: FileEvent[] = [];
  let bytes = 0;
  for await (const event of events) {
    const size = Buffer.byteLength(event.text) + 1;
    // An event larger than the byte limit goes alone: the API judges it (too-large, with its place).
    if (batch.length > 0 && (batch.length >= limits.events || bytes + size > limits.bytes)) {
      yield batch;
      batch = [];
      bytes = 0;
    }
    batch.push(event);
    bytes += size;
  }
  if (batch.length > 0) yield batch;
}

/** Shows `orders: 1500/2500 events sent` on a terminal while publishing; nothing in logs and pipes. */
function publishProgress(stream: string, total: number): { update(sent: number): void; done(): void } {
  const tty = process.stderr.isTTY;
  return {
    update: (sent) => {
      if (tty) process.stderr.write(`\r${stream}: ${sent}/${total} events sent`);
    },
    done: () => {
      if (tty) process.stderr.write('\r\x1b[K');
    },
  };
}

function tallyLine(stream: string, tally: PublishTally): string {
  return (
    `${stream}: ${tally.appended} appended, ${tally.duplicates} already there` +
    (tally.lastOffset === undefined ? '' : ` (last offset ${tally.lastOffset})`)
  );
}

/**
 * `publish`: checks the whole file first (a syntax error sends nothing), then appends it in
 * batches within `limits`, in order, one request at a time. The event log drops an event whose
 * `source` + `id` it already holds, across batches as within one, so re-running the command
 * (after a failure, or twice) stores nothing twice.
 */
async function publishFile(api: ApiClient, stream: string, path: string, limits: BatchLimits): Promise<void> {
  const file = /\.json$/i.test(path) ? jsonFile(path) : ndjsonFile(path);
  let total: number;
  try {
    total = await file.check();
  } catch (err) {
    const problem = err instanceof FileError ? err.message : unreadable(err);
    if (problem === undefined) throw err;
    process.stderr.write(
      `error: ${path} ${problem}\n${stream}: nothing was published (the file is checked whole before any event is sent)\n`,
    );
    process.exitCode = 1;
    return;
  }
  const tally: PublishTally = { appended: 0, duplicates: 0 };
  if (total === 0) {
    // Still asked, so the API judges the stream name as it would with events.
    await api.publish(stream, '', NDJSON);
    process.stdout.write(`${tallyLine(stream, tally)}\n`);
    return;
  }
  const progress = publishProgress(stream, total);
  let batch: FileEvent[] | undefined;
  try {
    for await (batch of batchesOf(file.events(), limits)) {
      const result = await api.publish(stream, batch.map((e) => e.text).join('\n'), NDJSON);
      tally.duplicates += result.duplicates.length;
      tally.appended += result.offsets.length - result.duplicates.length;
      tally.lastOffset = result.offsets[result.offsets.length - 1] ?? tally.lastOffset;
      tally.last = batch[batch.length - 1];
      progress.update(tally.appended + tally.duplicates);
      batch = undefined;
    }
  } catch (err) {
    progress.done();
    process.stderr.write(publishFailure({ stream, path, limits, tally, batch, err }).join('\n') + '\n');
    process.exitCode = 1;
    return;
  }
  progress.done();
  process.stdout.write(`${tallyLine(stream, tally)}\n`);
}

/** What a failed publish tells the user: the error, where in the file, what is stored, and that re-running is safe. */
function publishFailure(failed: {
  stream: string;
  path: string;
  limits: BatchLimits;
  tally: PublishTally;
  batch: FileEvent[] | undefined;
  err: unknown;
}): string[] {
  const { stream, tally, err } = failed;
  const lines =
    err instanceof ApiError
      ? batchProblem(err, failed)
      : [`error: ${err instanceof Error ? err.message : String(err)}`];
  // A 4xx answer rejected the whole batch (an append is all or nothing); otherwise it may be stored.
  const rejected = err instanceof ApiError && err.problem.status < 500;
  const after = rejected ? 'nothing after them was stored' : 'the events after them may or may not be stored';
  if (tally.last === undefined) {
    lines.push(`${stream}: ${rejected ? 'nothing was stored' : 'nothing was confirmed stored'}`);
  } else {
    const stored = tally.appended + tally.duplicates;
    lines.push(
      `${stream}: the ${stored} events up to ${failed.path} ${placeOf(tally.last)} were stored before the error ` +
        `(${tally.appended} appended, ${tally.duplicates} already there, last offset ${tally.lastOffset}); ${after}`,
    );
  }
  if (tally.last !== undefined || !rejected) {
    lines.push(
      'Running the same command again (after fixing the cause) is safe: events already stored are ' +
        'recognised by their source + id and not stored twice.',
    );
  }
  return lines;
}

/** An API error about one batch, its batch-relative pointers (`/3/type`) turned into places in the file. */
function batchProblem(
  err: ApiError,
  failed: { path: string; limits: BatchLimits; batch: FileEvent[] | undefined },
): string[] {
  const { problem } = err;
  const batch = failed.batch ?? [];
  const eventAt = (pointer: string): { event: FileEvent; rest: string } | undefined => {
    const m = /^\/(\d+)(.*)$/.exec(pointer);
    if (m === null) return undefined;
    const event = batch[Number(m[1])];
    return event === undefined ? undefined : { event, rest: m[2] };
  };
  const failedEvent = typeof problem.index === 'number' ? batch[problem.index] : undefined;
  if (failedEvent === undefined) {
    const lines = [formatApiError(err)];
    if (problem.code === 'batch-too-large' && typeof problem.limit === 'number') {
      lines.push(
        `  the API takes at most ${problem.limit} events per request: use --batch-events ${problem.limit}`,
      );
    } else if (problem.code === 'too-large') {
      lines.push(
        `  each request holds up to ${failed.limits.bytes} bytes: use a --batch-bytes below the limit`,
      );
    }
    return lines;
  }
  const lines = [`error: ${problem.title}: ${failed.path} ${placeOf(failedEvent)}`];
  for (const e of problem.errors ?? []) {
    const at = eventAt(e.pointer);
    lines.push(`  ${at === undefined ? e.pointer : placeOf(at.event, at.rest)}: ${e.message}`);
  }
  if (problem.errors === undefined || problem.errors.length === 0) lines.push(`  ${problem.detail}`);
  return lines;
}

/** The connection as `describe` shows it: every part but the password, and how to get that. */
async function describedConnection(api: ApiClient, namespace: string, name: string): Promise<unknown> {
  try {
    // The password is left out, and so is the envelope (apiVersion, kind, metadata) describe shows already.
    const parts: Record<string, unknown> = { ...(await api.connection(namespace, name)) };
    for (const key of ['password', 'apiVersion', 'kind', 'metadata']) delete parts[key];
    const shown = new URL(String(parts.uri));
    if (shown.password) shown.password = '***';
    return {
      ...parts,
      uri: shown.toString(),
      password: `(hidden: offtake -n ${namespace} connection ${name} password)`,
    };
  } catch (err) {
    if (err instanceof ApiError && err.problem.code === 'not-found') {
      return 'not ready yet (its store is provisioned first: see the StoreReady condition)';
    }
    throw err;
  }
}

function table(items: Awaited<ReturnType<ApiClient['list']>>, withNamespace: boolean): string {
  const rows = items.map((p) => [
    ...(withNamespace ? [p.metadata.namespace] : []),
    p.metadata.name,
    p.status?.phase ?? 'Pending',
    p.spec.target.type,
    p.status?.conditions?.find((c) => c.type === 'Ready')?.status ?? 'Unknown',
    age(p.metadata.creationTimestamp),
  ]);
  const header = [...(withNamespace ? ['NAMESPACE'] : []), 'NAME', 'PHASE', 'TARGET', 'READY', 'AGE'];
  if (rows.length === 0) return 'No DataProducts found.\n';
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => r[i].length)));
  return (
    all
      .map((r) =>
        r
          .map((c, i) => c.padEnd(widths[i]))
          .join('   ')
          .trimEnd(),
      )
      .join('\n') + '\n'
  );
}

function age(timestamp: string): string {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(timestamp)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}
