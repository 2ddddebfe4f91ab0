-- wrk script of the Faultline benchmarks.
-- WRK_REQUESTS: a Lua file returning { {method=, path=, headers={}, body=}, ... }; each connection
-- cycles through them (pre-formatted once per thread, so a request costs a table index).
-- WRK_PAUSE_MS: when set and > 0, each connection waits that long before each request (paced load).
-- A body may hold UNIQUE (32 hex digits) wherever a protocol dedupes by id (Sentry's event_id):
-- every request gets its own value there, same length, so Content-Length stays right.
-- done() prints one line "WRKJSON {...}" the benchmark driver parses.

local source = os.getenv("WRK_REQUESTS")
local pause = tonumber(os.getenv("WRK_PAUSE_MS") or "0") or 0
local UNIQUE = "deadbeefdeadbeefdeadbeefdeadbeef"
local formatted = {}  -- per request: its text, or the list of pieces around each UNIQUE
local count = 0
local index = 0
local serial = 0
local prefix = ""

local function split(text)
   local pieces, from = {}, 1
   while true do
      local a, b = string.find(text, UNIQUE, from, true)
      if not a then
         pieces[#pieces + 1] = string.sub(text, from)
         return pieces
      end
      pieces[#pieces + 1] = string.sub(text, from, a - 1)
      from = b + 1
   end
end

function init(args)
   local list = dofile(source)
   for _, r in ipairs(list) do
      count = count + 1
      local text = wrk.format(r.method, r.path, r.headers, r.body)
      local pieces = split(text)
      formatted[count] = #pieces > 1 and pieces or text
   end
   -- Threads start at different places so they do not send the same bodies in lockstep.
   local address = tonumber(tostring(wrk.thread):match("0x(%x+)") or "0", 16) or 0
   index = address % count
   prefix = string.format("%08x%08x", address % 4294967296, os.time() % 4294967296)
end

function request()
   index = index % count + 1
   local r = formatted[index]
   if type(r) == "string" then
      return r
   end
   serial = serial + 1
   return table.concat(r, string.format("%s%016x", prefix, serial))
end

if pause > 0 then
   function delay()
      return pause
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRKJSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, ' ..
      '"status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}\n',
      summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
