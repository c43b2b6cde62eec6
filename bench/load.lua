-- bench/load.lua: announces every peer of the steady pool once (event=started), thread k of n
-- taking peers k, k + n, k + 2n, ... When a thread has had a reply for each of its peers it prints
-- "LOADED <tid> <ok> <bad>"; bench/run stops wrk (SIGINT) once every thread has. A thread with
-- nothing left to announce sends scrapes of torrent 1 meanwhile; those replies are not counted.
-- wrk does not resend a request whose connection broke (it asks request() for a new one), so a
-- thread also reports once it has seen 4 idle replies per connection after its last announce
-- went out: by then every announce still missing is lost. bench/run counts live peers itself.
-- wrk (4.1) calls request() of thread 0 once before the run to inspect the request, and drops
-- what it returns: that first call gets a scrape, so that no peer is skipped.
dofile((os.getenv("BENCH_DIR") or "bench") .. "/common.lua")

local hashes
local nthreads, next_p, share, reported
local idle_path, idle_seen
local conns = 1
local inspected = false

function init(args)
   nthreads = tonumber(args[1] or "1")
   conns = tonumber(args[2] or "1")
   idle_seen = 0
   hashes = bench.load_hashes(bench.ntorrents)
   next_p = tid
   share = 0
   for p = tid, bench.npeers - 1, nthreads do
      share = share + 1
   end
   reported = false
   idle_path = "/scrape?info_hash=" .. hashes[1]
end

function request()
   if tid == 0 and not inspected then
      inspected = true
      return wrk.format(nil, idle_path)
   end
   if next_p >= bench.npeers then
      return wrk.format(nil, idle_path)
   end
   local p = next_p
   next_p = next_p + nthreads
   local t, port, id, seeder = bench.peer(p)
   return wrk.format(nil, bench.announce_path(hashes[t], id, port, seeder and 0 or 1000, "started", 50))
end

function response(status, headers, body)
   if body:find("5:files", 1, true) and not body:find("failure reason", 1, true) then
      idle_seen = idle_seen + 1
   else
      bench.check_announce(status, body)
   end
   if not reported and (ok + bad >= share or idle_seen >= 4 * conns) then
      reported = true
      io.write(string.format("LOADED %d %d %d\n", tid, ok, bad))
      io.flush()
   end
end
