#!/bin/bash
# bench/listen-ab.sh OLD_TYTO NEW_TYTO [ROUNDS]: two tyto builds, 2 workers each, on one private
# Redis, interleaved rounds of the churn workload (wrk -t2 -c32, 8 s) with keep-alive and with a
# new connection per request. Prints req/s, errors, p99 and how the requests split over the two
# workers (/metrics tyto_worker_requests_total). Used to choose between one shared listening
# socket and one SO_REUSEPORT socket per worker (bench/RESULTS.md).
set -u
old=$1 new=$2 rounds=${3:-3}
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
rport=$((20000 + RANDOM % 20000)) port=$((rport + 1)) aport=$((rport + 2))
redis-server --port $rport --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
redis_pid=$!
trap 'kill $redis_pid 2>/dev/null; rm -rf "$tmp"' EXIT
sleep 0.5
printf 'listen:\n  port: %d\n  ipv4: "127.0.0.1"\n  ipv6: ""\nworkers: 2\nredis:\n  url: "redis://127.0.0.1:%d"\nlog:\n  level: warn\nswarm:\n  max_peers_per_address: 0\nadmin:\n  listen: "127.0.0.1:%d"\n' \
    $port $rport $aport >"$tmp/t.yaml"
export BENCH_DIR=bench BENCH_CHURN_HASH=$(printf churn | sha1sum | cut -c1-40)
# /metrics is on the admin listener (admin.listen); builds from before it serve it on the tracker port.
per_worker() { { curl -sf "http://127.0.0.1:$aport/metrics" || curl -s "http://127.0.0.1:$port/metrics"; } \
    | awk '/^tyto_worker_requests_total/ {printf "%s ", $2}'; }
for round in $(seq "$rounds"); do
    for bin in "$old" "$new"; do
        "$bin" -c "$tmp/t.yaml" >"$tmp/tyto.log" 2>&1 &
        pid=$!
        sleep 1.5
        redis-cli -p $rport flushall >/dev/null
        for conn in keepalive close; do
            h=()
            [ $conn = close ] && h=(-H "Connection: close")
            before=$(per_worker)
            out=$(wrk -t2 -c32 -d8s "${h[@]}" -s bench/churn.lua "http://127.0.0.1:$port/" | grep '^BENCH ')
            after=$(per_worker)
            python3 - "$round" "$bin" "$conn" "$before" "$after" "${out#BENCH }" <<'PY'
import json, sys
rnd, binary, conn, before, after, b = sys.argv[1:]
b = json.loads(b)
d = [int(float(y)) - int(float(x)) for x, y in zip(before.split(), after.split())]
share = " / ".join("%.0f%%" % (100 * v / max(1, sum(d))) for v in d)
print("round %s %-22s %-9s %6.0f req/s errors %d p99 %.2f ms workers %s" % (
    rnd, binary, conn, b["requests"] / b["duration_us"] * 1e6, b["errors"], b["p99_us"] / 1000, share))
PY
        done
        kill -TERM $pid
        wait $pid
    done
done
