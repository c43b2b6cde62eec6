#!/bin/bash
# bench/sample_cost.sh: Redis's own cost (INFO commandstats usec_per_call) of the two ways
# storage/redis.c samples a sorted set: ZRANDMEMBER key n+1, and REDIS_WINDOWS (4) ZRANGE rank
# windows of ceil((n+1)/4) at random ranks (redis_send_sample), for set sizes SIZES and numwant
# 50 and 200. Members are text "10.a.b.c:port" as tyto writes them. Private redis-server on a free
# port; stops only it. Usage: [SIZES="1000 10000 300000"] [CALLS=3000] bench/sample_cost.sh
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
sizes=${SIZES:-"1000 10000 300000"}
calls=${CALLS:-3000}
d=$(mktemp -d /tmp/tyto-sample.XXXXXX)
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server "$root/redis/redis.conf" --port "$port" --bind 127.0.0.1 --save '' --dir "$d" \
    --logfile "$d/redis.log" --daemonize no >/dev/null 2>&1 &
rpid=$!
trap 'kill $rpid 2>/dev/null; wait 2>/dev/null; rm -rf "$d"' EXIT
for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
/usr/bin/python3 - "$port" "$sizes" "$calls" <<'PY'
import random, subprocess, sys
port, sizes, calls = sys.argv[1], [int(x) for x in sys.argv[2].split()], int(sys.argv[3])
def resp(*a):
    out = ["*%d\r\n" % len(a)]
    for x in a:
        x = str(x); out.append("$%d\r\n%s\r\n" % (len(x.encode()), x))
    return "".join(out)
def pipe(cmds):
    subprocess.run(["redis-cli", "-p", port, "--pipe"], input="".join(cmds).encode(), capture_output=True, check=True)
def stats():
    out = subprocess.run(["redis-cli", "-p", port, "info", "commandstats"], capture_output=True, text=True).stdout
    r = {}
    for l in out.splitlines():
        if l.startswith("cmdstat_"):
            name, rest = l[8:].split(":", 1)
            f = dict(kv.split("=") for kv in rest.strip().split(","))
            r[name] = (int(f["calls"]), int(f["usec"]))
    return r
print("| set size | numwant | ZRANDMEMBER n+1 us | 4 x ZRANGE window us (sum) | ratio |")
print("|---|---|---|---|---|")
for n in sizes:
    key = "s%d" % n
    cmds = []
    for i in range(0, n, 500):
        a = ["ZADD", key]
        for j in range(i, min(n, i + 500)):
            a += [2000000000 + j, "10.%d.%d.%d:%d" % (j >> 16 & 255, j >> 8 & 255, j & 255, 1024 + j % 60000)]
        cmds.append(resp(*a))
    pipe(cmds)
    for numwant in (50, 200):
        f = numwant + 1
        w = (f + 3) // 4
        subprocess.run(["redis-cli", "-p", port, "config", "resetstat"], capture_output=True)
        pipe([resp("ZRANDMEMBER", key, f) for _ in range(calls)])
        zr = stats()["zrandmember"]
        subprocess.run(["redis-cli", "-p", port, "config", "resetstat"], capture_output=True)
        cmds = []
        for _ in range(calls):
            u = random.randrange(n)
            for k in range(4):
                a = (u + k * (n // 4)) % n
                cmds.append(resp("ZRANGE", key, a, min(a + w - 1, n - 1)))
        pipe(cmds)
        zg = stats()["zrange"]
        a_us, b_us = zr[1] / zr[0], 4 * zg[1] / zg[0]
        print("| %d | %d | %.2f | %.2f | %.2f |" % (n, numwant, a_us, b_us, b_us / a_us))
PY
