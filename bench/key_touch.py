#!/usr/bin/python3
"""bench/key_touch.py: what a Redis command costs when it is the first of a request to touch its
key, against the same command on a key the request touched just before. A private redis-server
(redis/redis.conf, no tyto) holds the steady pool's shape: SWARMS swarms (default 100,000) of 3
seeders and 7 leechers, each with its `:info` and `:stats` hashes (400,000 keys, as tyto's steady
benchmark leaves them). Then CALLS pipelined requests, each on a swarm drawn at random, send the
same commands in different orders, and Redis's own INFO commandstats says each command's
microseconds a call. Usage: [SWARMS=100000] [CALLS=300000] bench/key_touch.py"""
import hashlib, os, random, time

from localredis import LocalRedis, resp

swarms = int(os.environ.get("SWARMS", "100000"))
calls = int(os.environ.get("CALLS", "300000"))
redis = LocalRedis()
cli = redis.cli


try:
    now = int(time.time())
    hexes = [hashlib.sha1(str(t).encode()).hexdigest() for t in range(swarms)]
    buf = []
    for h in hexes:
        for kind, first, n in (("seeders", 0, 3), ("leechers", 3, 7)):
            args = ["ZADD", "tyto:{%s}:%s" % (h, kind)]
            for s in range(first, first + n):
                args += [now + 3600 + s, "127.0.0.1:%d" % (20000 + s)]
            buf.append(resp(*args))
        buf.append(resp("HSET", "tyto:{%s}:info" % h, "downloaded", 5))
        buf.append(resp("HSET", "tyto:{%s}:stats" % h, "first", now, "s:%d" % (now // 60), 3))
    redis.pipe(b"".join(buf))
    print("%s keys; %d requests on random swarms, each command's usec_per_call (INFO commandstats)"
          % (cli("dbsize").strip(), calls))

    key = lambda h: "tyto:{%s}:seeders" % h
    cmds = {
        "ZREMRANGEBYSCORE": lambda h: resp("ZREMRANGEBYSCORE", key(h), "-inf", now),
        "ZCOUNT": lambda h: resp("ZCOUNT", key(h), "(%d" % now, "+inf"),
        "ZCARD": lambda h: resp("ZCARD", key(h)),
        "ZSCORE": lambda h: resp("ZSCORE", key(h), "127.0.0.1:20001"),
        "EXISTS": lambda h: resp("EXISTS", key(h)),
    }
    orders = [("ZREMRANGEBYSCORE", "ZCARD"), ("ZCARD", "ZREMRANGEBYSCORE"),
              ("ZCOUNT", "ZCARD"), ("ZCARD", "ZCOUNT"),
              ("ZSCORE", "ZCARD"), ("ZCARD", "ZSCORE"),
              ("EXISTS", "ZREMRANGEBYSCORE", "ZCOUNT")]
    rows = []
    rnd = random.Random(1)
    for order in orders:
        buf = []
        for _ in range(calls):
            h = hexes[rnd.randrange(swarms)]
            buf.extend(cmds[c](h) for c in order)
        cli("config", "resetstat")
        redis.pipe(b"".join(buf))
        stats = redis.commandstats()
        rows.append((order, [stats.get(c.lower(), {}).get("usec_per_call", 0.0) for c in order]))
    print("| request (one key, in this order) | µs a call, in the same order |")
    print("|---|---|")
    for order, us in rows:
        print("| %s | %s |" % (" → ".join("`%s`" % c for c in order), " → ".join("%.2f" % u for u in us)))
finally:
    redis.stop()
