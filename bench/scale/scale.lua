-- wrk script for bench/scale: GET /v1/predictions/replicate/<id> for seeded predictions number
-- BENCH_FROM..BENCH_TO (uniformly random), or GET /v1/assets?after=<random id>&limit=100 when BENCH_MODE=list
-- (ids BENCH_FROM..BENCH_TO, BENCH_STATE as the state filter when set). Ids are seed-functions.sql's bench_id(g):
-- lpad((g*7919) % 1000000007, 10) .. 'q' .. lpad(g, 10) .. 'abcde' (every product is exact in a double).
local from = tonumber(os.getenv("BENCH_FROM") or "1")
local to = tonumber(os.getenv("BENCH_TO") or "10000")
local mode = os.getenv("BENCH_MODE") or "lookup"
local state = os.getenv("BENCH_STATE") or ""
local headers = { ["Authorization"] = "Bearer " .. (os.getenv("BENCH_TOKEN") or "") }

function setup(thread)
  thread:set("seed", math.random(1, 1000000))
end

function init(args)
  math.randomseed(seed or 1)
end

local function bench_id(g)
  return string.format("%010dq%010dabcde", (g * 7919) % 1000000007, g)
end

function request()
  local g = math.random(from, to)
  if mode == "list" then
    local path = "/v1/assets?limit=100&after=" .. g
    if state ~= "" then path = path .. "&state=" .. state end
    return wrk.format("GET", path, headers)
  end
  return wrk.format("GET", "/v1/predictions/replicate/" .. bench_id(g), headers)
end
