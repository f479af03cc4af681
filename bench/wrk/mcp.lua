-- wrk script: MCP tools/call over Streamable HTTP (POST, keep-alive).
--
-- Settings come from the environment (wrk passes it through to every thread):
--   MCP_SESSIONS          comma-separated Mcp-Session-Id values, used in rotation
--                         (empty: no Mcp-Session-Id header is sent)
--   MCP_TOOL              tool name (default "echo")
--   MCP_MESSAGE           the "message" argument (default "hello from wrk";
--                         plain text, no quotes or backslashes)
--   MCP_EXPECT            text every reply must contain (default "Echo: " .. MCP_MESSAGE)
--   MCP_PROTOCOL_VERSION  MCP-Protocol-Version header (default "2025-11-25")
--   MCP_AUTHORIZATION     value of an Authorization header sent with every request,
--                         e.g. "Bearer gh_…" (empty: no Authorization header)
-- The same can be given after `--` on the wrk command line, as
--   key=value pairs, e.g. `wrk ... -s mcp.lua URL -- sessions=a,b tool=echo`
--   (prefer the environment for authorization: the command line is visible in ps).
--
-- Every request carries a unique JSON-RPC id. Every reply is checked:
--   non200   HTTP status other than 200
--   rpcerr   body contains "error" or "isError":true
--   badtext  body lacks the expected echo text
-- done() prints one line starting with "MCPBENCH " (key=value pairs) that
-- bench/run.sh parses, plus the first bad reply seen, if any.

local settings = {}
local sessions = {}
local nsessions = 0
local next_session = 1
local counter = 0
local body_head, body_tail, expected
local headers_by_session = {}

-- per-thread counters, collected by done() through thread:get()
responses = 0
non200 = 0
rpcerr = 0
badtext = 0
first_bad = ""
tid = 0 -- set per thread by setup()

local threads = {}
local thread_count = 0

function setup(thread)
   thread_count = thread_count + 1
   thread:set("tid", thread_count - 1)
   table.insert(threads, thread)
end

local function setting(name, default)
   local v = settings[name]
   if v == nil or v == "" then
      v = os.getenv("MCP_" .. string.upper(name))
   end
   if v == nil or v == "" then
      return default
   end
   return v
end

function init(args)
   for _, a in ipairs(args) do
      local k, v = string.match(a, "^([%w_]+)=(.*)$")
      if k then settings[string.lower(k)] = v end
   end

   local tool = setting("tool", "echo")
   local message = setting("message", "hello from wrk")
   expected = setting("expect", "Echo: " .. message)
   local proto = setting("protocol_version", "2025-11-25")
   local authorization = setting("authorization", "")

   for id in string.gmatch(setting("sessions", ""), "[^,%s]+") do
      table.insert(sessions, id)
   end
   nsessions = #sessions

   local base = {
      ["Content-Type"] = "application/json",
      ["Accept"] = "application/json, text/event-stream",
      ["MCP-Protocol-Version"] = proto,
   }
   if authorization ~= "" then
      base["Authorization"] = authorization
   end
   if nsessions == 0 then
      headers_by_session[1] = base
   else
      for i, id in ipairs(sessions) do
         local h = {}
         for k, v in pairs(base) do h[k] = v end
         h["Mcp-Session-Id"] = id
         headers_by_session[i] = h
      end
      -- start each thread at a different session
      next_session = (tid % nsessions) + 1
   end

   body_head = '{"jsonrpc":"2.0","id":'
   body_tail = ',"method":"tools/call","params":{"name":"' .. tool ..
      '","arguments":{"message":"' .. message .. '"}}}'
end

function request()
   counter = counter + 1
   -- unique across threads: thread index in the low digits
   local id = counter * 1000 + tid
   local h
   if nsessions == 0 then
      h = headers_by_session[1]
   else
      h = headers_by_session[next_session]
      next_session = next_session + 1
      if next_session > nsessions then next_session = 1 end
   end
   return wrk.format("POST", nil, h, body_head .. id .. body_tail)
end

local function note_bad(kind, status, body)
   if first_bad == "" then
      local b = body or ""
      if #b > 400 then b = string.sub(b, 1, 400) .. "..." end
      b = string.gsub(b, "[\r\n]+", " ")
      first_bad = kind .. " status=" .. tostring(status) .. " body=" .. b
   end
end

function response(status, headers, body)
   responses = responses + 1
   if status ~= 200 then
      non200 = non200 + 1
      note_bad("non200", status, body)
      return
   end
   if body == nil then body = "" end
   if string.find(body, '"error"', 1, true) or string.find(body, '"isError"%s*:%s*true') then
      rpcerr = rpcerr + 1
      note_bad("rpcerr", status, body)
      return
   end
   if not string.find(body, expected, 1, true) then
      badtext = badtext + 1
      note_bad("badtext", status, body)
   end
end

function done(summary, latency, requests)
   local t = { responses = 0, non200 = 0, rpcerr = 0, badtext = 0 }
   local bad = ""
   for _, th in ipairs(threads) do
      t.responses = t.responses + (th:get("responses") or 0)
      t.non200 = t.non200 + (th:get("non200") or 0)
      t.rpcerr = t.rpcerr + (th:get("rpcerr") or 0)
      t.badtext = t.badtext + (th:get("badtext") or 0)
      local fb = th:get("first_bad") or ""
      if bad == "" and fb ~= "" then bad = fb end
   end
   local e = summary.errors
   local secs = summary.duration / 1e6
   io.write(string.format(
      "MCPBENCH requests=%d duration_s=%.3f rps=%.1f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f " ..
      "mean_ms=%.3f responses=%d non200=%d rpcerr=%d badtext=%d " ..
      "connect=%d read=%d write=%d status=%d timeout=%d\n",
      summary.requests, secs, summary.requests / secs,
      latency:percentile(50) / 1000, latency:percentile(90) / 1000,
      latency:percentile(99) / 1000, latency.max / 1000, latency.mean / 1000,
      t.responses, t.non200, t.rpcerr, t.badtext,
      e.connect, e.read, e.write, e.status, e.timeout))
   if bad ~= "" then
      io.write("MCPBENCH_FIRST_BAD " .. bad .. "\n")
   end
end
