-- Shared by every scenario script: each wrk thread loads the tokens file, keeps its own share of
-- the users (so two threads never delete the same task), and builds requests that use a random
-- user's own token and, where a task is needed, one of that user's own task ids.
--
-- Script arguments (after `--`): <tokens.tsv> [thread count] [label]
-- tokens.tsv lines: user_id <TAB> bearer token <TAB> comma-separated task ids.
-- The scenario script sets SCENARIO before loading this file.
--
-- Every response is classified in `response()`: 2xx counts as ok, anything else (3xx included)
-- is counted per status code. `done()` prints one `BENCHJSON {...}` line that bench/run.py reads.

local threads = {}
local thread_count = 0

function setup(thread)
   thread:set("thread_index", thread_count)
   thread_count = thread_count + 1
   table.insert(threads, thread)
end

local users = {}      -- this thread's users: {base=..., auth=..., json=..., ids={...}}
local active = {}     -- delete: users that still have tasks left to delete
local counter = 0

ok = 0
bad = 0
exhausted = 0
statuses = {}

local function split_ids(text)
   local ids = {}
   for id in string.gmatch(text or "", "%d+") do
      ids[#ids + 1] = id
   end
   return ids
end

function init(args)
   local path = args[1]
   local total_threads = tonumber(args[2] or "1")
   local index = thread_index or 0
   local file = assert(io.open(path, "r"), "cannot open tokens file " .. tostring(path))
   local line_number = 0
   for line in file:lines() do
      local user, token, ids = string.match(line, "^([^\t]+)\t([^\t]+)\t?(.*)$")
      if user then
         if line_number % total_threads == index then
            users[#users + 1] = {
               base = "/api/" .. user .. "/tasks",
               auth = { ["Authorization"] = "Bearer " .. token },
               json = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" },
               ids = split_ids(ids),
            }
            active[#active + 1] = users[#users]
         end
         line_number = line_number + 1
      end
   end
   file:close()
   assert(#users > 0, "thread " .. index .. " got no users from " .. path)
   math.randomseed(os.time() * 1000 + index)
end

local function pick_user()
   return users[math.random(#users)]
end

local function pick_id(user)
   return user.ids[math.random(#user.ids)]
end

local builders = {}

function builders.list()
   local user = pick_user()
   return wrk.format("GET", user.base, user.auth)
end

function builders.get()
   local user = pick_user()
   return wrk.format("GET", user.base .. "/" .. pick_id(user), user.auth)
end

function builders.create()
   local user = pick_user()
   counter = counter + 1
   local body = '{"title":"Bench task ' .. counter .. '","description":"Made by wrk","completed":false}'
   return wrk.format("POST", user.base, user.json, body)
end

function builders.update()
   local user = pick_user()
   counter = counter + 1
   local body = '{"title":"Renamed ' .. counter .. '","description":"Edited by wrk"}'
   return wrk.format("PUT", user.base .. "/" .. pick_id(user), user.json, body)
end

function builders.toggle()
   local user = pick_user()
   return wrk.format("PATCH", user.base .. "/" .. pick_id(user) .. "/complete", user.auth)
end

-- Each id is deleted once: ids are popped from this thread's own users. bench/run.py seeds enough
-- of them for the run's duration; should they still run out, the thread stops (and says so)
-- rather than sending deletes that can only 404.
function builders.delete()
   while #active > 0 do
      local slot = math.random(#active)
      local user = active[slot]
      local count = #user.ids
      if count > 0 then
         local id = user.ids[count]
         user.ids[count] = nil
         return wrk.format("DELETE", user.base .. "/" .. id, user.auth)
      end
      active[slot] = active[#active]
      active[#active] = nil
   end
   exhausted = exhausted + 1
   wrk.thread:stop()
   return builders.list()
end

-- mixed: 60% list, 10% each of get, create, update and toggle (deletes are measured on their own:
-- mixing them in would make later gets and updates of the same ids 404).
function builders.mixed()
   local roll = math.random(100)
   if roll <= 60 then
      return builders.list()
   elseif roll <= 70 then
      return builders.get()
   elseif roll <= 80 then
      return builders.create()
   elseif roll <= 90 then
      return builders.update()
   end
   return builders.toggle()
end

local build = assert(builders[SCENARIO], "unknown SCENARIO " .. tostring(SCENARIO))

function request()
   return build()
end

function response(status, headers, body)
   if status >= 200 and status < 300 then
      ok = ok + 1
   else
      bad = bad + 1
      statuses[status] = (statuses[status] or 0) + 1
   end
end

function done(summary, latency, requests)
   local total_ok, total_bad, total_exhausted = 0, 0, 0
   local by_status = {}
   for _, thread in ipairs(threads) do
      total_ok = total_ok + thread:get("ok")
      total_bad = total_bad + thread:get("bad")
      total_exhausted = total_exhausted + thread:get("exhausted")
      for status, count in pairs(thread:get("statuses")) do
         by_status[status] = (by_status[status] or 0) + count
      end
   end
   local parts = {}
   for status, count in pairs(by_status) do
      parts[#parts + 1] = string.format('"%d":%d', status, count)
   end
   local errors = summary.errors
   io.write(string.format(
      'BENCHJSON {"scenario":"%s","requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"ok":%d,"non2xx":%d,"statuses":{%s},"exhausted":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d},' ..
      '"latency_us":{"mean":%.1f,"max":%d,"p50":%d,"p90":%d,"p95":%d,"p99":%d}}\n',
      SCENARIO, summary.requests, summary.duration, summary.bytes,
      total_ok, total_bad, table.concat(parts, ","), total_exhausted,
      errors.connect, errors.read, errors.write, errors.timeout, errors.status,
      latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
      latency:percentile(95), latency:percentile(99)))
end
