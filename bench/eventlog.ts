/**
 * Event log benchmark (`npm run bench -- eventlog`; runs on import). Measures, in one run on the
 * same Redis, with a realistic ~300-byte event:
 * 1. append throughput through HTTP (NDJSON and JSON batches) and the library, against the raw
 *    ceiling of pipelined XADD from Node;
 * 2. replay throughput of a BENCH_EVENTS-long stream (default 1,000,000) through the library's
 *    range read (`scan`), against a raw XRANGE loop — both one that only fetches and one that
 *    also decodes each event — with the reader's heap sampled during the replay;
 * 3. publish-to-follower latency (HTTP POST to SSE follower) at 5,000 events/s.
 * Human lines first; the last line is one JSON object with every figure and ratio.
 */
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import express from 'express';
import { Redis } from 'ioredis';
import { problemHandler } from '../api/problem.ts';
import { streamsRouter } from '../api/routes/streams.ts';
import { loadConfig } from '../lib/config.ts';
import { prepareEvents } from '../lib/eventlog/cloudevents.ts';
import type { EventInput } from '../lib/eventlog/event-log.ts';
import { RedisEventLog } from '../lib/eventlog/redis-event-log.ts';
import { createLogger } from '../lib/logger.ts';

// A benchmark is an entry point, like the CLI: it reads its own knobs.
const TOTAL = Number(process.env.BENCH_EVENTS ?? 1_000_000);
const APPEND_EVENTS = Math.min(TOTAL, 200_000);
const BATCH = 1000;
const CONCURRENCY = 4;
const LATENCY_RATE = 5000;
const LATENCY_SECONDS = 10;

const config = loadConfig(process.env);
const prefix = `bench:eventlog:${process.pid}`;
const redis = new Redis(config.redisUrl);
const log = await RedisEventLog.create({ redis, prefix, durability: { mode: 'none' } });
const logger = createLogger('silent');
const app = express();
app.use('/v1/streams', streamsRouter({ eventLog: log, logger, limits: { maxBodyBytes: 4 * 1024 * 1024 } }));
app.use(problemHandler(logger));
const server = app.listen(0, '127.0.0.1');
await once(server, 'listening');
const port = (server.address() as AddressInfo).port;
const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY * 2 });

const round = (n: number, digits = 0) => Number(n.toFixed(digits));
const rate = (events: number, ms: number) => round((events / ms) * 1000);

function event(i: number, tag: string): EventInput {
  const n = String(i).padStart(10, '0');
  return {
    specversion: '1.0',
    id: `${tag}-${n}`,
    source: 'urn:offtake:bench:checkout',
    type: i % 4 === 0 ? 'OrderCancelled' : 'OrderPlaced',
    time: '2024-06-01T12:00:00.000Z',
    subject: `customer-${String(i % 50_000).padStart(6, '0')}`,
    datacontenttype: 'application/json',
    data: { orderId: `o-${n}`, customerId: `c-${i % 50_000}`, region: 'EU', amount: 123.45, currency: 'EUR' },
  };
}

async function parallel(count: number, work: (index: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < count) await work(next++);
    }),
  );
}

