-- wrk script: each thread posts its own slice of pre-signed, distinct webhooks (bench/intake/make_requests.py).
-- Counts non-200 answers so a run that only measured errors is visible.
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  nthreads = tonumber(args[2]) or 2
  requests = {}
  local i = 0
  for line in io.lines(args[1]) do
    if i % nthreads == tid then
      local id, ts, sig, body = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)\t(.*)$")
      table.insert(requests, wrk.format("POST", "/v1/webhooks/replicate",
        {["Content-Type"] = "application/json", ["webhook-id"] = id, ["webhook-timestamp"] = ts, ["webhook-signature"] = sig}, body))
    end
    i = i + 1
  end
  index = 0
  non200 = 0
end

function request()
  index = index + 1
  if index > #requests then index = 1 end   -- wraps only if the file was too short: then duplicates
  return requests[index]
end

function response(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end

function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + (t:get("non200") or 0) end
  io.write(string.format("non-200 answers: %d\n", bad))
end
