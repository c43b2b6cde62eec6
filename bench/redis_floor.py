#!/usr/bin/python3
"""bench/redis_floor.py: the least CPU Redis can spend on one request of the steady pool's shape,
whatever tyto sends, so that a design's Redis cost can be compared with a floor and not only
with opentracker's whole request.

A private redis-server (redis/redis.conf) holds SWARMS swarms (default 100,000) of 3 seeders and 7
leechers with an `:info` hash each (300,000 keys), named as redis-benchmark's `__rand_int__`
draws them. Then redis-benchmark (C, `-c 32`, pipelines of PIPELINE requests, default 4: what a
tyto worker sends per round trip in the steady rows of bench/run) runs each shape CALLS times
(default 1,000,000) on swarms drawn at random:
  PING                      no key: reading, dispatching and answering a command, nothing else
  ZSCORE <seeders> member   one read of one swarm's key (the first touch of the key)
  ZADD <seeders> XX …       one write of one swarm's key: a peer's new expiry, the least an
                            announce must write
  ZRANDMEMBER <leechers> 50 the sample alone (numwant=50)
Reported per call: Redis's whole CPU (INFO cpu: used_cpu_user + used_cpu_sys, I/O included) and
the time inside the command (INFO commandstats). Usage:
  [SWARMS=100000] [CALLS=1000000] [PIPELINE=4] bench/redis_floor.py"""
import os
import subprocess
import time

from localredis import LocalRedis, resp

swarms = int(os.environ.get("SWARMS", "100000"))
calls = int(os.environ.get("CALLS", "1000000"))
pipeline = int(os.environ.get("PIPELINE", "4"))
redis = LocalRedis()
cli = redis.cli

# redis-benchmark's __rand_int__ is a random number below -r, written with 12 digits.
KEY = "bench:{%012d}:%s"
SHAPES = [
    ("PING", ["ping"]),
    ("ZSCORE seeders member", ["zscore", "bench:{__rand_int__}:seeders", "127.0.0.1:20001"]),
    ("ZADD seeders XX score member", ["zadd", "bench:{__rand_int__}:seeders", "XX", "%d" % (2 ** 31 - 1),
                                      "127.0.0.1:20001"]),
    ("ZRANDMEMBER leechers 50", ["zrandmember", "bench:{__rand_int__}:leechers", "50"]),
]


try:
    now = int(time.time())
    buf = []
    for i in range(swarms):
        for kind, first, n in (("seeders", 0, 3), ("leechers", 3, 7)):
            args = ["ZADD", KEY % (i, kind)]
            for s in range(first, first + n):
                args += [now + 3600 + s, "127.0.0.1:%d" % (20000 + s)]
            buf.append(resp(*args))
        buf.append(resp("HSET", KEY % (i, "info"), "downloaded", 5))
        if len(buf) > 30000:
            redis.pipe(b"".join(buf))
            buf = []
    redis.pipe(b"".join(buf))
    print("%s keys, redis-benchmark -c 32 -P %d -r %d -n %d, per call:" % (cli("dbsize").strip(), pipeline,
                                                                          swarms, calls))
    print()
    print("| shape | Redis CPU µs/call (INFO cpu) | µs/call inside the command (commandstats) |")
    print("|---|---|---|")
    for name, argv in SHAPES:
        cli("config", "resetstat")
        c0 = redis.cpu_s()
        subprocess.run(["redis-benchmark", "-p", str(redis.port), "-c", "32", "-P", str(pipeline), "-r",
                        str(swarms), "-n", str(calls), "-q"] + argv, check=True, capture_output=True)
        c1 = redis.cpu_s()
        fields = redis.commandstats().get(argv[0], {})
        n = int(fields.get("calls", 0))
        if n < calls:
            raise SystemExit("%s: %d calls of %d ran" % (name, n, calls))
        print("| %s | %.2f | %.2f |" % (name, (c1 - c0) * 1e6 / n, float(fields["usec_per_call"])))
finally:
    redis.stop()