function post(path: string, contentType: string, body: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        path,
        method: 'POST',
        agent,
        headers: { 'content-type': contentType, 'content-length': body.length },
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const settings = await redis.config('GET', 'append*');
const setting = (name: string) => settings[settings.indexOf(name) + 1];
const appendonly = setting('appendonly');
const appendfsync = setting('appendfsync');

/** Waits out a background AOF rewrite (its fork competes for the CPU and stalls Redis). */
async function quiesce(): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const info = await redis.info('persistence');
    if (/aof_rewrite_in_progress:0/.test(info) && /aof_rewrite_scheduled:0/.test(info)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}
const sampleBytes = Buffer.byteLength(prepareEvents([event(1, 'evt')], log.limits)[0].json);
console.log(
  `eventlog bench: ${TOTAL} events to replay, ${APPEND_EVENTS} per append run, event ${sampleBytes} bytes as stored`,
);
console.log(
  `redis ${config.redisUrl.replace(/\/\/.*@/, '//')} appendonly=${appendonly ?? '?'} appendfsync=${appendfsync ?? '?'}`,
);

// 1. Append -------------------------------------------------------------------------------------
const batches = APPEND_EVENTS / BATCH;
const storedJson = prepareEvents(
  Array.from({ length: BATCH }, (_, i) => event(i, 'raw')),
  log.limits,
).map((p) => p.json);

async function rawAppend(round: number): Promise<number> {
  await quiesce();
  const start = performance.now();
  await parallel(batches, async () => {
    const pipeline = redis.pipeline();
    for (const json of storedJson) pipeline.xadd(`${prefix}:raw-append-${round}`, '*', 'OrderPlaced', json);
    await pipeline.exec();
  });
  return rate(APPEND_EVENTS, performance.now() - start);
}

async function httpAppend(
  stream: string,
  contentType: string,
  encode: (events: EventInput[]) => string,
): Promise<number> {
  // Bodies are built before the clock starts: the producer's cost is not the server's.
  const bodies = Array.from({ length: batches }, (_, b) =>
    Buffer.from(encode(Array.from({ length: BATCH }, (_, i) => event(b * BATCH + i, stream)))),
  );
  await quiesce();
  const start = performance.now();
  await parallel(batches, async (b) => {
    const status = await post(`/v1/streams/${stream}/events`, contentType, bodies[b]);
    if (status !== 201) throw new Error(`${contentType} append answered ${status}`);
  });
  return rate(APPEND_EVENTS, performance.now() - start);
}

// Alternate the paths over two rounds and keep each one's best, so a noisy moment decides nothing.
let rawXadd = 0;
let httpNdjson = 0;
let httpJson = 0;
for (let r = 0; r < 2; r++) {
  rawXadd = Math.max(rawXadd, await rawAppend(r));
  httpNdjson = Math.max(
    httpNdjson,
    await httpAppend(
      `bench-ndjson-${r}`,
      'application/x-ndjson',
      (events) => events.map((e) => JSON.stringify(e)).join('\n') + '\n',
    ),
  );
  httpJson = Math.max(
    httpJson,
    await httpAppend(`bench-batch-${r}`, 'application/cloudevents-batch+json', (events) =>
      JSON.stringify(events),
    ),
  );
}
console.log(`append  raw pipelined XADD       ${rawXadd} events/s (ceiling)`);
console.log(
  `append  HTTP NDJSON batches      ${httpNdjson} events/s (${round(httpNdjson / rawXadd, 2)} of ceiling)`,
);
console.log(
  `append  HTTP CloudEvents batches ${httpJson} events/s (${round(httpJson / rawXadd, 2)} of ceiling)`,
);

// 2. Replay -------------------------------------------------------------------------------------
const replayStream = 'bench-replay';
await quiesce();
const fillStart = performance.now();
await parallel(TOTAL / BATCH, async (b) => {
  await log.append(
    replayStream,
    Array.from({ length: BATCH }, (_, i) => event(b * BATCH + i, 'rp')),
  );
});
const libraryAppend = rate(TOTAL, performance.now() - fillStart);
console.log(
  `append  library (fills replay)   ${libraryAppend} events/s (${round(libraryAppend / rawXadd, 2)} of ceiling)`,
);

const replayKey = `${prefix}:stream:{${replayStream}}`;
async function rawReplay(decode: boolean): Promise<number> {
  await quiesce();
  const start = performance.now();
  let count = 0;
  let from = '-';
  for (;;) {
    const entries = await redis.xrange(replayKey, from, '+', 'COUNT', BATCH);
    if (decode) {
      for (const [id, fields] of entries) {
        const e = JSON.parse(fields[1]) as { offset?: string };
        e.offset = id;
        count++;
      }
    } else {
      count += entries.length;
    }
    if (entries.length < BATCH) break;
    from = `(${entries[entries.length - 1][0]}`;
  }
  if (count !== TOTAL) throw new Error(`raw replay saw ${count} of ${TOTAL}`);
  return rate(count, performance.now() - start);
}

async function libraryReplay(): Promise<number> {
  await quiesce();
  const start = performance.now();
  let count = 0;
  for await (const batch of log.scan(replayStream)) count += batch.length;
  if (count !== TOTAL) throw new Error(`library replay saw ${count} of ${TOTAL}`);
  return rate(count, performance.now() - start);
}

// Alternate the readers and keep each one's best run, so a noisy moment does not decide the ratio.
let rawFetch = 0;
let rawDecoded = 0;
let libraryScan = 0;
for (let r = 0; r < 2; r++) {
  rawFetch = Math.max(rawFetch, await rawReplay(false));
  rawDecoded = Math.max(rawDecoded, await rawReplay(true));
  libraryScan = Math.max(libraryScan, await libraryReplay());
}
console.log(`replay  raw XRANGE loop (fetch)  ${rawFetch} events/s`);
console.log(`replay  raw XRANGE loop + decode ${rawDecoded} events/s`);
console.log(
  `replay  library scan             ${libraryScan} events/s (${round(libraryScan / rawDecoded, 2)} of raw+decode, ${round(libraryScan / rawFetch, 2)} of fetch-only)`,
);

// The reader's memory, in a separate untimed pass: the live heap (after a full GC) at every
// tenth of the replay, and the peak of heapUsed and RSS sampled throughout. Flat = no growth.
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;
const mb = (bytes: number) => round(bytes / 1024 / 1024, 1);
gc();
const liveBefore = process.memoryUsage().heapUsed;
const liveAtTenths: number[] = [];
let peakHeap = 0;
let peakRss = 0;
const sample = () => {
  const usage = process.memoryUsage();
  peakHeap = Math.max(peakHeap, usage.heapUsed);
  peakRss = Math.max(peakRss, usage.rss);
};
const sampler = setInterval(sample, 5);
let scanned = 0;
for await (const batch of log.scan(replayStream)) {
  scanned += batch.length;
  sample();
  if (scanned >= ((liveAtTenths.length + 1) * TOTAL) / 10) {
    gc();
    liveAtTenths.push(process.memoryUsage().heapUsed);
  }
}
clearInterval(sampler);
const memory = {
  liveHeapBeforeMB: mb(liveBefore),
  liveHeapAtTenthsMB: liveAtTenths.map(mb),
  liveHeapGrowthMB: mb(Math.max(...liveAtTenths) - liveBefore),
  peakHeapUsedMB: mb(peakHeap),
  peakRssMB: mb(peakRss),
};
console.log(
  `replay  reader live heap ${memory.liveHeapBeforeMB} MB before, at each tenth ${memory.liveHeapAtTenthsMB.join(' / ')} MB; peak heapUsed ${memory.peakHeapUsedMB} MB, peak RSS ${memory.peakRssMB} MB`,
);

// 3. Latency ------------------------------------------------------------------------------------
await quiesce();
const latencyStream = 'bench-latency';
await log.append(latencyStream, [event(0, 'warm')]);
const latencies: number[] = [];
const expected = LATENCY_RATE * LATENCY_SECONDS;
const follower = http.request({
  host: '127.0.0.1',
  port,
  path: `/v1/streams/${latencyStream}/events?follow=true`,
});
follower.end();
const [response] = (await once(follower, 'response')) as [http.IncomingMessage];
response.setEncoding('utf8');
let pending = '';
const allReceived = new Promise<void>((resolve) => {
  response.on('data', (chunk: string) => {
    const now = performance.now();
    pending += chunk;
    let end: number;
    while ((end = pending.indexOf('\n\n')) >= 0) {
      const block = pending.slice(0, end);
      pending = pending.slice(end + 2);
      const line = block.split('\n').find((l) => l.startsWith('data: '));
      if (line === undefined) continue;
      const sentAt = (JSON.parse(line.slice(6)) as { data: { scheduledAt: number } }).data.scheduledAt;
      latencies.push(now - sentAt);
      if (latencies.length === expected) resolve();
    }
  });
});
await new Promise((r) => setTimeout(r, 200)); // the follower pins "now" when it starts

// Each event is stamped with the time it was due, not when it went out: a stalled publisher
// shows up as latency instead of hiding it.
const latencyStart = performance.now();
let published = 0;
const posts: Promise<number>[] = [];
while (published < expected) {
  const due = Math.min(expected, Math.floor(((performance.now() - latencyStart) * LATENCY_RATE) / 1000));
  if (due > published) {
    const events: EventInput[] = [];
    for (; published < due; published++) {
      const e = event(published, 'lat');
      e.data = { ...(e.data as object), scheduledAt: latencyStart + (published * 1000) / LATENCY_RATE };
      events.push(e);
    }
    posts.push(
      post(`/v1/streams/${latencyStream}/events`, 'application/json', Buffer.from(JSON.stringify(events))),
    );
  }
  await new Promise((r) => setTimeout(r, 1));
}
await Promise.all(posts);
await Promise.race([allReceived, new Promise((r) => setTimeout(r, 10_000))]);
const publishSeconds = (performance.now() - latencyStart) / 1000;
follower.destroy();
latencies.sort((a, b) => a - b);
const pct = (p: number) =>
  round(latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? Number.NaN, 2);
const latency = {
  targetPerSec: LATENCY_RATE,
  achievedPerSec: round(expected / publishSeconds),
  received: latencies.length,
  p50Ms: pct(50),
  p99Ms: pct(99),
  maxMs: round(latencies.at(-1) ?? Number.NaN, 2),
};
console.log(
  `latency POST -> SSE follower at ${latency.achievedPerSec} events/s: p50 ${latency.p50Ms} ms, p99 ${latency.p99Ms} ms, max ${latency.maxMs} ms (${latency.received}/${expected} received)`,
);

// Cleanup ---------------------------------------------------------------------------------------
await log.close();
server.closeAllConnections();
server.close();
agent.destroy();
let cursor = '0';
do {
  const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
  cursor = next;
  if (keys.length > 0) await redis.unlink(...keys);
} while (cursor !== '0');
redis.disconnect();

const result = {
  suite: 'eventlog',
  events: TOTAL,
  eventBytes: sampleBytes,
  redis: { appendonly, appendfsync },
  append: {
    events: APPEND_EVENTS,
    batch: BATCH,
    concurrency: CONCURRENCY,
    rawXaddPerSec: rawXadd,
    httpNdjsonPerSec: httpNdjson,
    httpCloudEventsBatchPerSec: httpJson,
    libraryPerSec: libraryAppend,
    ndjsonRatio: round(httpNdjson / rawXadd, 3),
    cloudEventsBatchRatio: round(httpJson / rawXadd, 3),
    goalRatio: 0.5,
  },
  replay: {
    events: TOTAL,
    rawXrangePerSec: rawFetch,
    rawXrangeDecodedPerSec: rawDecoded,
    libraryPerSec: libraryScan,
    ratioVsRawDecoded: round(libraryScan / rawDecoded, 3),
    ratioVsRawFetchOnly: round(libraryScan / rawFetch, 3),
    goalRatio: 0.9,
    memory,
  },
  latency,
};
console.log(JSON.stringify(result));
