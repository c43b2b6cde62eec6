-- bench/churn200.lua: bench/churn.lua with numwant=200 (libtorrent's default). For
-- bench/redis_announce_cost.sh (WORKLOAD=churn200).
bench_numwant = 200
dofile((os.getenv("BENCH_DIR") or "bench") .. "/churn.lua")
