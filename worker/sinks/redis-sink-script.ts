/**
 * The Lua script that applies one batch of a {@link RedisSink}: guards, writes, TTLs and the
 * checkpoint, atomically inside Redis. The `#!lua` shebang makes Redis check memory once before
 * the script starts instead of failing a write half-way; and every read that could fail (a key
 * of the wrong type) happens in a first pass before the first write, so a batch is all or nothing.
 *
 * KEYS: [1] the checkpoint hash, [2] the tombstone index (at the bare tombstone prefix: a sorted
 * set of the tombstone keys scored by their offset's milliseconds, which the purge script
 * walks; it exists once the sink wrote any tombstone, so a sink that never deletes skips every
 * tombstone lookup),
 * then per record i (from 1) [2i+1] its data key and [2i+2] its tombstone key. ARGV: [1] `hash` or `json`, [2] TTL in seconds (`0` = none), [3] checkpoint name
 * (empty = none), [4] checkpoint JSON, then per record: op (`u` / `d`), offset ms, offset seq,
 * stream, n, and n values (hash: field/value pairs; json: the document). Returns how many
 * records won their guard and were written.
 *
 * Positions compare like `compareRecords`: offsets as unsigned decimals (canonical, so a longer
 * one is larger; equal lengths up to 15 digits are exact as Lua numbers, longer ones compare
 * byte-wise), then stream names byte-wise — never with Lua's `<` on strings, which follows the
 * server's locale.
 */
import { createHash } from 'node:crypto';

/** Lua comparisons both scripts use: byte-wise strings, and canonical unsigned decimals. */
const COMPARISONS = `
local function bytesLess(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

local function digitsLess(a, b)
  if #a ~= #b then return #a < #b end
  if #a <= 15 then return tonumber(a) < tonumber(b) end
  return bytesLess(a, b)
end
`;

const SOURCE = `#!lua
${COMPARISONS}
local function before(ams, aseq, ast, bms, bseq, bst)
  if ams ~= bms then return digitsLess(ams, bms) end
  if aseq ~= bseq then return digitsLess(aseq, bseq) end
  return bytesLess(ast, bst)
end

local hash = ARGV[1] == 'hash'
local ttl = tonumber(ARGV[2])
local checkpoint = ARGV[3]

if checkpoint ~= '' then
  local t = redis.call('TYPE', KEYS[1])['ok']
  if t ~= 'none' and t ~= 'hash' then
    return redis.error_reply('WRONGTYPE the checkpoint key holds a ' .. t .. ', not a hash')
  end
end

-- Pass 1: read every guard; nothing is written yet.
local index = redis.call('TYPE', KEYS[2])['ok']
local tombstones = index ~= 'none'
local winners = {}
local a, k = 5, 3
local argc = #ARGV
while a <= argc do
  local ms, seq, st = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local gms, gseq, gst
  local tombstone = false
  local exists = false
  if hash then
    local v = redis.call('HMGET', KEYS[k], '_offset', '_stream')
    if v[1] then
      gms, gseq = string.match(v[1], '^(%d+)%-(%d+)$')
      gst = v[2] or ''
      exists = true
    end
  else
    local v = redis.call('GET', KEYS[k])
    if v then gms, gseq, gst = string.match(v, '^{"_offset":"(%d+)%-(%d+)","_stream":"([^"]*)"') end
  end
  if not gms and tombstones then
    local t = redis.call('GET', KEYS[k + 1])
    if t then
      gms, gseq, gst = string.match(t, '^(%d+)%-(%d+) (.*)$')
      tombstone = true
    end
  end
  if not gms or before(gms, gseq, gst, ms, seq, st) then
    winners[#winners + 1] = { a, k, tombstone, exists }
  end
  a = a + 5 + tonumber(ARGV[a + 4])
  k = k + 2
end

-- Pass 2: write the winners.
for _, w in ipairs(winners) do
  local a, k = w[1], w[2]
  local offset = ARGV[a + 1] .. '-' .. ARGV[a + 2]
  local st = ARGV[a + 3]
  if ARGV[a] == 'u' then
    if hash then
      -- An existing hash loses the fields the new record lacks; a new key needs no DEL.
      if w[4] then redis.call('DEL', KEYS[k]) end
      redis.call('HSET', KEYS[k], '_offset', offset, '_stream', st, unpack(ARGV, a + 5, a + 4 + tonumber(ARGV[a + 4])))
      if ttl > 0 then redis.call('EXPIRE', KEYS[k], ttl) end
    elseif ttl > 0 then
      redis.call('SET', KEYS[k], ARGV[a + 5], 'EX', ttl)
    else
      redis.call('SET', KEYS[k], ARGV[a + 5])
    end
    if w[3] then
      redis.call('DEL', KEYS[k + 1])
      redis.call('ZREM', KEYS[2], KEYS[k + 1])
    end
  else
    redis.call('DEL', KEYS[k])
    -- A marker string of an earlier version becomes the index.
    if index == 'string' then
      redis.call('DEL', KEYS[2])
      index = 'zset'
    end
    redis.call('ZADD', KEYS[2], tonumber(ARGV[a + 1]), KEYS[k + 1])
    if ttl > 0 then
      redis.call('SET', KEYS[k + 1], offset .. ' ' .. st, 'EX', ttl)
    else
      redis.call('SET', KEYS[k + 1], offset .. ' ' .. st)
    end
  end
end

if checkpoint ~= '' then redis.call('HSET', KEYS[1], checkpoint, ARGV[4]) end
return #winners
`;

/**
 * The script that purges tombstones older than a time. KEYS: [1] the tombstone index. ARGV: [1]
 * the bound (milliseconds of an offset, decimal), [2] the most index entries to look at. Deletes
 * each indexed tombstone whose offset's milliseconds are below the bound and drops index entries
 * whose tombstone is gone (expired, or replaced by a newer upsert); a tombstone written again
 * since it was indexed carries its newer time and stays. Returns { tombstones deleted, index
 * entries looked at }: fewer looked at than asked means the purge is complete.
 */
const PURGE_SOURCE = `#!lua
${COMPARISONS}
if redis.call('TYPE', KEYS[1])['ok'] ~= 'zset' then return { 0, 0 } end
local entries = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local purged = 0
for _, key in ipairs(entries) do
  local t = redis.call('GET', key)
  local ms = t and string.match(t, '^(%d+)%-')
  if ms and digitsLess(ms, ARGV[1]) then
    redis.call('DEL', key)
    purged = purged + 1
    redis.call('ZREM', KEYS[1], key)
  elseif not ms then
    redis.call('ZREM', KEYS[1], key)
  else
    -- Scored below the bound but not older (a score rounded off a very long number): kept, and
    -- rescored so the next look starts past it.
    redis.call('ZADD', KEYS[1], tonumber(ARGV[1]), key)
  end
end
return { purged, #entries }
`;

/** The tombstone purge script's source and SHA-1 (for EVALSHA). */
export const REDIS_PURGE_SCRIPT = Object.freeze({
  source: PURGE_SOURCE,
  sha: createHash('sha1').update(PURGE_SOURCE).digest('hex'),
});

/** The batch script's source and SHA-1 (for EVALSHA). */
export const REDIS_SINK_SCRIPT = Object.freeze({
  source: SOURCE,
  sha: createHash('sha1').update(SOURCE).digest('hex'),
});
