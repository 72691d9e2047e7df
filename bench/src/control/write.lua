-- wrk script of the control bench's writes measure (bench/src/control/writes.rs):
-- every request writes one distinct small job spec (a job of 0 replicas).
--   wrk ... -s write.lua URL -- skein PREFIX   POST /v1/jobs {"jobs":[SPEC]}
--   wrk ... -s write.lua URL -- etcd PREFIX    POST /v3/kv/put, key /jobs/NAME, value SPEC
-- Names are PREFIX-THREAD-COUNTER. At the end one line is printed:
--   BENCH requests=N duration_us=N connect=N read=N write=N timeout=N p50_us=N p99_us=N codes=200:N,...
-- and, when some answer was not 200, BENCH_SAMPLE <status> <body of the first>.

local mode, prefix = "skein", "w"
local counter = 0
local threads = {}
local n_threads = 0
codes = {}
sample = nil

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function b64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local function ch(k) return b64chars:sub(k + 1, k + 1) end
    out[#out + 1] = ch(math.floor(n / 262144) % 64) .. ch(math.floor(n / 4096) % 64)
      .. (b and ch(math.floor(n / 64) % 64) or "=") .. (c and ch(n % 64) or "=")
  end
  return table.concat(out)
end

function setup(thread)
  n_threads = n_threads + 1
  thread:set("tid", n_threads)
  table.insert(threads, thread)
end

function init(args)
  mode = args[1] or mode
  prefix = args[2] or prefix
end

local headers = { ["Content-Type"] = "application/json" }

function request()
  counter = counter + 1
  local name = prefix .. "-" .. tid .. "-" .. counter
  local spec = '{"name":"' .. name .. '","replicas":0,"image":"skein-demo/web:latest","pull":"never"}'
  if mode == "etcd" then
    local body = '{"key":"' .. b64("/jobs/" .. name) .. '","value":"' .. b64(spec) .. '"}'
    return wrk.format("POST", "/v3/kv/put", headers, body)
  end
  return wrk.format("POST", "/v1/jobs", headers, '{"jobs":[' .. spec .. ']}')
end

function response(status, hdrs, body)
  codes[status] = (codes[status] or 0) + 1
  if status ~= 200 and sample == nil then
    sample = status .. " " .. string.gsub(body or "", "\n", " ")
  end
end

function done(summary, latency, requests)
  local all = {}
  local first = nil
  for _, t in ipairs(threads) do
    local c = t:get("codes") or {}
    for k, v in pairs(c) do all[k] = (all[k] or 0) + v end
    first = first or t:get("sample")
  end
  local parts = {}
  for k, v in pairs(all) do parts[#parts + 1] = k .. ":" .. v end
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d connect=%d read=%d write=%d timeout=%d p50_us=%d p99_us=%d codes=%s\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), table.concat(parts, ",")))
  if first then io.write("BENCH_SAMPLE " .. string.sub(first, 1, 300) .. "\n") end
end
