-- wrk script: POST one form body per request from the file $BENCH_BODIES (one a line,
-- written by bench/grants.py), each body once: refresh tokens and codes are single-use,
-- so a body sent twice would measure reuse detection instead of the grant. Thread i of
-- $BENCH_THREADS (wrk -t, default 2) sends lines i, i+N, i+2N ... When a thread runs out
-- it sends a token the server does not know: a 400 that run.sh reports as a warning.
local basic = os.getenv("BASIC") or error("BASIC is not set")
local path = os.getenv("BENCH_BODIES") or error("BENCH_BODIES is not set")
local stride = tonumber(os.getenv("BENCH_THREADS") or "2")
local exhausted = "grant_type=refresh_token&refresh_token=bench-ran-out-of-tokens"

local threads = 0
function setup(thread)
  thread:set("index", threads)
  threads = threads + 1
end

local bodies, sent = {}, 0
function init(args)
  local n = 0
  for line in io.lines(path) do
    if n % stride == index then bodies[#bodies + 1] = line end
    n = n + 1
  end
end

function request()
  sent = sent + 1
  -- A fresh header table each time: wrk.format writes Content-Length into the one it gets.
  local headers = {["Content-Type"] = "application/x-www-form-urlencoded",
                   ["Authorization"] = "Basic " .. basic}
  return wrk.format("POST", nil, headers, bodies[sent] or exhausted)
end
