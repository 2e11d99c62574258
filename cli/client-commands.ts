/**
 * The user's day-to-day commands, talking to a running Offtake API over HTTP:
 * `apply -f`, `get`, `describe`, `delete`, `publish`.
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { ApiClient, ApiError } from './api-client.ts';

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
    .action(
      async (
        name: string | undefined,
        opts: { allNamespaces?: boolean; selector?: string; output: string },
        cmd: Command,
      ) =>
        run(async () => {
          const { api, namespace } = client(cmd);
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
    .description('show a DataProduct: spec summary, conditions, seed progress')
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
            conditions: p.status?.conditions ?? [],
            seed: p.status?.seed,
            lag: p.status?.lag,
          }),
        );
      }),
    );

  program
    .command('delete')
    .description('delete a DataProduct (its store is torn down)')
    .argument('<name>')
    .action(async (name: string, _opts: unknown, cmd: Command) =>
      run(async () => {
        const { api, namespace } = client(cmd);
        const pending = await api.delete(namespace, name);
        process.stdout.write(
          `dataproduct/${name} ${pending ? 'deletion requested (tearing down)' : 'deleted'}\n`,
        );
      }),
    );

  program
    .command('publish')
    .description('append the events in an NDJSON (or JSON array) file to a stream of the event log')
    .argument('<stream>')
    .argument('<file>')
    .action(async (stream: string, file: string, _opts: unknown, cmd: Command) =>
      run(async () => {
        const { api } = client(cmd);
        const text = await readFile(file, 'utf8');
        const type = /\.json$/i.test(file) ? 'application/json' : 'application/x-ndjson';
        const result = await api.publish(stream, text, type);
        const duplicates = result.duplicates.length;
        process.stdout.write(
          `${stream}: ${result.offsets.length - duplicates} appended, ${duplicates} already there` +
            (result.offsets.length > 0 ? ` (last offset ${result.offsets[result.offsets.length - 1]})` : '') +
            '\n',
        );
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
