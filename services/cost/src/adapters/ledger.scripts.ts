/**
 * The ledger's Lua scripts. Each runs atomically in Redis, which is what makes the ledger exactly-once and the
 * budgets impossible to overspend: no other client sees (or changes) the state between a script's reads and writes.
 *
 * Key layout (P = the configured prefix, e.g. `cost:`; on Redis Cluster give it a hash tag such as `{cost}:` so
 * every key lands in one slot, since the scripts derive keys at run time):
 * - `P seen:<requestId>`                 request already counted (TTL ≥ the usage stream's max age)
 * - `P alerts:<requestId>`               alerts that request raised and that may not be published yet (JSON)
 * - `P u:<scope>:<id>:<day>`             hash `<model>|c|r|i|o|k|e` → cost nano-USD, requests, input, output,
 *                                        cached tokens, errors, for scope key/team/user/model
 * - `P spent:<scope>:<id>:<periodKey>`   nano-USD spent by a key/team/user in a day or month
 * - `P budgets`                          hash `<scope>:<id>:<period>` → `limitNano|hard|t:nano,…`
 * - `P alert:<scope>:<id>:<period>:<periodKey>:<t>`  threshold t already alerted in that period
 * - `P held:<scope>:<id>:<periodKey>`    zset of reservations `<reservationId>|<nano>` scored by expiry (ms)
 * - `P heldsum:<scope>:<id>:<periodKey>` nano-USD held by those reservations
 * - `P heldkeys`                         set of `<scope>:<id>:<periodKey>` with reservations, for the sweep
 * - `P res:<reservationId>`              hash m = zset member, h = newline-separated held bases
 */

/** Releases expired reservations of one hard budget's period (lazy expiry). */
const releaseExpired = `
local function releaseExpired(P, base, now)
  local zk = P .. 'held:' .. base
  local gone = redis.call('ZRANGEBYSCORE', zk, '-inf', now)
  if #gone == 0 then return end
  local sum = 0
  for _, m in ipairs(gone) do sum = sum + tonumber(string.match(m, '|(%d+)$')) end
  redis.call('ZREMRANGEBYSCORE', zk, '-inf', now)
  redis.call('DECRBY', P .. 'heldsum:' .. base, string.format('%d', sum))
end
`;

/** Removes a reservation's holds; returns 1 when anything was still held (not released or expired before). */
const settle = `
local function settle(P, resId)
  local rk = P .. 'res:' .. resId
  local r = redis.call('HMGET', rk, 'm', 'h')
  if not r[1] then return 0 end
  local amount = string.match(r[1], '|(%d+)$')
  local released = 0
  for base in string.gmatch(r[2], '[^\\n]+') do
    if redis.call('ZREM', P .. 'held:' .. base, r[1]) == 1 then
      redis.call('DECRBY', P .. 'heldsum:' .. base, amount)
      released = 1
    end
  end
  redis.call('DEL', rk)
  return released
end
`;

/**
 * Records a batch of priced usage events. ARGV: prefix, seen TTL (s), ledger TTL (s), day-spent TTL (s),
 * month-spent TTL (s), alert TTL (s), then 13 fields per event: requestId, reservationId, day, month, model,
 * cost nano, input, output, cached, error (0/1), keyId, team, user.
 *
 * Per event, guarded by `SET seen NX`: settles its reservation, adds it to every usage hash and spent counter,
 * and marks each budget threshold its cost reached (SET NX per threshold and period). The alerts raised are
 * stored under `alerts:<requestId>`. Returns one string per event: `n` (newly counted) or `d` (already counted),
 * followed by the JSON of the alerts still to publish for that request, if any.
 *
 * The usage hashes' increments are summed over the batch and written once per hash field at the end (the batch's
 * events mostly share their key, team and model: ~6 HINCRBYs per event became ~6 per batch). Nothing reads those
 * hashes inside the script, so the sums are what the per-event increments would have left.
 */
