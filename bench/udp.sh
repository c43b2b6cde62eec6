#!/bin/sh
# bench/udp.sh: UDP (BEP 15) announces per second and CPU per announce, on loopback: tyto with
# its own Redis, then Debian's opentracker (-P, whitelist mode with the benchmark's info-hashes)
# when it is installed, and the ratio. bench/udp_load.c is the client (a closed loop per socket,
# ids reused as libtorrent does, every reply checked). Only processes this script started are
# signalled.
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
ot_pid=""
cleanup() {
    for p in $ot_pid $tyto_pid $redis_pid; do kill "$p" 2>/dev/null || true; done
    for p in $ot_pid $tyto_pid $redis_pid; do wait "$p" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

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
        # shellcheck disable=SC2046  # two numbers, split on purpose
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

command -v opentracker >/dev/null || { echo "opentracker: not installed, no comparison"; exit 0; }
kill "$tyto_pid"; wait "$tyto_pid" 2>/dev/null || true; tyto_pid=""
# The info-hashes udp_load sends: the swarm number (4 bytes, big-endian), then 16 zero bytes.
python3 -c "import sys; [print('%08x' % i + '0' * 32) for i in range($swarms)]" >"$dir/whitelist"
ot_udp=$(python3 -c 'import socket; s=socket.socket(type=socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ot_tcp=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
{
    echo "listen.udp 127.0.0.1:$ot_udp"
    echo "listen.tcp 127.0.0.1:$ot_tcp"
    if [ "$(id -u)" -eq 0 ]; then       # opentracker will not keep root: chroot and drop
        user=_opentracker; id "$user" >/dev/null 2>&1 || user=nobody
        echo "tracker.rootdir $dir"; echo "tracker.user $user"; echo "access.whitelist ./whitelist"
        chmod 755 "$dir"; chmod 644 "$dir/whitelist"
    else
        echo "access.whitelist $dir/whitelist"
    fi
} >"$dir/opentracker.conf"
(cd "$dir" && exec opentracker -f "$dir/opentracker.conf" >"$dir/opentracker.log" 2>&1) &
ot_pid=$!
i=0
until "$dir/udp_load" 127.0.0.1 "$ot_udp" 0.5 1 1 "$swarms" 60 >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -gt 60 ] && { echo "opentracker did not serve the whitelist; log:"; cat "$dir/opentracker.log"; exit 1; }
    sleep 0.5
done
# shellcheck disable=SC2046  # two numbers, split on purpose
ot_ticks() { set -- $(cut -d' ' -f14,15 "/proc/$ot_pid/stat"); echo $(($1 + $2)); }
ob=$(ot_ticks)
oout=$("$dir/udp_load" 127.0.0.1 "$ot_udp" "$duration" "$sockets" "$window" "$swarms" 60) || { echo "$oout"; exit 1; }
oa=$(ot_ticks)
echo "$oout"
on=$(echo "$oout" | sed -n 's/^udp_load: \([0-9]*\) announces.*/\1/p')
python3 - "$n" "$on" "$ob" "$oa" "$tk" "$duration" <<'PY'
import sys
n, on, ob, oa, tk, d = (float(x) for x in sys.argv[1:])
print("opentracker: %d announces, %.1f us CPU per announce; tyto/opentracker announces/s: %.2fx"
      % (on, (oa - ob) / tk * 1e6 / max(on, 1), n / max(on, 1)))
PY
