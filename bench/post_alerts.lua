-- wrk script: POST Alertmanager v4 notifications built from a pool of alert label sets.
--
-- wrk -s bench/post_alerts.lua URL -- POOL GROUP_SIZE TOKEN RESOLVE_P OUT
--   POOL        lines "fingerprint<TAB>labels JSON<TAB>annotations JSON<TAB>alertname"; lines
--               k*GROUP_SIZE+1 .. (k+1)*GROUP_SIZE form group k (one alertname per group)
--   GROUP_SIZE  alerts per notification (1 or 50)
--   TOKEN       bearer token ("" for none)
--   RESOLVE_P   probability that an alert is sent resolved; the next time it fires, it is a
--               new instance (a later startsAt), so it opens a new incident
--   OUT         file for the journal ids of the 200s and a JSON summary
--
-- Groups are sent round-robin. Each alert of a group is, per notification, a repeat of its
-- current firing instance (what Alertmanager re-sends every group_interval: dedupe makes it a
-- no-op), a resolve, or after a resolve a new instance.

local pool = {}
local ngroups = 0
local next_group = 0
local group_size = 1
local resolve_p = 0.1
local epoch = {}
local was_resolved = {}
local stamp_cache = {}
local BASE = 1795338000 -- 2026-11-22T09:00:00Z
local ZERO = "0001-01-01T00:00:00Z"

ids = {}
statuses = {}
out_path = ""

local function stamp(seconds)
  local s = stamp_cache[seconds]
  if s == nil then
    s = os.date("!%Y-%m-%dT%H:%M:%SZ", BASE + seconds)
    stamp_cache[seconds] = s
  end
  return s
end

function init(args)
  local path = args[1]
  group_size = tonumber(args[2])
  local token = args[3]
  resolve_p = tonumber(args[4])
  out_path = args[5]
  for line in io.lines(path) do
    local fp, labels, annotations, name = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)$")
    pool[#pool + 1] = { fp = fp, labels = labels, annotations = annotations, name = name }
  end
  ngroups = math.floor(#pool / group_size)
  math.randomseed(7)
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
end

function request()
  local g = next_group
  next_group = (next_group + 1) % ngroups
  local parts = {}
  local any_firing = false
  local name = pool[g * group_size + 1].name
  for k = 1, group_size do
    local i = g * group_size + k
    local a = pool[i]
    if was_resolved[i] then
      epoch[i] = (epoch[i] or 0) + 1
      was_resolved[i] = false
    end
    local e = epoch[i] or 0
    local status, ends
    if math.random() < resolve_p then
      was_resolved[i] = true
      status = "resolved"
      ends = stamp(e * 600 + 300)
    else
      status = "firing"
      ends = ZERO
      any_firing = true
    end
    parts[k] = '{"status":"' .. status .. '","labels":' .. a.labels
      .. ',"annotations":' .. a.annotations
      .. ',"startsAt":"' .. stamp(e * 600) .. '","endsAt":"' .. ends
      .. '","generatorURL":"http://prometheus.bench:9090/graph?g0.expr=up","fingerprint":"'
      .. a.fp .. '"}'
  end
  local body = '{"version":"4","groupKey":"{}:{alertname=\\"' .. name .. '\\"}",'
    .. '"truncatedAlerts":0,"status":"' .. (any_firing and "firing" or "resolved") .. '",'
    .. '"receiver":"remediator","groupLabels":{"alertname":"' .. name .. '"},'
    .. '"commonLabels":{"alertname":"' .. name .. '"},"commonAnnotations":{},'
    .. '"externalURL":"http://alertmanager.bench:9093","alerts":[' .. table.concat(parts, ",")
    .. "]}"
  return wrk.format(nil, nil, nil, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status == 200 then
    local id = body:match('"journal_id": *(%d+)')
    if id then
      ids[#ids + 1] = id
    end
  end
end

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function done(summary, latency, requests)
  local out = threads[1]:get("out_path")
  local f = assert(io.open(out .. ".ids", "w"))
  local counts = {}
  for _, t in ipairs(threads) do
    for _, id in ipairs(t:get("ids")) do
      f:write(id, "\n")
    end
    for code, n in pairs(t:get("statuses")) do
      counts[code] = (counts[code] or 0) + n
    end
  end
  f:close()
  local codes = {}
  for code, n in pairs(counts) do
    codes[#codes + 1] = string.format('"%d":%d', code, n)
  end
  local e = summary.errors
  local s = assert(io.open(out, "w"))
  s:write(string.format(
    '{"duration_us":%d,"requests":%d,"bytes":%d,"statuses":{%s},'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}\n',
    summary.duration, summary.requests, summary.bytes, table.concat(codes, ","),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max
  ))
  s:close()
end
