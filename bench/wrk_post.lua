-- wrk script of bench/bench_service.py: POST the request bodies of a file in turn and print
-- the run's figures as one JSON line (the benchmark parses it).
--
--   wrk -t1 -c8 -d15s -s bench/wrk_post.lua http://127.0.0.1:3000 -- BODIES_FILE [PATH] [HEADER...]
--
-- BODIES_FILE holds one JSON body per line; PATH defaults to /score; each HEADER is
-- "Name: value". wrk's Lua has no JSON library, so the summary is written by hand.

local bodies = {}
local next_body = 1
local path = "/score"
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  local file = assert(io.open(args[1], "r"), "cannot open the bodies file " .. tostring(args[1]))
  for line in file:lines() do
    if #line > 0 then
      bodies[#bodies + 1] = line
    end
  end
  file:close()
  assert(#bodies > 0, "no request bodies in " .. args[1])
  if args[2] then
    path = args[2]
  end
  for i = 3, #args do
    local name, value = args[i]:match("^([^:]+):%s*(.*)$")
    headers[name] = value
  end
  -- each thread starts at a different body, so threads do not send the same sequence
  next_body = (math.random(#bodies) - 1) % #bodies + 1
end

function request()
  local body = bodies[next_body]
  next_body = next_body % #bodies + 1
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  local parts = {
    string.format('"requests": %d', summary.requests),
    string.format('"duration_us": %d', summary.duration),
    string.format('"errors_connect": %d', e.connect),
    string.format('"errors_read": %d', e.read),
    string.format('"errors_write": %d', e.write),
    string.format('"errors_status": %d', e.status),
    string.format('"errors_timeout": %d', e.timeout),
    string.format('"latency_mean_us": %.1f', latency.mean),
    string.format('"latency_max_us": %d', latency.max),
  }
  for _, p in ipairs({ 50, 95, 99 }) do
    parts[#parts + 1] = string.format('"latency_p%d_us": %d', p, latency:percentile(p))
  end
  io.write("WRK_JSON {" .. table.concat(parts, ", ") .. "}\n")
end
