package ratelimit

import "github.com/redis/go-redis/v9"

// epoch2017 is the epoch of the stored value: seconds since 2017-01-01
// 00:00:00 UTC, as redis_rate (the limiter before this one) stores them.
const epoch2017 = 1483228800

// reserve is the limiter: one script, on Redis's clock, that either
// reserves the next free slot or refuses without changing anything.
//
// KEYS[1]  the app's rate key (keyspace.Rate)
// ARGV[1]  interval between slots, µs (integer)
// ARGV[2]  the caller's reach: the furthest ahead it may reserve, µs
//
//	(integer; maxWait for Interactive, at most the batch horizon
//	for Batch)
//
// The key holds the time the next free slot opens ("TAT"), as decimal
// seconds since 2017-01-01 with six decimals: the unit and meaning
// redis_rate v10 used with burst 1, so a worker of either version reads
// what the other wrote (see the package doc). A value that is not a
// string, not a number, not finite, or more than an hour past the
// caller's reach is someone else's or corrupt: it counts as no value and
// is overwritten by the reservation. (No caller reserves more than an hour
// ahead, so however short a caller's reach, what a caller of any lane
// stored passes this test.)
//
// It returns {1, delay µs, slot µs since 2017} when it reserved the slot
// that opens delay after now, or {0, delay µs, 0} when that slot lies
// beyond the caller's reach (nothing stored). The script is the same for
// both lanes (and as before lanes): only the reach differs.
var reserve = redis.NewScript(`
if redis.replicate_commands then redis.replicate_commands() end
local key = KEYS[1]
local interval = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = (tonumber(t[1]) - 1483228800) * 1000000 + tonumber(t[2])

local nxt = now
local v = redis.pcall('GET', key)
if type(v) == 'string' then
  local tat = tonumber(v)
  if tat and tat == tat then
    tat = math.floor(tat * 1000000 + 0.5)
    if tat > nxt and tat <= now + max_wait + interval + 3600000000 then
      nxt = tat
    end
  end
end

local delay = nxt - now
if delay > max_wait then
  return {0, delay, 0}
end
local tat = nxt + interval
local s = math.floor(tat / 1000000)
redis.call('SET', key, string.format('%d.%06d', s, tat - s * 1000000),
  'PX', math.ceil((tat - now) / 1000) + 1000)
return {1, delay, nxt}
`)
