-- bench/private.lua: bench/steady.lua's workload (BENCH_PEERS peers in BENCH_TORRENTS swarms,
-- 90 % re-announces, 4 % started, 4 % stopped, 2 % completed, numwant=50) as a private tracker
-- sees it: every announce goes to /<passkey>/announce, peer p belongs to user p % BENCH_USERS
-- (passkeys one a line in $BENCH_PASSKEYS, user i on line i + 1), and reports growing uploaded /
-- downloaded counters (16 KiB more of each per announce, reset by "started"), so that every
-- re-announce credits bytes (tyto_account's HINCRBYs) rather than only re-storing the counters.
-- Run by bench/private.sh; one wrk thread (-t1): the counters live in the thread's Lua state.
dofile((os.getenv("BENCH_DIR") or "bench") .. "/common.lua")

local nusers = tonumber(os.getenv("BENCH_USERS") or "1000")
local step = 16384

function init(args)
   bench.init_torrents()
   local f = assert(io.open(os.getenv("BENCH_PASSKEYS") or error("BENCH_PASSKEYS is not set"), "r"))
   passkeys = {}
   for line in f:lines() do
      passkeys[#passkeys + 1] = line
   end
   f:close()
   if #passkeys < nusers then
      error("BENCH_PASSKEYS: " .. #passkeys .. " passkeys, need " .. nusers)
   end
   counters = {}
end

function request()
   local p = math.random(0, bench.npeers - 1)
   local t, port, id, seeder = bench.peer(p)
   local event, left = bench.steady_event(seeder)
   local c = (event == "started") and 0 or ((counters[p] or 0) + step)
   counters[p] = c
   local path = bench.announce_path(hashes[t], id, port, left, event, 50)
   path = path:gsub("uploaded=0&downloaded=0", "uploaded=" .. c .. "&downloaded=" .. (seeder and 0 or c), 1)
   return wrk.format(nil, "/" .. passkeys[(p % nusers) + 1] .. path)
end

function response(status, headers, body)
   bench.check_announce(status, body)
end
