-- bench/steady.lua: a pool of BENCH_PEERS peers (1,000,000) in BENCH_TORRENTS swarms (100,000)
-- re-announcing at random, numwant=50 (bench_numwant when a wrapper sets it), compact. Events: 90 % regular re-announces, 4 % started,
-- 4 % stopped, 2 % completed (which turns the peer into a seeder for that announce), so that the
-- pool stays the same size on average. Run by bench/run through wrk after bench/load.lua.
dofile((os.getenv("BENCH_DIR") or "bench") .. "/common.lua")

init = bench.init_torrents

function request()
   local p = math.random(0, bench.npeers - 1)
   local t, port, id, seeder = bench.peer(p)
   local event, left = bench.steady_event(seeder)
   return wrk.format(nil, bench.announce_path(hashes[t], id, port, left, event, bench_numwant or 50))
end

function response(status, headers, body)
   bench.check_announce(status, body)
end
