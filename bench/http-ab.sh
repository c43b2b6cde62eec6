#!/bin/bash
# bench/http-ab.sh A_TYTO B_TYTO [ROUNDS] [MODE] [WORKLOAD]: the HTTP front's A/B test. Two tyto
# builds (1 worker each), each on its own private Redis, both running; ROUNDS (default 5)
# alternating rounds of WORKLOAD (default steady: 1,000 torrents, 10,000 peers) with wrk -t1 -c16
# for SECS (default 4) seconds, MODE close (a new connection per request, the default) or
# keepalive. Prints each run's req/s, the worker's CPU per request (/proc/PID/stat) and Redis's
# (INFO cpu), and the medians per build. Every reply is checked by the wrk script (a run with
# errors is reported as such). Only the processes it started are stopped.
set -u
a=$(realpath "$1") b=$(realpath "$2") rounds=${3:-5} mode=${4:-close} workload=${5:-steady}
secs=${SECS:-4} conns=${CONNS:-16}
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
python3 -c 'import hashlib
for i in range(1000): print(hashlib.sha1(str(i).encode()).hexdigest())' >"$tmp/hashes.txt"
declare -A port rport wpid
for side in A B; do
    bin=$a; [ $side = B ] && bin=$b
    read -r rport[$side] port[$side] < <(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
    redis-server --port ${rport[$side]} --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
    pids+=($!)
    for _ in $(seq 50); do redis-cli -p ${rport[$side]} ping >/dev/null 2>&1 && break; sleep 0.1; done
    printf 'listen:\n  port: %d\n  ipv4: "127.0.0.1"\n  ipv6: ""\nworkers: 1\nredis:\n  url: "redis://127.0.0.1:%d"\nlog:\n  level: warn\nswarm:\n  max_peers_per_address: 0\nadmin:\n  listen: ""\n' \
        ${port[$side]} ${rport[$side]} >"$tmp/$side.yaml"
    "$bin" -c "$tmp/$side.yaml" >"$tmp/$side.log" 2>&1 &
    pids+=($!)
    master=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:${port[$side]}/healthz" >/dev/null && break; sleep 0.1; done
    wpid[$side]=$(cat /proc/$master/task/*/children | awk '{print $1; exit}')
done
ticks() { awk '{s=substr($0, index($0, ") ") + 2); split(s, f, " "); print f[12] + f[13]}' /proc/$1/stat; }
rcpu() { redis-cli -p $1 info cpu | awk -F: '/used_cpu_(user|sys):/ {s += $2} END {printf "%.6f", s}'; }
h=()
[ "$mode" = close ] && h=(-H "Connection: close")
export BENCH_DIR=bench BENCH_HASHES="$tmp/hashes.txt" BENCH_TORRENTS=1000 BENCH_PEERS=10000 \
    BENCH_CHURN_HASH=$(printf churn | sha1sum | cut -c1-40)
for round in $(seq "$rounds"); do
    for side in A B; do
        t0=$(ticks ${wpid[$side]}) r0=$(rcpu ${rport[$side]})
        out=$(wrk -t1 -c$conns -d${secs}s "${h[@]}" -s bench/$workload.lua "http://127.0.0.1:${port[$side]}/" | grep '^BENCH ')
        t1=$(ticks ${wpid[$side]}) r1=$(rcpu ${rport[$side]})
        python3 - "$side" "$round" "$t0" "$t1" "$r0" "$r1" "${out#BENCH }" "$(getconf CLK_TCK)" <<'PY' | tee -a "$tmp/rows"
import json, sys
side, rnd, t0, t1, r0, r1, b, hz = sys.argv[1:]
b = json.loads(b)
n = max(1, b["requests"])
print("%s %s rps %.0f worker_us %.2f redis_us %.2f errors %d" % (
    side, rnd, n / b["duration_us"] * 1e6, (int(t1) - int(t0)) / int(hz) * 1e6 / n,
    (float(r1) - float(r0)) * 1e6 / n, b["errors"]))
PY
    done
done
python3 - "$tmp/rows" "$a" "$b" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
for side, name in (("A", sys.argv[2]), ("B", sys.argv[3])):
    r = [x for x in rows if x[0] == side]
    med = lambda i: statistics.median(float(x[i]) for x in r)
    print("median %s %s: rps %.0f worker_us %.2f redis_us %.2f errors %d" % (
        side, name, med(3), med(5), med(7), sum(int(x[9]) for x in r)))
PY
