-- wrk replays a file of prepared requests, one per line: method, path (with its query), content type and body,
-- separated by tabs. Thread t of n takes lines t, t+n, t+2n, ... in turn, so the threads never send the same line
-- and each walks its own share in order. Answers are counted by status; `done` prints them on one line:
-- "statuses 201:5230 409:2".
-- Usage: wrk -t <n> -s replay.lua <url> -- <requests file> <n>
-- With WRK_PACE_MS set, each connection waits that long before each request: an offered rate of about
-- connections * 1000 / (WRK_PACE_MS + the answer's time) instead of as fast as the answers come.

local pace_ms = tonumber(os.getenv("WRK_PACE_MS") or "0")
if pace_ms > 0 then
  function delay()
    return pace_ms
  end
end

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local requests = {}
local sent = 0
statuses = {}

function init(args)
  local line_no = 0
  local file = assert(io.open(args[1], "r"))
  local stride, mine = tonumber(args[2]), id
  for line in file:lines() do
    if line_no % stride == mine then
      local method, path, content_type, body = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
      local headers = {}
      for name, value in pairs(wrk.headers) do -- the command line's -H headers
        headers[name] = value
      end
      if content_type ~= "" then
        headers["Content-Type"] = content_type
      end
      table.insert(requests, wrk.format(method, path, headers, body))
    end
    line_no = line_no + 1
  end
  file:close()
  assert(#requests > 0, "no requests for thread " .. mine)
end

function request()
  sent = sent + 1
  return requests[(sent - 1) % #requests + 1]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + count
    end
  end
  io.write("statuses")
  for status, count in pairs(total) do
    io.write(string.format(" %d:%d", status, count))
  end
  io.write("\n")
end
