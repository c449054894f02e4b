"""The breaker's Redis scripts (:mod:`snippet_service.control`): each state change is one
script, so that every worker and web process sees the same breaker, and every change is
recorded in its history."""

EVENT = """
local function event(kind, now, reason, extra)
  local e = {kind = kind, at = now, reason = reason}
  for k, v in pairs(extra or {}) do e[k] = v end
  redis.call('LPUSH', KEYS[3], cjson.encode(e))
  redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[#ARGV]) - 1)
end
local function epoch() return redis.call('HINCRBY', KEYS[1], 'epoch', 1) end
local function state() return redis.call('HMGET', KEYS[1], 'state', 'epoch', 'next_probe_at') end
"""

# KEYS: breaker, counts, history. ARGV: now, reason, by, first probe delay, channel, cap.
OPEN = EVENT + """
local now = tonumber(ARGV[1])
if redis.call('HGET', KEYS[1], 'state') == 'open' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'open', 'since', ARGV[1], 'reason', ARGV[2],
           'probes', 0, 'consecutive', 0, 'next_probe_at', tostring(now + tonumber(ARGV[4])),
           'last_probe_at', '', 'last_probe_error', '')
epoch()
redis.call('DEL', KEYS[2])
event('opened', now, ARGV[2], {by = ARGV[3]})
redis.call('PUBLISH', ARGV[5], 'control')
return 1
"""

# KEYS: breaker, counts, history. ARGV: now, reason, by, channel, cap.
# Returns the time it had opened at (a string), or false when it was not open.
CLOSE = EVENT + """
local now = tonumber(ARGV[1])
local b = redis.call('HMGET', KEYS[1], 'state', 'since', 'probes')
if b[1] ~= 'open' then return false end
redis.call('HSET', KEYS[1], 'state', 'closed', 'since', ARGV[1], 'reason', ARGV[2],
           'consecutive', 0, 'next_probe_at', '')
epoch()
redis.call('DEL', KEYS[2])
event('closed', now, ARGV[2], {by = ARGV[3], opened_at = tonumber(b[2]),
                               probes = tonumber(b[3]) or 0})
redis.call('PUBLISH', ARGV[4], 'control')
return b[2]
"""

# A worker's outcomes since its last report. KEYS: breaker, counts, history. ARGV: now,
# successes, failures, failures since its last success (or all, if none), failures to open
# (0: off), error rate to open (0: off), window seconds, minimum calls, last error, first
# probe delay, channel, cap. Returns {open (0/1), epoch, next probe at (ms)}.
REPORT = EVENT + """
local now = tonumber(ARGV[1])
local ok, bad, trailing = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local limit, rate, window = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local function answer()
  local s = state()
  return {s[1] == 'open' and 1 or 0, tonumber(s[2]) or 0,
          math.floor((tonumber(s[3]) or 0) * 1000)}
end
if redis.call('HGET', KEYS[1], 'state') == 'open' or ok + bad == 0 then return answer() end
local consecutive = trailing
if ok == 0 then consecutive = (tonumber(redis.call('HGET', KEYS[1], 'consecutive')) or 0) + bad end
redis.call('HSET', KEYS[1], 'consecutive', consecutive)
local second = math.floor(now)
redis.call('HINCRBY', KEYS[2], tostring(second), ok + bad)
if bad > 0 then redis.call('HINCRBY', KEYS[2], second .. 'f', bad) end
local calls, failures, stale = 0, 0, {}
local counts = redis.call('HGETALL', KEYS[2])
for i = 1, #counts, 2 do
  local name = counts[i]
  local at = tonumber((string.gsub(name, 'f', '')))
  if at <= second - window then stale[#stale + 1] = name
  elseif string.sub(name, -1) == 'f' then failures = failures + tonumber(counts[i + 1])
  else calls = calls + tonumber(counts[i + 1]) end
end
if #stale > 0 then redis.call('HDEL', KEYS[2], unpack(stale)) end
redis.call('EXPIRE', KEYS[2], window + 60)
local reason = nil
if limit > 0 and consecutive >= limit then
  reason = string.format('%d consecutive transient failures', consecutive)
elseif rate > 0 and calls >= tonumber(ARGV[8]) and failures >= rate * calls then
  reason = string.format('%d of %d calls failed in %d s', failures, calls, window)
end
if reason then
  if ARGV[9] ~= '' then reason = reason .. '; last: ' .. ARGV[9] end
  redis.call('HSET', KEYS[1], 'state', 'open', 'since', ARGV[1], 'reason', reason,
             'probes', 0, 'consecutive', 0,
             'next_probe_at', tostring(now + tonumber(ARGV[10])),
             'last_probe_at', '', 'last_probe_error', '')
  epoch()
  redis.call('DEL', KEYS[2])
  event('opened', now, reason, {by = 'workers'})
  redis.call('PUBLISH', ARGV[11], 'control')
end
return answer()
"""

# KEYS: breaker. ARGV: now, how long the probe may take. Grants the probe (returns its
# number) when the breaker is open and the next probe is due, and holds off the others.
PROBE_DUE = """
local now = tonumber(ARGV[1])
local b = redis.call('HMGET', KEYS[1], 'state', 'next_probe_at')
if b[1] ~= 'open' or now < (tonumber(b[2]) or 0) then return 0 end
redis.call('HSET', KEYS[1], 'next_probe_at', tostring(now + tonumber(ARGV[2])),
           'last_probe_at', ARGV[1])
return redis.call('HINCRBY', KEYS[1], 'probes', 1)
"""

# KEYS: breaker, counts, history. ARGV: now, error, next probe in, number, cap.
PROBE_FAILED = EVENT + """
if redis.call('HGET', KEYS[1], 'state') ~= 'open' then return 0 end
redis.call('HSET', KEYS[1], 'last_probe_error', ARGV[2],
           'next_probe_at', tostring(tonumber(ARGV[1]) + tonumber(ARGV[3])))
event('probe', tonumber(ARGV[1]), ARGV[2], {ok = false, probe = tonumber(ARGV[4]),
                                            next_in = tonumber(ARGV[3])})
return 1
"""