export const RECORD_SCRIPT = `${settle}
local P = ARGV[1]
local seenTtl, ledgerTtl, dayTtl, monthTtl, alertTtl = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local scopes = { 'key', 'team', 'user', 'model' }
local out = {}
-- Usage-hash increments of the whole batch: hash -> { fields in first-seen order, field -> sum }, and for each hash
-- whether a model's request counter was incremented (rearm its retention when that field is new) or a re-report
-- added to it (rearm only if it has none).
local sums, hashes = {}, {}
local function add(h, f, n)
  local t = sums[h]
  if not t then
    t = { fields = {}, by = {}, counters = {}, check = false }
    sums[h] = t
    hashes[#hashes + 1] = h
  end
  if not t.by[f] then
    t.by[f] = 0
    t.fields[#t.fields + 1] = f
  end
  t.by[f] = t.by[f] + n
  return t
end
local i = 7
while i + 12 <= #ARGV do
  local rid, resId, day, month, model = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local costStr = ARGV[i + 5]
  local cost = tonumber(costStr)
  local inT, outT, cachedT = tonumber(ARGV[i + 6]), tonumber(ARGV[i + 7]), tonumber(ARGV[i + 8])
  local counts = { { 'i', ARGV[i + 6] }, { 'o', ARGV[i + 7] }, { 'k', ARGV[i + 8] }, { 'e', ARGV[i + 9] }, { 'c', costStr } }
  local ids = { ARGV[i + 10], ARGV[i + 11], ARGV[i + 12], model }
  i = i + 13
  local seenKey = P .. 'seen:' .. rid
  local prev = redis.call('GET', seenKey)
  local counted = false
  local first = false
  if not prev then
    counted = true
    first = true
  else
    -- The same request reported again (the gateway's event and the router's, in either order): only what this
    -- report adds over the largest counts seen so far is billed, and the request is not counted twice.
    local pi, po, pk, pc = string.match(prev, '^(%d+)|(%d+)|(%d+)|(%d+)$')
    if pi then
      local di = math.max(inT - tonumber(pi), 0)
      local dO = math.max(outT - tonumber(po), 0)
      local dk = math.max(cachedT - tonumber(pk), 0)
      local dc = math.max(cost - tonumber(pc), 0)
      if di + dO + dk + dc > 0 then
        counted = true
        inT, outT, cachedT, cost = math.max(inT, tonumber(pi)), math.max(outT, tonumber(po)),
          math.max(cachedT, tonumber(pk)), math.max(cost, tonumber(pc))
        costStr = string.format('%d', dc)
        counts = { { 'i', string.format('%d', di) }, { 'o', string.format('%d', dO) }, { 'k', string.format('%d', dk) },
          { 'c', costStr } }
        cost = dc
      end
    end
  end
  if counted then
    redis.call('SET', seenKey, string.format('%d|%d|%d|%d', inT, outT, cachedT,
      first and cost or (cost + tonumber(string.match(prev, '|(%d+)$')))), 'EX', seenTtl)
    if resId ~= '' then settle(P, resId) end
    for s = 1, 4 do
      if ids[s] ~= '' then
        local h = P .. 'u:' .. scopes[s] .. ':' .. ids[s] .. ':' .. day
        local f = model .. '|'
        local t
        if first then
          t = add(h, f .. 'r', 1)
          t.counters[f .. 'r'] = true
        end
        for _, c in ipairs(counts) do
          if c[2] ~= '0' then t = add(h, f .. c[1], tonumber(c[2])) end
        end
        if not first and t then t.check = true end
      end
    end
    local alerts = {}
    if cost > 0 then
      local fields, bases, spents, periods, pks = {}, {}, {}, {}, {}
      for s = 1, 3 do
        if ids[s] ~= '' then
          for _, pp in ipairs({ { 'day', day, dayTtl }, { 'month', month, monthTtl } }) do
            local base = scopes[s] .. ':' .. ids[s] .. ':' .. pp[2]
            local spent = redis.call('INCRBY', P .. 'spent:' .. base, costStr)
            if spent == cost then redis.call('EXPIRE', P .. 'spent:' .. base, pp[3]) end
            fields[#fields + 1] = scopes[s] .. ':' .. ids[s] .. ':' .. pp[1]
            bases[#bases + 1] = base
            spents[#spents + 1] = spent
            periods[#periods + 1] = { scopes[s], ids[s], pp[1], pp[2] }
          end
        end
      end
      if #fields > 0 then
        local recs = redis.call('HMGET', P .. 'budgets', unpack(fields))
        for j = 1, #fields do
          local rec = recs[j]
          if rec then
            local limit, hard, ths = string.match(rec, '^(%d+)|(%d)|(.*)$')
            local spent = spents[j]
            for t, n in string.gmatch(ths or '', '([^:,]+):(%d+)') do
              local amount = tonumber(n)
              -- Only the event whose cost crosses the amount raises it; SET NX keeps it once per period even
              -- when the budget is changed and the amount crossed again.
              if spent >= amount and spent - cost < amount then
                local key = P .. 'alert:' .. fields[j] .. ':' .. periods[j][4] .. ':' .. t
                if redis.call('SET', key, '1', 'NX', 'EX', alertTtl) then
                  alerts[#alerts + 1] = { s = periods[j][1], i = periods[j][2], p = periods[j][3], k = periods[j][4],
                    sp = string.format('%d', spent), l = limit, t = t, h = hard, key = key }
                end
              end
            end
          end
        end
      end
    end
    if #alerts > 0 then
      local js = cjson.encode(alerts)
      redis.call('SET', P .. 'alerts:' .. rid, js, 'EX', seenTtl)
      out[#out + 1] = 'n' .. js
    else
      out[#out + 1] = 'n'
    end
  else
    out[#out + 1] = 'd' .. (redis.call('GET', P .. 'alerts:' .. rid) or '')
  end
end
for _, h in ipairs(hashes) do
  local t = sums[h]
  local rearm = false
  for _, f in ipairs(t.fields) do
    local n = t.by[f]
    local after = redis.call('HINCRBY', h, f, string.format('%d', n))
    -- A request counter that is now what this batch added was new: that model's first request in the hash (or the
    -- hash is new), so its retention is (re)armed.
    if t.counters[f] and after == n then rearm = true end
  end
  if rearm or (t.check and redis.call('TTL', h) < 0) then redis.call('EXPIRE', h, ledgerTtl) end
end
return out
`;

