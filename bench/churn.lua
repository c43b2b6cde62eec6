-- bench/churn.lua: the original Tyto benchmark. Every request is a new peer (random peer_id and
-- port) starting on one torrent, numwant=50 (bench_numwant when a wrapper sets it), compact. Run by bench/run through wrk.
dofile((os.getenv("BENCH_DIR") or "bench") .. "/common.lua")

local hash

function init(args)
   math.randomseed(bench.seed * 1000 + (tid or 0))
   hash = bench.churn_hash()
end

function request()
   local id = string.format("-BM0001-%06x%06x", math.random(0, 0xffffff), math.random(0, 0xffffff))
   return wrk.format(nil, bench.announce_path(hash, id, math.random(1025, 65535), 1000, "started", bench_numwant or 50))
end

function response(status, headers, body)
   bench.check_announce(status, body)
end
