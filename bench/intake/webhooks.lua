-- wrk script: each thread posts its own slice of pre-signed, distinct webhooks (bench/intake/make_requests.py:
-- route TAB header count TAB name TAB value ... TAB body). Arguments: FILE [THREADS [DELAY_MS]]; with DELAY_MS each
-- connection waits that long after each answer before its next request (wrk's delay()), so C connections send
-- about C * 1000 / (DELAY_MS + latency) webhooks a second: intake's latency at a rate rather than at saturation.
-- No response() callback: with one, wrk hands every answer's headers and body to Lua, which cost the
-- load generator CPU that the daemon and PostgreSQL share; wrk's own "Non-2xx or 3xx responses" line
-- counts errors, and run.sh compares the rows committed with the requests sent.
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

function init(args)
  nthreads = tonumber(args[2]) or 2
  local pause_ms = tonumber(args[3])
  -- Defined here, not at the top: wrk asks whether the script has delay() after init() has run.
  if pause_ms then
    function delay() return pause_ms end
  end
  requests = {}
  local i = 0
  for line in io.lines(args[1]) do
    if i % nthreads == tid then
      local fields = {}
      for field in (line .. "\t"):gmatch("([^\t]*)\t") do table.insert(fields, field) end
      local headers = {["Content-Type"] = "application/json"}
      local count = tonumber(fields[2])
      for h = 0, count - 1 do headers[fields[3 + 2 * h]] = fields[4 + 2 * h] end
      table.insert(requests, wrk.format("POST", fields[1], headers, fields[3 + 2 * count]))
    end
    i = i + 1
  end
  index = 0
end

function request()
  index = index + 1
  if index > #requests then index = 1 end   -- wraps only if the file was too short: then duplicates
  return requests[index]
end
