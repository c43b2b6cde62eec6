-- bench/scrape.lua: scrapes of 1 to 10 info-hashes a request, drawn from the steady workload's
-- BENCH_TORRENTS torrents. Run by bench/run through wrk.
dofile((os.getenv("BENCH_DIR") or "bench") .. "/common.lua")

init = bench.init_torrents

function request()
   local n = math.random(1, 10)
   local parts = {}
   for i = 1, n do
      parts[i] = "info_hash=" .. hashes[math.random(1, bench.ntorrents)]
   end
   return wrk.format(nil, "/scrape?" .. table.concat(parts, "&"))
end

function response(status, headers, body)
   bench.check_scrape(status, body)
end
