-- wrk script of scripts/load_test.sh: POST /api/attention with a different text each time
-- (the viewer keeps the last text's capture, so one repeated text would not run the model
-- after the first request), statuses counted per wrk thread and summed in done().
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  sent, non2xx, n5xx = 0, 0, 0
  -- wrk.headers["Host"] carries the port; the viewer refuses any other Host (403).
  headers = {["Content-Type"] = "application/json", ["Host"] = wrk.headers["Host"]}
end

function request()
  sent = sent + 1
  local body = string.format('{"text": "Request %d of connection group %d: In the beginning God created the '
                             .. 'heaven and the earth."}', sent, id)
  return wrk.format("POST", "/api/attention", headers, body)
end

function response(status, headers, body)
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
  if status >= 500 then n5xx = n5xx + 1 end
end

function done(summary, latency, requests)
  local non, five = 0, 0
  for _, t in ipairs(threads) do
    non = non + t:get("non2xx")
    five = five + t:get("n5xx")
  end
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_s=%.2f rps=%.1f p50_ms=%.1f p99_ms=%.1f max_ms=%.1f "
                         .. "non2xx=%d n5xx=%d connect=%d read=%d write=%d timeout=%d\n",
                         summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
                         latency:percentile(50) / 1e3, latency:percentile(99) / 1e3, latency.max / 1e3,
                         non, five, e.connect, e.read, e.write, e.timeout))
end
