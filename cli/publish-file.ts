/**
 * `offtake publish`: a file of events of any size, checked whole, then sent in batches, in order,
 * one request at a time; a failure says where in the file and what is stored.
 */
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { ApiError, formatApiError, type ApiClient } from './api-client.ts';

/** How much one `publish` request carries at most: a batch closes at whichever limit it reaches first. */
export interface BatchLimits {
  /** Events per request. */
  events: number;
  /** Bytes of a request body. */
  bytes: number;
}

/** Well within the API's default limits (1000 events, a 4 MiB body) and quick to retry. */
export const DEFAULT_PUBLISH_BATCH: BatchLimits = Object.freeze({ events: 500, bytes: 1024 * 1024 });

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
export async function publishFile(
  api: ApiClient,
  stream: string,
  path: string,
  limits: BatchLimits,
): Promise<void> {
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
