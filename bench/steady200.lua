-- bench/steady200.lua: bench/steady.lua with numwant=200 (libtorrent's default; the other
-- workloads ask for 50), run by bench/run in a pool of its own (1,000-peer swarms).
bench_numwant = 200
dofile((os.getenv("BENCH_DIR") or "bench") .. "/steady.lua")
