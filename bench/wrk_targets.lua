-- wrk script for bench.common.wrk_load: GET the request targets listed one per line in the
-- file $WRK_TARGETS, each connection thread from its own seeded offset, with the API key in
-- $WRK_KEY; at the end, one JSON line (prefixed "WRK ") with the counts, percentiles in µs,
-- and the answers per service process (the first 16 hex digits of each x-request-id).
local targets = {}
for line in io.lines(os.getenv("WRK_TARGETS")) do
  targets[#targets + 1] = line
end
local headers = { Authorization = "Bearer " .. os.getenv("WRK_KEY") }
local threads = {}
local i = 0
served = {}

function setup(thread)
  thread:set("id", #threads)
  threads[#threads + 1] = thread
end

function init(args)
  i = (id * 7919) % #targets
end

function request()
  i = i % #targets + 1
  return wrk.format("GET", targets[i], headers)
end

function response(status, headers, body)
  local worker = string.sub(headers["x-request-id"] or headers["X-Request-ID"] or "?", 1, 16)
  served[worker] = (served[worker] or 0) + 1
end

function done(summary, latency, requests)
  local by_worker = {}
  for _, thread in ipairs(threads) do
    for worker, n in pairs(thread:get("served")) do
      by_worker[worker] = (by_worker[worker] or 0) + n
    end
  end
  local parts = {}
  for worker, n in pairs(by_worker) do
    parts[#parts + 1] = string.format('"%s": %d', worker, n)
  end
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "status_errors": %d, '
      .. '"socket_errors": %d, "served": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), e.status,
    e.connect + e.read + e.write + e.timeout, table.concat(parts, ", ")))
end
