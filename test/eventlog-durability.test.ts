/**
 * What "acknowledged" means, tested on redis-server processes this test owns: the start-up
 * check of the durability setting, events acknowledged under `appendfsync always` surviving a
 * kill -9 and a restart from the AOF (and, as a control, the same crash losing them without
 * an AOF), and `replicas` waiting for a replica with WAIT.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { Redis } from 'ioredis';
import type { Offset, LogEvent } from '../lib/eventlog/event-log.ts';
import { RedisEventLog } from '../lib/eventlog/redis-event-log.ts';
import { isOfftakeError } from '../lib/errors.ts';
import { RedisProcess, deleteKeys, eventually, orderEvent, uniquePrefix } from './eventlog-helpers.ts';

const servers: RedisProcess[] = [];
const clients: Redis[] = [];

after(async () => {
  for (const client of clients) client.disconnect();
  await Promise.all(servers.map((s) => s.stop()));
});

async function start(args: string[]): Promise<RedisProcess> {
  const server = await RedisProcess.start(args);
  servers.push(server);
  return server;
}

function track<T extends Redis>(client: T): T {
  clients.push(client);
  return client;
}

/**
 * Appends batches from several concurrent producers until the server dies under them; returns
 * every acknowledged event (id -> offset). The server is killed after `killAfter` acknowledged
 * batches, while other appends are still in flight.
 */
async function appendUntilKilled(
  server: RedisProcess,
  log: RedisEventLog,
  killAfter: number,
): Promise<Map<string, Offset>> {
  const acknowledged = new Map<string, Offset>();
  let batches = 0;
  let next = 0;
  let killing: Promise<void> | undefined;
  const producer = async () => {
    for (;;) {
      const events = Array.from({ length: 20 }, () => orderEvent(next++));
      try {
        const { offsets } = await log.append('crash', events);
        events.forEach((e, i) => acknowledged.set(e.id, offsets[i]));
      } catch {
        return; // the server is gone: this batch was not acknowledged
      }
      if (++batches === killAfter) killing = server.kill9();
    }
  };
  await Promise.all([producer(), producer(), producer(), producer()]);
  await killing;
  return acknowledged;
}

async function readAll(log: RedisEventLog, stream: string): Promise<Map<string, LogEvent>> {
  const byId = new Map<string, LogEvent>();
  for await (const batch of log.scan(stream)) for (const e of batch) byId.set(e.id, e);
  return byId;
}

describe('durability setting', () => {
  it('refuses to start with "always" on a server that fsyncs every second, saying what to change', async () => {
    const server = await start(['--appendonly', 'yes', '--appendfsync', 'everysec']);
    const redis = track(server.client());
    await assert.rejects(
      RedisEventLog.create({ redis, prefix: 'x', durability: { mode: 'always' } }),
      /needs Redis with appendonly yes and appendfsync always.*appendfsync everysec.*CONFIG SET appendfsync always/,
    );
    const log = await RedisEventLog.create({ redis, prefix: 'x', durability: { mode: 'everysec' } });
    await log.close();
  });

  it('refuses "everysec" without an AOF and accepts "none"', async () => {
    const server = await start(['--appendonly', 'no']);
    const redis = track(server.client());
    await assert.rejects(
      RedisEventLog.create({ redis, prefix: 'x', durability: { mode: 'everysec' } }),
      /appendonly yes and appendfsync everysec or always.*appendonly no/,
    );
    await assert.rejects(
      RedisEventLog.create({ redis, prefix: 'x', durability: { mode: 'fast' as 'none' } }),
      /unknown/,
    );
    const log = await RedisEventLog.create({ redis, prefix: 'x', durability: { mode: 'none' } });
    await log.close();
  });
});

describe('crash safety', () => {
  it('keeps every event acknowledged under appendfsync always through kill -9 and a restart from the AOF', async () => {
    const server = await start(['--appendonly', 'yes', '--appendfsync', 'always']);
    const log = await RedisEventLog.create({
      redis: track(server.client()),
      prefix: 'crash',
      durability: { mode: 'always' },
    });
    const acknowledged = await appendUntilKilled(server, log, 50);
    await log.close();
    assert.ok(acknowledged.size >= 1000, `acknowledged ${acknowledged.size}`);

    await server.restart();
    const reopened = await RedisEventLog.create({
      redis: track(server.client()),
      prefix: 'crash',
      durability: { mode: 'always' },
    });
    const stored = await readAll(reopened, 'crash');
    const missing = [...acknowledged].filter(([id, offset]) => stored.get(id)?.offset !== offset);
    assert.deepEqual(missing, [], `${missing.length} of ${acknowledged.size} acknowledged events were lost`);
    // Retrying an acknowledged event after the restart is still recognised as a duplicate.
    const [id, offset] = [...acknowledged][0];
    const retry = await reopened.append('crash', [orderEvent(Number(id.slice('order-'.length)))]);
    assert.deepEqual(retry, { offsets: [offset], duplicates: [true] });
    await reopened.close();
  });

  it('(control) loses acknowledged events in the same crash when the server keeps no AOF', async () => {
    const server = await start(['--appendonly', 'no']);
    const log = await RedisEventLog.create({
      redis: track(server.client()),
      prefix: 'crash',
      durability: { mode: 'none' },
    });
    const acknowledged = await appendUntilKilled(server, log, 20);
    await log.close();
    await server.restart();
    const reopened = await RedisEventLog.create({
      redis: track(server.client()),
      prefix: 'crash',
      durability: { mode: 'none' },
    });
    const streams = await reopened.listStreams();
    assert.ok(acknowledged.size > 0);
    assert.deepEqual(streams, [], 'without persistence the crash takes everything: the test above can tell');
    await reopened.close();
  });
});

describe('replicas', () => {
  it('waits for the replica before answering, and says so when the replicas do not confirm', async () => {
    const primary = await start(['--repl-diskless-sync-delay', '0']);
    const replica = await start(['--replicaof', '127.0.0.1', String(primary.port)]);
    const replicaClient = track(replica.client());
    await eventually(
      async () => /master_link_status:up/.test(await replicaClient.info('replication')),
      'the replica to sync',
    );
    const prefix = uniquePrefix('replicas');
    const redis = track(primary.client());
    const log = await RedisEventLog.create({
      redis,
      prefix,
      durability: { mode: 'none', replicas: 1, timeoutMs: 5000 },
    });
    const { offsets } = await log.append('replicated', [orderEvent(1), orderEvent(2)]);
    // Acknowledged means the replica has it: read it there, right away.
    const onReplica = await replicaClient.xrange(`${prefix}:stream:{replicated}`, '-', '+');
    assert.deepEqual(
      onReplica.map(([id]) => id),
      offsets,
    );

    const demanding = await RedisEventLog.create({
      redis,
      prefix,
      durability: { mode: 'none', replicas: 2, timeoutMs: 200 },
    });
    let error: unknown;
    try {
      await demanding.append('replicated', [orderEvent(3)]);
    } catch (err) {
      error = err;
    }
    assert.ok(isOfftakeError(error, 'unavailable'), String(error));
    assert.equal(error.status, 503);
    assert.equal(error.extensions.replicasAcknowledged, 1);
    const [kept] = error.extensions.offsets as Offset[];
    // The batch is on the primary; the safe retry finds it instead of storing it again.
    const retry = await log.append('replicated', [orderEvent(3)]);
    assert.deepEqual(retry, { offsets: [kept], duplicates: [true] });
    await Promise.all([log.close(), demanding.close()]);
    await deleteKeys(redis, prefix);
  });
});
