-- bench/steady200.lua: bench/steady.lua with numwant=200 (libtorrent's default; the other
-- workloads ask for 50): the steady pool (BENCH_PEERS peers in BENCH_TORRENTS swarms) re-announcing
-- at random, 90 % regular, 4 % started, 4 % stopped, 2 % completed, compact. Run by bench/run.
dofile((os.getenv("BENCH_DIR") or "bench") .. "/common.lua")

init = bench.init_torrents

function request()
   local p = math.random(0, bench.npeers - 1)
   local t, port, id, seeder = bench.peer(p)
   local r = math.random()
   local event, left = nil, seeder and 0 or 1000
   if r < 0.04 then
      event = "started"
   elseif r < 0.08 then
      event = "stopped"
   elseif r < 0.10 then
      event, left = "completed", 0
   end
   return wrk.format(nil, bench.announce_path(hashes[t], id, port, left, event, 200))
end

function response(status, headers, body)
   bench.check_announce(status, body)
end
