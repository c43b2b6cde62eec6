-- bench/common.lua: what every wrk script of the Tyto benchmark shares (loaded with dofile).
--
-- Torrents: the info-hashes are sha1(decimal index) for index 0 .. N-1, written one a line as 40
-- hex digits by bench/run into $BENCH_HASHES (the same file is opentracker's whitelist); the churn
-- torrent is sha1("churn"), in $BENCH_CHURN_HASH. Peers of the steady pool: peer p belongs to
-- torrent p % N and announces port 20000 + p // N, so (torrent, address:port) is unique for every
-- p although every request comes from 127.0.0.1.
--
-- Replies are checked, so that a fast error never counts as a fast announce: a body carrying
-- "failure reason", or an announce reply without "5:peers" (a scrape reply without "5:files"), is
-- counted as bad; done() adds wrk's own socket/status errors and prints one line
-- "BENCH {json}" that bench/run parses.

bench = {}

bench.npeers = tonumber(os.getenv("BENCH_PEERS") or "1000000")
bench.ntorrents = tonumber(os.getenv("BENCH_TORRENTS") or "100000")
bench.seed = tonumber(os.getenv("BENCH_SEED") or "1")

-- The steady pool's event mix: 90 % regular re-announces, 4 % started, 4 % stopped, 2 % completed
-- (which turns the peer into a seeder for that announce), so that the pool keeps its size on
-- average. Returns event (nil for a regular one) and left.
function bench.steady_event(seeder)
   local r = math.random()
   if r < 0.04 then
      return "started", seeder and 0 or 1000
   elseif r < 0.08 then
      return "stopped", seeder and 0 or 1000
   elseif r < 0.10 then
      return "completed", 0
   end
   return nil, seeder and 0 or 1000
end

-- Percent-encodes every byte of a 40-digit hex string: "%12%34...".
function bench.pct(hex)
   return (hex:gsub("..", "%%%0"))
end

-- Reads the first n info-hashes of $BENCH_HASHES, already percent-encoded, into a 1-based table.
function bench.load_hashes(n)
   local path = os.getenv("BENCH_HASHES")
   if not path then
      error("BENCH_HASHES is not set")
   end
   local f = assert(io.open(path, "r"))
   local t = {}
   for line in f:lines() do
      if #t >= n then
         break
      end
      t[#t + 1] = bench.pct(line)
   end
   f:close()
   if #t < n then
      error(path .. ": " .. #t .. " info-hashes, need " .. n)
   end
   return t
end

function bench.churn_hash()
   local hex = os.getenv("BENCH_CHURN_HASH")
   if not hex or #hex ~= 40 then
      error("BENCH_CHURN_HASH is not set")
   end
   return bench.pct(hex)
end

-- Peer p of the steady pool: its torrent (1-based index into the hash table), port and peer_id.
-- Three peers in ten are seeders.
function bench.peer(p)
   local slot = math.floor(p / bench.ntorrents)
   return (p % bench.ntorrents) + 1, 20000 + slot, string.format("-BM0001-%012d", p), (slot % 10) < 3
end

function bench.announce_path(hash, peer_id, port, left, event, numwant)
   local s = "/announce?info_hash=" .. hash .. "&peer_id=" .. peer_id .. "&port=" .. port ..
      "&uploaded=0&downloaded=0&left=" .. left .. "&numwant=" .. numwant .. "&compact=1"
   if event then
      s = s .. "&event=" .. event
   end
   return s
end

-- Per-thread counters, read by done() through thread:get().
ok = 0
bad = 0
empty = 0
sample_bad = nil

-- A reply is good if it is HTTP 200, has no "failure reason" and carries needle ("5:peers" for
-- an announce, "5:files" for a scrape); the first bad one is kept as a sample.
local function check(status, body, needle)
   if status ~= 200 or body:find("failure reason", 1, true) or not body:find(needle, 1, true) then
      bad = bad + 1
      if not sample_bad then
         sample_bad = status .. " " .. body:sub(1, 120)
      end
      return false
   end
   ok = ok + 1
   return true
end

-- Announce replies; also counts replies whose peer list is empty.
function bench.check_announce(status, body)
   if not check(status, body, "5:peers") then
      return false
   end
   if body:find("5:peers0:", 1, true) then
      empty = empty + 1
   end
   return true
end

function bench.check_scrape(status, body)
   return check(status, body, "5:files")
end

-- init() of the scripts that draw from the steady workload's torrents: seeds the thread's
-- random numbers and loads the info-hashes into the global `hashes`.
function bench.init_torrents()
   math.randomseed(bench.seed * 1000 + (tid or 0))
   hashes = bench.load_hashes(bench.ntorrents)
end

-- setup/done run in their own Lua state: threads are remembered there to read their counters.
local threads = {}
local nthreads = 0

function setup(thread)
   thread:set("tid", nthreads)
   nthreads = nthreads + 1
   table.insert(threads, thread)
end

local function json_str(s)
   s = s:gsub("[%c\"\\\128-\255]", function(c)
      return string.format("\\u%04x", c:byte())
   end)
   return '"' .. s .. '"'
end

function done(summary, latency, requests)
   local nok, nbad, nempty, sample = 0, 0, 0, nil
   for _, t in ipairs(threads) do
      nok = nok + (t:get("ok") or 0)
      nbad = nbad + (t:get("bad") or 0)
      nempty = nempty + (t:get("empty") or 0)
      sample = sample or t:get("sample_bad")
   end
   local e = summary.errors
   local sockerr = e.connect + e.read + e.write + e.timeout
   io.write(string.format(
      'BENCH {"requests":%d,"duration_us":%d,"bytes":%d,"ok":%d,"bad_body":%d,"empty_peers":%d,' ..
      '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
      '"errors":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,"sample_bad":%s}\n',
      summary.requests, summary.duration, summary.bytes, nok, nbad, nempty,
      e.connect, e.read, e.write, e.status, e.timeout,
      nbad + sockerr,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      latency.mean, sample and json_str(sample) or "null"))
end
