#!/bin/sh
# bench/udp.sh: UDP (BEP 15) announces per second and tyto CPU per announce, on loopback, with
# its own Redis. bench/udp_load.c is the client (a closed loop per socket, ids reused as
# libtorrent does, every reply checked). Only processes this script started are signalled.
#
#   bench/udp.sh                    DURATION=10 WORKERS=1 SOCKETS=16 WINDOW=8 SWARMS=1000
#   TYTO_BIN=build/tyto bench/udp.sh
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${TYTO_BIN:-$root/tyto}
duration=${DURATION:-10}
workers=${WORKERS:-1}
sockets=${SOCKETS:-16}
window=${WINDOW:-8}
swarms=${SWARMS:-1000}
dir=$(mktemp -d "${TMPDIR:-/tmp}/tyto-udp-bench.XXXXXX")
redis_pid=""
tyto_pid=""
cleanup() {
    [ -n "$tyto_pid" ] && kill "$tyto_pid" 2>/dev/null && wait "$tyto_pid" 2>/dev/null
    [ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

cc -O2 -o "$dir/udp_load" "$root/bench/udp_load.c"
redis-server "$root/redis/redis.conf" --port 0 --unixsocket "$dir/redis.sock" --save '' --dir "$dir" \
    --logfile "$dir/redis.log" &
redis_pid=$!
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
udp=$(python3 -c 'import socket; s=socket.socket(type=socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$dir/tyto.yaml" <<CFG
listen: {port: $port, udp_port: $udp, ipv4: "127.0.0.1", ipv6: ""}
workers: $workers
redis: {url: "unix://$dir/redis.sock"}
udp: {secret: "bench"}
admin: {listen: ""}
swarm: {max_peers_per_address: 0}
log: {file: "$dir/tyto.log"}
CFG
"$bin" -c "$dir/tyto.yaml" &
tyto_pid=$!
i=0
until python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/healthz', timeout=1)" 2>/dev/null; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "tyto did not start; log:"; cat "$dir/tyto.log"; exit 1; }
    sleep 0.1
done
# CPU ticks of the workers (children of the master) and of Redis.
ticks() {
    t=0
    for p in $(cat "/proc/$tyto_pid/task/$tyto_pid/children") "$1"; do
        set -- $(cut -d' ' -f14,15 "/proc/$p/stat")
        t=$((t + $1 + $2))
    done
    echo $t
}
tk=$(getconf CLK_TCK)
before=$(ticks "$redis_pid")
tyto_before=$(ticks "$tyto_pid")    # tyto_pid itself: the master (idle)
out=$("$dir/udp_load" 127.0.0.1 "$udp" "$duration" "$sockets" "$window" "$swarms" 60) || { echo "$out"; exit 1; }
after=$(ticks "$redis_pid")
tyto_after=$(ticks "$tyto_pid")
echo "$out"
n=$(echo "$out" | sed -n 's/^udp_load: \([0-9]*\) announces.*/\1/p')
python3 - "$n" "$before" "$after" "$tyto_before" "$tyto_after" "$tk" "$workers" <<'PY'
import sys
n, b, a, tb, ta, tk, w = (int(x) for x in sys.argv[1:])
both_us = (a - b) / tk * 1e6 / max(n, 1)
tyto_us = (ta - tb) / tk * 1e6 / max(n, 1)
print("udp: workers %d, %d announces, tyto workers %.1f us CPU per announce, tyto + Redis %.1f us"
      % (w, n, tyto_us, both_us))
PY
