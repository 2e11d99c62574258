/**
 * The Lua scripts of the Redis event log. Each runs atomically inside Redis, which is what
 * makes a batch all-or-nothing and a retry idempotent. The `#!lua` shebang matters: Redis then
 * checks memory once before the script starts instead of failing a write half-way through.
 *
 * A stream entry has one field: the event's type as the name (so a type filter needs no
 * parsing) and its CloudEvents JSON envelope as the value.
 *
 * Keys: `KEYS[1]` is the stream registry (a hash: stream name -> JSON config with `createdAt`,
 * `epoch` and `retention`), `KEYS[2]` the stream. Dedup keys are derived inside the script from
 * the stream's `epoch`, so deleting and re-creating a stream forgets old ids without scanning.
 */
import { createHash } from 'node:crypto';

const CONFIG = `
local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000), t[1] .. string.format('%06d', tonumber(t[2]))
end

local function loadConfig(create)
  local raw = redis.call('HGET', KEYS[1], ARGV[1])
  if raw then return cjson.decode(raw) end
  if not create then return nil end
  local ms, micros = nowMs()
  local cfg = { createdAt = ms, epoch = micros }
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(cfg))
  return cfg
end

local function applyRetention(cfg)
  local r = cfg.retention
  if type(r) ~= 'table' then return 0 end
  local dropped = 0
  if r.maxLength then
    dropped = dropped + redis.call('XTRIM', KEYS[2], 'MAXLEN', '=', string.format('%d', r.maxLength))
  end
  if r.maxAgeSeconds then
    local ms = nowMs()
    local minMs = ms - r.maxAgeSeconds * 1000
    if minMs > 0 then
      dropped = dropped + redis.call('XTRIM', KEYS[2], 'MINID', '=', string.format('%d', minMs) .. '-0')
    end
  end
  return dropped
end
`;

/**
 * Appends a batch. ARGV: stream name, dedup key base, dedup window in ms (0 = no dedup), then
 * per event: dedup field (`<source length>:<source><id>`), type, envelope JSON. Returns per
 * event its new offset, or `=<offset>` of the original for a duplicate (also one earlier in
 * the same batch).
 *
 * Dedup fields live in one hash per window-long time bucket; a batch looks in the current and
 * the previous bucket, and a bucket expires two windows after it began. So an id is remembered
 * for at least one window and at most two, with a few commands per batch instead of per event.
 */
export const APPEND = `#!lua
${CONFIG}
local function chunked(command, key, items, step)
  local out = {}
  for first = 1, #items, step do
    local last = math.min(first + step - 1, #items)
    local part = redis.call(command, key, unpack(items, first, last))
    if type(part) == 'table' then for j = 1, #part do out[#out + 1] = part[j] end end
  end
  return out
end

local cfg = loadConfig(true)
local window = tonumber(ARGV[3])
local n = (#ARGV - 3) / 3
local fields = {}
for i = 1, n do fields[i] = ARGV[1 + i * 3] end
local originals = {}
local bucket, bucketKey
if window > 0 then
  bucket = math.floor(nowMs() / window)
  local base = ARGV[2] .. cfg.epoch .. ':'
  bucketKey = base .. string.format('%d', bucket)
  local current = chunked('HMGET', bucketKey, fields, 1000)
  local previous = chunked('HMGET', base .. string.format('%d', bucket - 1), fields, 1000)
  for i = 1, n do originals[i] = current[i] or previous[i] end
end
local seen = {}
local recorded = {}
local out = {}
local added = 0
for i = 1, n do
  local field = fields[i]
  local original = originals[i] or seen[field]
  if original then
    out[i] = '=' .. original
  else
    local offset = redis.call('XADD', KEYS[2], '*', ARGV[2 + i * 3], ARGV[3 + i * 3])
    out[i] = offset
    added = added + 1
    if bucketKey then
      seen[field] = offset
      recorded[#recorded + 1] = field
      recorded[#recorded + 1] = offset
    end
  end
end
if #recorded > 0 then
  chunked('HSET', bucketKey, recorded, 2000)
  redis.call('PEXPIREAT', bucketKey, string.format('%d', (bucket + 2) * window))
end
if added > 0 then applyRetention(cfg) end
return out
`;

/**
 * Sets or applies a stream's retention. ARGV: stream name, then `set` with the retention JSON
 * (empty = remove), or `apply`. Returns the number of events dropped, -1 for an unknown
 * stream on `apply`.
 */
export const RETENTION = `#!lua
${CONFIG}
if ARGV[2] == 'set' then
  local cfg = loadConfig(true)
  if ARGV[3] == '' then cfg.retention = nil else cfg.retention = cjson.decode(ARGV[3]) end
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(cfg))
  return applyRetention(cfg)
end
local cfg = loadConfig(false)
if not cfg then return -1 end
return applyRetention(cfg)
`;

/** Deletes a stream and its registration. ARGV: stream name. Returns 1 when it existed. */
export const DELETE = `#!lua
local existed = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return existed
`;

/** A script with its SHA-1, for EVALSHA. */
export interface LuaScript {
  source: string;
  sha: string;
}

/** Pairs a script source with its SHA-1. */
export function luaScript(source: string): LuaScript {
  return { source, sha: createHash('sha1').update(source).digest('hex') };
}
