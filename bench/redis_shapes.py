#!/usr/bin/python3
"""bench/redis_shapes.py: Redis's CPU per steady announce for the announce tyto sends today and
for the schemas it could send instead, each on a Redis of its own holding only its own keys, so
that a schema change is priced before it is built.

Each shape gets a private redis-server (redis/redis.conf), SWARMS swarms (default 100,000) of 3
seeders and 7 leechers written in its schema, then ANNOUNCES re-announces (default 200,000) of
peers drawn at random from the pool, sent PIPELINE announces to a round trip (default 4: what a
tyto worker sends per round trip in bench/run's steady rows). The client here is Python and slow:
only Redis's CPU is measured (INFO cpu: used_cpu_user + used_cpu_sys, its I/O included, per
announce), with Redis's bytes per peer (used_memory's growth while the pool is written).

  today        what storage/redis.c sends with stats.enabled false: reap both sets, MULTI, ZADD own,
               ZREM other, EXPIREAT own NX and GT, PERSIST info, EXEC, ZRANDMEMBER 51 of the
               seeders (and of the leechers for a leecher), ZCARD both, HGET info downloaded
  today+stats  the same with the statistics on: the too-fast check's ZSCORE, and the minute's
               HINCRBY on the swarm's :stats hash (the worker's flush sends one per announce when no
               swarm repeats within its second, as in the steady pool)
  one-key      one sorted set per swarm: a leecher's score is its expiry, a seeder's its expiry +
               2^33 (a role change is a new score, no ZREM); reap both score ranges, the unit, one
               ZRANDMEMBER 102 of the whole set (both roles at once), a ZCOUNT per role, HGET info
  minimal      ZADD and ZRANDMEMBER 51 on one key: no reap, no TTL, no counts, no unit (not an
               answer a tracker may give: the floor of any announce that writes and samples)
Usage: [SWARMS=100000] [ANNOUNCES=200000] [PIPELINE=4] [SHAPES="today ..."] bench/redis_shapes.py"""
import os
import random
import socket
import time

from localredis import LocalRedis, resp

swarms = int(os.environ.get("SWARMS", "100000"))
announces = int(os.environ.get("ANNOUNCES", "200000"))
pipeline = int(os.environ.get("PIPELINE", "4"))
shapes = os.environ.get("SHAPES", "today today+stats one-key minimal").split()
SEEDER = 2 ** 33            # a seeder's score offset in the one-key schema
TTL = 3600


def key(i, kind):
    return "bench:{%d}:%s" % (i, kind)


def member(s):
    return "127.0.0.1:%d" % (20000 + s)


def populate(shape, now):
    """The pool in the shape's schema: 3 seeders (members 0-2) and 7 leechers (3-9) a swarm."""
    out = []
    for i in range(swarms):
        if shape in ("one-key", "minimal"):
            args = ["ZADD", key(i, "peers")]
            for s in range(10):
                args += [now + TTL + (SEEDER if s < 3 else 0), member(s)]
            out.append(resp(*args))
            if shape == "one-key":
                out.append(resp("EXPIREAT", key(i, "peers"), now + TTL))
        else:
            for kind, first, n in (("seeders", 0, 3), ("leechers", 3, 7)):
                args = ["ZADD", key(i, kind)]
                for s in range(first, first + n):
                    args += [now + TTL, member(s)]
                out.append(resp(*args))
                out.append(resp("EXPIREAT", key(i, kind), now + TTL))
            if shape == "today+stats":
                out.append(resp("HSET", key(i, "stats"), "first", now))
                out.append(resp("EXPIRE", key(i, "stats"), 2 * TTL))
        if shape != "minimal":
            out.append(resp("HSET", key(i, "info"), "downloaded", 5))
    return out


