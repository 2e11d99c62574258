/**
 * The user's day-to-day commands, talking to a running Offtake API over HTTP:
 * `apply -f`, `get [-w]`, `describe`, `status [--watch]`, `connection`, `delete [--wait]`, `publish`
 * (a file of any size, in batches).
 */
import { readFile } from 'node:fs/promises';
import { InvalidArgumentError, type Command } from 'commander';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import type { StoredDataProduct } from '../lib/resource-store/resource-store.ts';
import { ApiClient, ApiError, formatApiError, type ProductSelection } from './api-client.ts';
import { followProducts, type ProductChange } from './product-watch.ts';
import { isReady, progressDetail, progressView, type ProductLabel } from './progress-view.ts';
import { showDeadLetters } from './dead-letters.ts';
import { DEFAULT_PUBLISH_BATCH, publishFile } from './publish-file.ts';
import { textTable } from './text-table.ts';

interface GlobalOpts {
  server: string;
  namespace: string;
}

/** The API token the commands send (env OFFTAKE_API_TOKEN: never a flag, so it stays out of shell history and `ps`). */
const API_TOKEN = process.env.OFFTAKE_API_TOKEN || undefined;

function client(cmd: Command): { api: ApiClient; namespace: string } {
  const opts = cmd.optsWithGlobals<GlobalOpts>();
  return { api: new ApiClient(opts.server, API_TOKEN), namespace: opts.namespace };
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
            deadLetters:
              p.status?.deadLetters === undefined
                ? undefined
                : {
                    ...p.status.deadLetters,
                    ...(p.status.deadLetters.count
                      ? { show: `offtake -n ${namespace} deadletters ${name}` }
                      : {}),
                  },
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
    .command('deadletters')
    .description(
      "show the events a product's pipeline could not process: their source offset, the expression or target that failed, and why",
    )
    .argument('<name>')
    .option('--limit <n>', 'show at most this many (the oldest first)', positiveInteger, 100)
    .option(
      '--build <n>',
      'the build whose dead letters to show (default: the one readers use)',
      positiveInteger,
    )
    .option('-o, --output <format>', 'table, json (one letter per line, with the event) or yaml', 'table')
    .action(async (name: string, opts: { limit: number; build?: number; output: string }, cmd: Command) =>
      run(async () => {
        const { api, namespace } = client(cmd);
        if (opts.output !== 'table' && opts.output !== 'json' && opts.output !== 'yaml') {
          throw new InvalidArgumentError(`-o must be table, json or yaml, not ${opts.output}`);
        }
        await showDeadLetters(api, namespace, name, { ...opts, output: opts.output });
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
  return textTable(header, rows);
}

function age(timestamp: string): string {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(timestamp)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${Math.round(s / 3600)}h`;
  return `${Math.round(s / 86400)}d`;
}
