/**
 * `offtake deadletters <name>`: the events a product's pipeline could not process — where each
 * came from, the expression or target that failed and why — read from the product's dead-letter
 * stream (`<namespace>.<name>.dlq`, of the build readers use unless `--build` says otherwise).
 */
import { stringify as toYaml } from 'yaml';
import { deadLetterStream } from '../worker/pipeline-keys.ts';
import { ApiError, type ApiClient, type LogEventJson } from './api-client.ts';
import { textTable } from './text-table.ts';

/** What the command shows, and how. */
export interface DeadLetterOptions {
  /** Most letters shown (from the oldest on). */
  limit: number;
  /** The build whose letters to read (default: the active one). */
  build?: number;
  output: 'table' | 'json' | 'yaml';
}

/** What a dead letter's data holds (see `worker/dead-letter-queue.ts`). */
interface LetterData {
  stream?: string;
  offset?: string;
  pointer?: string;
  expression?: string;
  column?: number;
  error?: string;
}

/** Events per API page (the API's most). */
const PAGE = 1000;

/** Prints the product's dead letters; answers how many there were. */
export async function showDeadLetters(
  api: ApiClient,
  namespace: string,
  name: string,
  opts: DeadLetterOptions,
): Promise<number> {
  const product = await api.get(namespace, name);
  // The status names the stream of the build readers use; another build's is derived.
  const stream =
    opts.build === undefined
      ? (product.status?.deadLetters?.stream ??
        deadLetterStream({ namespace, name, build: product.status?.builds?.active?.build ?? 1 }))
      : deadLetterStream({ namespace, name, build: opts.build });
  const letters: LogEventJson[] = [];
  let cursor: string | undefined;
  let more = false;
  try {
    do {
      const page = await api.readEvents(stream, {
        cursor,
        limit: Math.min(PAGE, opts.limit + 1 - letters.length),
      });
      letters.push(...page.events);
      cursor = page.cursor ?? undefined;
    } while (cursor !== undefined && letters.length <= opts.limit);
  } catch (err) {
    // No stream: nothing ever failed.
    if (!(err instanceof ApiError && err.problem.code === 'stream-not-found')) throw err;
  }
  if (letters.length > opts.limit) {
    letters.length = opts.limit;
    more = true;
  }
  if (opts.output === 'json') {
    for (const letter of letters) process.stdout.write(`${JSON.stringify(letter)}\n`);
  } else if (opts.output === 'yaml') {
    process.stdout.write(toYaml(letters));
  } else if (letters.length === 0) {
    process.stdout.write(`No dead letters: every event ${name} read went through (stream ${stream}).\n`);
  } else {
    process.stdout.write(table(letters));
  }
  if (more) {
    process.stderr.write(`(the first ${opts.limit} shown; more in stream ${stream}: use --limit)\n`);
  }
  return letters.length;
}

function table(letters: readonly LogEventJson[]): string {
  const header = ['TIME', 'SOURCE', 'WHERE', 'ERROR'];
  const rows = letters.map((letter) => {
    const data = (letter.data ?? {}) as LetterData;
    const where =
      data.pointer === undefined
        ? ''
        : `${data.pointer}${data.column === undefined ? '' : ` (column ${data.column})`}`;
    return [letter.time, `${data.stream ?? '?'}@${data.offset ?? '?'}`, where, oneLine(data.error ?? '')];
  });
  return textTable(header, rows);
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}