/**
 * Holds `amount` against every hard budget among the candidates, all or nothing. ARGV: prefix, reservationId,
 * amount nano, now ms, expiry ms, reservation TTL (s), then pairs of budget field and held base
 * (`<scope>:<id>:<period>`, `<scope>:<id>:<periodKey>`).
 * Returns {0} when no candidate is a hard budget (nothing held), {1, amount} when held (or already held under
 * this id: a retried call never holds twice), {-1, field, limit, spent, held} when a budget would be overspent.
 */
export const RESERVE_SCRIPT = `${releaseExpired}
local P, resId, amount, now, expiry, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local rk = P .. 'res:' .. resId
local existing = redis.call('HGET', rk, 'm')
if existing then return { 1, string.match(existing, '|(%d+)$') } end
local fields, bases = {}, {}
for i = 7, #ARGV, 2 do
  fields[#fields + 1] = ARGV[i]
  bases[#bases + 1] = ARGV[i + 1]
end
if #fields == 0 then return { 0 } end
local recs = redis.call('HMGET', P .. 'budgets', unpack(fields))
local hard = {}
local n = tonumber(amount)
for j = 1, #fields do
  local rec = recs[j]
  if rec then
    local limit, h = string.match(rec, '^(%d+)|(%d)|')
    if h == '1' then
      releaseExpired(P, bases[j], now)
      local spent = tonumber(redis.call('GET', P .. 'spent:' .. bases[j]) or '0')
      local held = tonumber(redis.call('GET', P .. 'heldsum:' .. bases[j]) or '0')
      if spent + held + n > tonumber(limit) then
        return { -1, fields[j], limit, string.format('%d', spent), string.format('%d', held) }
      end
      hard[#hard + 1] = bases[j]
    end
  end
end
if #hard == 0 then return { 0 } end
local member = resId .. '|' .. amount
for _, base in ipairs(hard) do
  redis.call('ZADD', P .. 'held:' .. base, expiry, member)
  redis.call('INCRBY', P .. 'heldsum:' .. base, amount)
  -- Holds outlive their period by a day at most; the sweep and lazy expiry release them long before.
  redis.call('EXPIRE', P .. 'held:' .. base, ttl)
  redis.call('EXPIRE', P .. 'heldsum:' .. base, ttl)
  redis.call('SADD', P .. 'heldkeys', base)
end
redis.call('HSET', rk, 'm', member, 'h', table.concat(hard, '\\n'))
redis.call('EXPIRE', rk, ttl)
return { 1, amount }
`;

