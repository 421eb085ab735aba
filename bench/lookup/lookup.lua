-- wrk script: GET /v1/predictions/replicate/bench-<random id> with the bearer token.
-- BENCH_N predictions were seeded as bench-1 .. bench-N; BENCH_TOKEN is a token from api.tokens.
local n = tonumber(os.getenv("BENCH_N") or "10000")
local token = os.getenv("BENCH_TOKEN") or ""
local headers = { ["Authorization"] = "Bearer " .. token }

function setup(thread)
  thread:set("seed", math.random(1, 1000000))
end

function init(args)
  math.randomseed(seed or 1)
end

function request()
  return wrk.format("GET", "/v1/predictions/replicate/bench-" .. math.random(1, n), headers)
end
