-- bench/churn200.lua: bench/churn.lua with numwant=200 (libtorrent's default): every request a new
-- peer starting on one torrent, compact. For bench/redis_announce_cost.sh (WORKLOAD=churn200).
dofile((os.getenv("BENCH_DIR") or "bench") .. "/common.lua")

local hash

function init(args)
   math.randomseed(bench.seed * 1000 + (tid or 0))
   hash = bench.churn_hash()
end

function request()
   local id = string.format("-BM0001-%06x%06x", math.random(0, 0xffffff), math.random(0, 0xffffff))
   return wrk.format(nil, bench.announce_path(hash, id, math.random(1025, 65535), 1000, "started", 200))
end

function response(status, headers, body)
   bench.check_announce(status, body)
end