def announce(shape, i, s, now):
    """One re-announce of member s of swarm i: its commands."""
    seeder = s < 3
    m = member(s)
    exp = now + TTL
    if shape == "minimal":
        return [("ZADD", key(i, "peers"), exp, m), ("ZRANDMEMBER", key(i, "peers"), 51)]
    if shape == "one-key":
        k = key(i, "peers")
        score = exp + (SEEDER if seeder else 0)
        return [("ZREMRANGEBYSCORE", k, "-inf", now), ("ZREMRANGEBYSCORE", k, SEEDER, SEEDER + now),
                ("MULTI",), ("ZADD", k, score, m), ("EXPIREAT", k, exp, "NX"), ("EXPIREAT", k, exp, "GT"),
                ("PERSIST", key(i, "info")), ("EXEC",), ("ZRANDMEMBER", k, 102),
                ("ZCOUNT", k, "(%d" % now, SEEDER), ("ZCOUNT", k, "(%d" % (SEEDER + now), "+inf"),
                ("HGET", key(i, "info"), "downloaded")]
    ks, kl = key(i, "seeders"), key(i, "leechers")
    own, other = (ks, kl) if seeder else (kl, ks)
    cmds = [("ZREMRANGEBYSCORE", ks, "-inf", now), ("ZREMRANGEBYSCORE", kl, "-inf", now)]
    if shape == "today+stats":
        cmds.append(("ZSCORE", own, m))
    cmds += [("MULTI",), ("ZADD", own, exp, m), ("ZREM", other, m), ("EXPIREAT", own, exp, "NX"),
             ("EXPIREAT", own, exp, "GT"), ("PERSIST", key(i, "info")), ("EXEC",)]
    if not seeder:
        cmds.append(("ZRANDMEMBER", ks, 51))
    cmds += [("ZRANDMEMBER", kl, 51), ("ZCARD", ks), ("ZCARD", kl), ("HGET", key(i, "info"), "downloaded")]
    if shape == "today+stats":
        cmds.append(("HINCRBY", key(i, "stats"), "%s:%d" % ("s" if seeder else "l", now // 60), 1))
    return cmds


class Conn:
    """A raw RESP connection that sends a batch and reads as many replies back."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def _reply_end(self, pos):
        """Where the reply starting at pos ends, or None while it is incomplete."""
        eol = self.buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        t, head = self.buf[pos:pos + 1], self.buf[pos + 1:eol]
        if t == b"-":
            raise SystemExit("redis: " + head.decode())
        if t in b"+:":
            return eol + 2
        if t == b"$":
            n = int(head)
            end = eol + 2 + (n + 2 if n >= 0 else 0)
            return end if end <= len(self.buf) else None
        if t == b"*":
            pos = eol + 2
            for _ in range(max(0, int(head))):
                pos = self._reply_end(pos)
                if pos is None:
                    return None
            return pos
        raise SystemExit("unexpected RESP type %r" % t)

    def round_trip(self, cmds):
        self.sock.sendall(b"".join(resp(*c) for c in cmds))
        pos, left = 0, len(cmds)
        while left:
            end = self._reply_end(pos)
            if end is None:
                self.buf += self.sock.recv(1 << 20)
                continue
            pos, left = end, left - 1
        self.buf = self.buf[pos:]


def run(shape):
    redis = LocalRedis()
    try:
        now = int(time.time())
        used0 = int(redis.info("memory")["used_memory"])
        data = populate(shape, now)
        for off in range(0, len(data), 50000):
            redis.pipe(b"".join(data[off:off + 50000]))
        used = int(redis.info("memory")["used_memory"])
        rnd = random.Random(1)
        conn = Conn(redis.port)
        batches = []
        for _ in range(announces // pipeline):
            cmds = []
            for _ in range(pipeline):
                cmds += announce(shape, rnd.randrange(swarms), rnd.randrange(10), now)
            batches.append(cmds)
        ncmds = sum(len(b) for b in batches)
        redis.cli("config", "resetstat")
        c0 = redis.cpu_s()
        for cmds in batches:
            conn.round_trip(cmds)
        c1 = redis.cpu_s()
        n = len(batches) * pipeline
        usec = sum(f["usec"] for k, f in redis.commandstats().items() if k not in ("config", "info"))
        return dict(shape=shape, cpu=(c1 - c0) * 1e6 / n, cmd_us=usec / n, cmds=ncmds / n,
                    bpp=(used - used0) / (swarms * 10), keys=int(redis.cli("dbsize")))
    finally:
        redis.stop()


print("%d swarms of 3 seeders + 7 leechers, %d re-announces at random, %d announces a round trip"
      % (swarms, announces, pipeline))
print()
print("| shape | commands/announce | Redis CPU µs/announce (INFO cpu) | µs in commands/announce "
      "(commandstats) | keys | bytes/peer (used_memory growth) |")
print("|---|---|---|---|---|---|")
for shape in shapes:
    r = run(shape)
    print("| %s | %.1f | %.2f | %.2f | %d | %.1f |" % (r["shape"], r["cmds"], r["cpu"], r["cmd_us"], r["keys"],
                                                    r["bpp"]), flush=True)
