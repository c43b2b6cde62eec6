#!/bin/bash
# bench/callgrind.sh [TYTO] [WORKLOAD] [SECONDS]: instructions per request of one tyto worker,
# counted by callgrind (repeatable whatever else the machine does). Starts a private Redis and
# one tyto (workers: 1) under callgrind, runs WORKLOAD (steady: 1,000 torrents, 10,000 peers;
# churn; scrape) for SECONDS (default 15) over one keep-alive connection, then prints the
# worker's instructions per request and its top functions. Only its own processes are stopped.
# CLOSE=1: a new connection per request (wrk -H 'Connection: close'); CG_OUT=FILE keeps the
# worker's callgrind profile (for callgrind_annotate --inclusive=yes).
set -eu
bin=$(realpath "${1:-./tyto}") workload=${2:-steady} secs=${3:-15}
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
rport=$((20000 + RANDOM % 20000)) port=$((rport + 1))
redis-server --port $rport --bind 127.0.0.1 --save '' --appendonly no >/dev/null 2>&1 &
redis_pid=$!
tyto_pid=
cleanup() { [ -n "$tyto_pid" ] && kill "$tyto_pid" 2>/dev/null; kill $redis_pid 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
printf 'listen:\n  port: %d\n  ipv4: "127.0.0.1"\n  ipv6: ""\nworkers: 1\nredis:\n  url: "redis://127.0.0.1:%d"\nlog:\n  level: warn\nswarm:\n  max_peers_per_address: 0\nadmin:\n  listen: ""\n' \
    $port $rport >"$tmp/t.yaml"
python3 -c 'import hashlib
for i in range(1000): print(hashlib.sha1(str(i).encode()).hexdigest())' >"$tmp/hashes.txt"
valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.%p" "$bin" -c "$tmp/t.yaml" >"$tmp/tyto.log" 2>&1 &
tyto_pid=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.2; done
out=$(BENCH_DIR=bench BENCH_HASHES="$tmp/hashes.txt" BENCH_TORRENTS=1000 BENCH_PEERS=10000 \
    BENCH_CHURN_HASH=$(printf churn | sha1sum | cut -c1-40) \
    wrk -t1 -c1 -d${secs}s ${CLOSE:+-H 'Connection: close'} -s "bench/$workload.lua" "http://127.0.0.1:$port/" | grep '^BENCH')
requests=$(echo "$out" | sed 's/.*"requests":\([0-9]*\).*/\1/')
case "$out" in *'"errors":0,'*) ;; *) echo "errors in the run: $out" >&2; exit 1 ;; esac
kill -TERM $tyto_pid
wait $tyto_pid || true
tyto_pid=
worker=$(ls -S "$tmp"/cg.* | head -1)        # the worker's profile is the larger one
[ -n "${CG_OUT:-}" ] && cp "$worker" "$CG_OUT"
total=$(callgrind_annotate "$worker" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "$bin $workload: $total instructions in the worker for $requests requests: $((total / requests)) per request"
callgrind_annotate "$worker" 2>/dev/null | sed -n '/file:function/,$p' | sed -n 3,17p | cut -c1-130
