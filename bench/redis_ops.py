#!/usr/bin/env python3
"""bench/redis_ops.py: what the design's open Redis choices cost, measured inside Redis.

Starts a private redis-server with redis/redis.conf on a free loopback port and, for swarms of
several sizes, compares (INFO commandstats usec_per_call, i.e. Redis's own execution time per
command, whatever the client costs):
  - peer sampling: ZRANDMEMBER key 51 with text members ("a.b.c.d:port") against compact ones
    (6 bytes), and WITHSCORES (what reaping "from a sample" would need) against without;
  - reaping: ZREMRANGEBYSCORE key -inf now when nothing has expired (the every-announce case);
then the memory per peer of text and compact members with the shipped listpack settings
(used_memory / peers, PEERS peers in SWARMS swarms).

Environment: PEERS [200000], SWARMS [20000], CALLS [3000] per measurement.
"""

import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from localredis import commandstats, free_port, resp

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PEERS = int(os.environ.get("PEERS", "200000"))
SWARMS = int(os.environ.get("SWARMS", "20000"))
CALLS = int(os.environ.get("CALLS", "3000"))
NOW = 1764403200
TTL = 2700


class Redis:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.f = self.sock.makefile("rb")

    def read(self):
        line = self.f.readline()
        t, rest = line[:1], line[1:-2]
        if t == b"-":
            raise RuntimeError(rest.decode())
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self.f.read(n + 2)[:-2]
        if t == b"*":
            return [self.read() for _ in range(int(rest))]
        return int(rest) if t == b":" else rest

    def pipe(self, cmds, chunk=2000):
        out = []
        for i in range(0, len(cmds), chunk):
            part = cmds[i:i + chunk]
            self.sock.sendall(b"".join(resp(*c) for c in part))
            out += [self.read() for _ in part]
        return out

    def cmd(self, *args):
        return self.pipe([args])[0]

    def info(self, section):
        text = self.cmd("INFO", section).decode()
        return dict(l.split(":", 1) for l in text.splitlines() if ":" in l and not l.startswith("#"))


def member(i, compact):
    a, b, c, port = 10, (i >> 16) & 255, (i >> 8) & 255, 1024 + (i * 7919) % 60000
    if compact:
        return bytes([a, b, c, i & 255, port >> 8, port & 255])
    return ("%d.%d.%d.%d:%d" % (a, b, c, i & 255, port)).encode()


def usec_per_call(r, cmds):
    """Runs cmds; returns Redis's usec per call of the (single) command they use."""
    r.cmd("CONFIG", "RESETSTAT")
    r.pipe(cmds)
    return commandstats(r.info("commandstats"))[cmds[0][0].lower()]["usec_per_call"]


def main():
    if not shutil.which("redis-server"):
        sys.exit("redis-server is not installed")
    tmp = tempfile.mkdtemp(prefix="tyto-redis-ops.")
    port = free_port()
    proc = subprocess.Popen(["redis-server", os.path.join(ROOT, "redis", "redis.conf"), "--port", str(port),
                             "--bind", "127.0.0.1", "--dir", tmp, "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                r = Redis(port)
                r.cmd("PING")
                break
            except OSError:
                time.sleep(0.1)
        print("Redis %s, redis/redis.conf; Redis-side usec per call (INFO commandstats), %d calls each"
              % (r.info("server")["redis_version"], CALLS))
        print()
        print("| swarm size | ZRANDMEMBER 51 text | compact | compact/text | text WITHSCORES | "
              "ZREMRANGEBYSCORE (nothing expired) |")
        print("|---|---|---|---|---|---|")
        for size in (10, 50, 120, 1000, 10000, 100000):
            row = []
            for compact in (False, True):
                key = "s:%d:%d" % (size, compact)
                r.pipe([("ZADD", key, NOW + random.randint(1, TTL), member(i, compact)) for i in range(size)])
                row.append(usec_per_call(r, [("ZRANDMEMBER", key, 51)] * CALLS))
            ws = usec_per_call(r, [("ZRANDMEMBER", "s:%d:0" % size, 51, "WITHSCORES")] * CALLS)
            reap = usec_per_call(r, [("ZREMRANGEBYSCORE", "s:%d:0" % size, "-inf", NOW)] * CALLS)
            print("| %d | %.2f | %.2f | %.2f | %.2f | %.2f |" % (size, row[0], row[1], row[1] / row[0], ws, reap))
        r.cmd("FLUSHALL")
        print()
        print("Memory: %d peers in %d swarms (used_memory growth / peers, members split over the two "
              "sets as 3 seeders : 7 leechers)" % (PEERS, SWARMS))
        print()
        print("| members | bytes per peer | keys |")
        print("|---|---|---|")
        for compact in (False, True):
            r.cmd("FLUSHALL")
            base = int(r.info("memory")["used_memory"])
            cmds = []
            for p in range(PEERS):
                t = p % SWARMS
                kind = "seeders" if (p // SWARMS) % 10 < 3 else "leechers"
                cmds.append(("ZADD", "tyto:{%040x}:%s" % (t, kind), NOW + TTL, member(p, compact)))
                cmds.append(("EXPIRE", "tyto:{%040x}:%s" % (t, kind), TTL))
            r.pipe(cmds)
            used = int(r.info("memory")["used_memory"])
            print("| %s | %.1f | %d |" % ("compact (6 bytes)" if compact else "text (a.b.c.d:port)",
                                          (used - base) / PEERS, r.cmd("DBSIZE")))
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