/** Releases a reservation. ARGV: prefix, reservationId. Returns 1 when something was still held. */
export const RELEASE_SCRIPT = `${settle}
return settle(ARGV[1], ARGV[2])
`;

/**
 * Releases every expired reservation. ARGV: prefix, now ms. Forgets bases with nothing held.
 * Returns the number of reservation holds still in force.
 */
export const SWEEP_SCRIPT = `${releaseExpired}
local P, now = ARGV[1], ARGV[2]
local held = 0
for _, base in ipairs(redis.call('SMEMBERS', P .. 'heldkeys')) do
  releaseExpired(P, base, now)
  local n = redis.call('ZCARD', P .. 'held:' .. base)
  if n == 0 then
    redis.call('SREM', P .. 'heldkeys', base)
    redis.call('DEL', P .. 'heldsum:' .. base)
  end
  held = held + n
end
return held
`;

/**
 * Reads a budget's state for its current period, releasing expired holds first. ARGV: prefix, field, base,
 * now ms. Returns {record or false, spent, held}.
 */
export const STATUS_SCRIPT = `${releaseExpired}
local P, field, base, now = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
releaseExpired(P, base, now)
return { redis.call('HGET', P .. 'budgets', field) or false, redis.call('GET', P .. 'spent:' .. base) or '0',
  redis.call('GET', P .. 'heldsum:' .. base) or '0' }
`;

/**
 * Stores a budget and raises the thresholds its current period's spending already reached (a budget set or
 * lowered below what was spent is crossed now, not at the next request). ARGV: prefix, field, record, base,
 * period key, alert TTL (s). Returns the JSON of the alerts raised ('' when none), in the record script's form.
 */
export const SET_BUDGET_SCRIPT = `
local P, field, rec, base, pk, alertTtl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
redis.call('HSET', P .. 'budgets', field, rec)
-- The gateway calls Reserve only for scopes listed in hard-scopes (any period with a hard budget).
do
  local sc, sid = string.match(field, '^(%a+):(.*):%a+$')
  local anyHard = false
  for _, per in ipairs({ 'day', 'month' }) do
    local r = redis.call('HGET', P .. 'budgets', sc .. ':' .. sid .. ':' .. per)
    if r and string.match(r, '^%d+|(%d)|') == '1' then anyHard = true end
  end
  if anyHard then redis.call('SADD', P .. 'hard-scopes', sc .. ':' .. sid)
  else redis.call('SREM', P .. 'hard-scopes', sc .. ':' .. sid) end
end
local spent = tonumber(redis.call('GET', P .. 'spent:' .. base) or '0')
if spent <= 0 then return '' end
local limit, hard, ths = string.match(rec, '^(%d+)|(%d)|(.*)$')
local scope, id, period = string.match(field, '^(%a+):(.*):(%a+)$')
local alerts = {}
for t, n in string.gmatch(ths, '([^:,]+):(%d+)') do
  if spent >= tonumber(n) then
    local key = P .. 'alert:' .. field .. ':' .. pk .. ':' .. t
    if redis.call('SET', key, '1', 'NX', 'EX', alertTtl) then
      alerts[#alerts + 1] = { s = scope, i = id, p = period, k = pk, sp = string.format('%d', spent), l = limit,
        t = t, h = hard, key = key }
    end
  end
end
if #alerts == 0 then return '' end
return cjson.encode(alerts)
`;
