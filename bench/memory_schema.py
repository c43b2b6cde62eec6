#!/usr/bin/python3
"""bench/memory_schema.py: Redis bytes per peer of candidate swarm layouts, written straight into a
private redis-server (redis/redis.conf, no tyto): the steady pool's shape (SWARMS swarms of 10
peers, 3 seeders and 7 leechers, members 127.0.0.1:<20000+slot> as bench/load.lua announces them),
one layout at a time on an emptied database. Prints used_memory growth / peers, and the part of it
that is per key. Usage: [SWARMS=100000] bench/memory_schema.py"""
import hashlib, os, subprocess, time, struct

from localredis import LocalRedis, resp

swarms = int(os.environ.get("SWARMS", "100000"))
redis = LocalRedis()
cli = redis.cli
try:
    def used():
        for l in cli("info", "memory").splitlines():
            if l.startswith("used_memory:"): return int(l.split(":")[1])
    now = int(time.time()); exp = now + 3600
    def member(kind, slot):
        if kind == "text": return ("127.0.0.1:%d" % (20000 + slot)).encode()
        if kind == "text+pid":   # issue 11's question: the peer_id kept in the member
            return ("127.0.0.1:%d" % (20000 + slot)).encode() + b"-qB4650-" + os.urandom(12)
        return bytes([127, 0, 0, 1]) + struct.pack(">H", 20000 + slot)
    layouts = [("2 sets, text members (today)", "text", 2, True),
               ("2 sets, compact 6-byte members", "compact", 2, True),
               ("1 set, text members, role in the score", "text", 1, True),
               ("1 set, compact members, role in the score", "compact", 1, True),
               ("1 set, compact members, no TTL", "compact", 1, False),
               ("2 sets, text + 20-byte peer_id in the member", "text+pid", 2, True),
               ("2 sets, text, + hash member -> peer_id", "text", 3, True),
               ("2 sets, text, + the statistics' stats hash", "text", 4, True)]
    for name, kind, nkeys, ttl in layouts:
        cli("flushall")
        time.sleep(0.2)
        u0 = used()
        buf = []
        for t in range(swarms):
            h = hashlib.sha1(str(t).encode()).hexdigest()
            seeds = [member(kind, s) for s in range(10) if s % 10 < 3]
            leech = [member(kind, s) for s in range(10) if s % 10 >= 3]
            if nkeys == 3:       # a hash of member -> peer_id beside the two sets
                key = "tyto:{%s}:peer_ids" % h
                args = ["HSET", key]
                for m in seeds + leech: args += [m, b"-qB4650-" + os.urandom(12)]
                buf.append(resp(*args))
                buf.append(resp("EXPIREAT", key, exp))
            if nkeys == 4:       # what lib/stats_aggregator.c leaves in a steady swarm's hash
                key = "tyto:{%s}:stats" % h
                m0 = now // 60
                buf.append(resp("HSET", key, "first", now, "s:%d" % m0, 3, "l:%d" % m0, 7,
                                "c:%d:qbittorrent" % (now // 1800), 10, "seeders4", 3, "seeders6", 0,
                                "leechers4", 7, "leechers6", 0, "max_per_address", 10, "announces", 10,
                                "checked", now, "flags", ""))
                buf.append(resp("EXPIREAT", key, exp))
            if nkeys >= 2:
                for k, ms in (("seeders", seeds), ("leechers", leech)):
                    key = "tyto:{%s}:%s" % (h, k)
                    args = ["ZADD", key]
                    for m in ms: args += [exp, m]
                    buf.append(resp(*args))
                    if ttl: buf.append(resp("EXPIREAT", key, exp))
            else:
                key = "tyto:{%s}" % h
                args = ["ZADD", key]
                for m in seeds: args += [exp, m]
                for m in leech: args += [exp + (1 << 32), m]   # leechers: score + 2^32
                buf.append(resp(*args))
                if ttl: buf.append(resp("EXPIREAT", key, exp))
        subprocess.run(["redis-cli", "-p", str(redis.port), "--pipe"], input=b"".join(buf), capture_output=True)
        u1 = used()
        nk = int(cli("dbsize").strip())
        print("%-45s %6.1f bytes/peer  (%d keys, %.0f bytes/key incl. members)" %
              (name, (u1 - u0) / (swarms * 10), nk, (u1 - u0) / nk))
finally:
    redis.stop()
    subprocess.run(["rm", "-rf", redis.dir])
