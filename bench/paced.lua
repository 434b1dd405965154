-- wrk script: pace every connection. Before each request the connection waits BENCH_PACE_MS
-- milliseconds (wrk's delay() hook), so N connections send about N * 1000 / (pace + latency)
-- requests per second instead of as many as the server can take. Headers come from -H.
local pace = tonumber(os.getenv("BENCH_PACE_MS") or "1")
function delay()
  return pace
end
