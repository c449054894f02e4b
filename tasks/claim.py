"""The claim script of :class:`tasks.hotpath.BatchWorker`: one call per poll claims as many
ready jobs as there are free slots, within one Lua script (see the comment below)."""

# KEYS: queue, abort set. ARGV: now (ms), slots, in-progress ms, scan limit,
# in-progress/job/retry key prefixes, abort cut-off (ms: older aborts are dropped), check
# aborts (1/0), this worker's claim token. A claimed job's in-progress key holds
# "<token>:<try>", which its finish checks (see claim_mark): a worker that resumes after its
# claim expired and the job ran elsewhere does not overwrite that run's result.
# KEYS 3 and 4: the paused queues (control.PAUSED) and the breaker (control.BREAKER); ARGV
# 11: the prefix of the job ids the open breaker holds back; ARGV 12: 1 when this worker
# holds them already (it saw the failures that open the breaker). A paused queue gives nothing
# (aborts are still read); an open breaker skips the jobs it holds and hands out the rest.
# Returns {{id, score, payload or false, try, aborted}, ...}, the ids to abort and
# {paused, breaker open, breaker epoch, next probe at (ms)}.
CLAIM = """
local queue, abort_key = KEYS[1], KEYS[2]
local now, slots, scan_limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
local ttl, in_progress, job_prefix, retry_prefix = ARGV[3], ARGV[5], ARGV[6], ARGV[7]
local aborts_on, token, held = ARGV[9] == '1', ARGV[10], ARGV[11]
local paused = redis.call('HEXISTS', KEYS[3], queue)
local breaker = redis.call('HMGET', KEYS[4], 'state', 'epoch', 'next_probe_at')
local hold = breaker[1] == 'open' or ARGV[12] == '1'
if paused == 1 then slots = 0 end
local claimed, offset = {}, 0
local page = math.min(math.max(slots * 2, 100), 1000)  -- unpack() takes a few thousand
while #claimed < slots and offset < scan_limit do
  local ids = redis.call('ZRANGEBYSCORE', queue, '-inf', now, 'WITHSCORES', 'LIMIT', offset, page)
  local wanted, keys, marks = {}, {}, {}
  for i = 1, #ids, 2 do
    if not (hold and string.sub(ids[i], 1, #held) == held) then
      wanted[#wanted + 1] = i
      keys[#keys + 1] = in_progress .. ids[i]
    end
  end
  if #keys > 0 then
    marks = redis.call('MGET', unpack(keys))  -- one call for the page, running or not
  end
  for n, i in ipairs(wanted) do
    local id = ids[i]
    if not marks[n] then
      local try = redis.call('INCR', retry_prefix .. id)
      redis.call('EXPIRE', retry_prefix .. id, 88400)
      redis.call('PSETEX', in_progress .. id, ttl, token .. ':' .. try)
      local aborted = 0
      if aborts_on then aborted = redis.call('ZREM', abort_key, id) end
      claimed[#claimed + 1] = {id, ids[i + 1], redis.call('GET', job_prefix .. id), try, aborted}
      if #claimed >= slots then break end
    end
  end
  if #ids < page * 2 then break end
  offset = offset + page
end
local aborting = {}
if aborts_on then
  aborting = redis.call('ZRANGE', abort_key, 0, -1)
  redis.call('ZREMRANGEBYSCORE', abort_key, '-inf', '(' .. ARGV[8])
end
return {claimed, aborting, {paused, breaker[1] == 'open' and 1 or 0, tonumber(breaker[2]) or 0,
                            math.floor((tonumber(breaker[3]) or 0) * 1000)}}
"""
