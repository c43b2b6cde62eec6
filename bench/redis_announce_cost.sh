#!/bin/bash
# bench/redis_announce_cost.sh: Redis's cost per announce of one tyto build, on loopback.
# Starts a private redis-server (redis/redis.conf, no snapshots) and tyto (workers 1), drives
# bench/steady.lua (90 % re-announces, 4 % started, 4 % stopped, 2 % completed; numwant 50) with
# wrk for DURATION seconds, and prints, per announce: Redis commands (INFO commandstats calls),
# Redis command time (commandstats usec) and Redis CPU (INFO cpu user+sys), plus the commands
# by name. Stops only the processes it started, by PID.
# WORKLOAD=churn drives bench/churn.lua instead (every request a new peer of one swarm).
# STATS=false turns the swarm statistics off (stats.enabled; default true, as in tyto.yaml).
# Usage: TYTO_BIN=./tyto [DURATION=5] [PEERS=20000] [TORRENTS=2000] [WORKLOAD=steady] [STATS=true] bench/redis_announce_cost.sh
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${TYTO_BIN:-$root/tyto}
duration=${DURATION:-5}
peers=${PEERS:-20000}
torrents=${TORRENTS:-2000}
workload=${WORKLOAD:-steady}
stats=${STATS:-true}
d=$(mktemp -d /tmp/tyto-cost.XXXXXX)
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(free_port)
tport=$(free_port)
redis-server "$root/redis/redis.conf" --port "$rport" --bind 127.0.0.1 --save '' --dir "$d" \
    --logfile "$d/redis.log" --daemonize no >/dev/null 2>&1 &
rpid=$!
tpid=""
cleanup() { [ -n "$tpid" ] && kill "$tpid" 2>/dev/null; kill "$rpid" 2>/dev/null; wait 2>/dev/null; rm -rf "$d"; }
trap cleanup EXIT
for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done
/usr/bin/python3 -c "
import hashlib
print(''.join(hashlib.sha1(str(i).encode()).hexdigest() + '\n' for i in range($torrents)), end='')" >"$d/hashes.txt"
cat >"$d/tyto.yaml" <<YAML
listen:
  port: $tport
  ipv4: "127.0.0.1"
  ipv6: ""
workers: 1
redis:
  url: "redis://127.0.0.1:$rport"
  prefix: "cost:"
swarm:
  max_peers_per_address: 0
admin:
  listen: ""
stats:
  enabled: $stats
log:
  level: warn
YAML
"$bin" -c "$d/tyto.yaml" >"$d/tyto.log" 2>&1 &
tpid=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$tport/healthz" && break; sleep 0.05; done
cpu() { redis-cli -p "$rport" info cpu | awk -F: '/used_cpu_(user|sys):/ {s += $2} END {printf "%.6f", s}'; }
redis-cli -p "$rport" config resetstat >/dev/null
c0=$(cpu)
out=$(BENCH_DIR="$root/bench" BENCH_HASHES="$d/hashes.txt" BENCH_PEERS=$peers BENCH_TORRENTS=$torrents \
      BENCH_CHURN_HASH=$(printf churn | sha1sum | cut -c1-40) \
      wrk -t1 -c16 -d"${duration}s" -s "$root/bench/$workload.lua" "http://127.0.0.1:$tport/" 2>&1)
c1=$(cpu)
n=$(echo "$out" | awk '/requests in/ {print $1}')
redis-cli -p "$rport" info commandstats | tr -d '\r' | grep '^cmdstat_' >"$d/cs.txt"
/usr/bin/python3 - "$d/cs.txt" "$n" "$c0" "$c1" <<'PY'
import sys
path, n, c0, c1 = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
rows = []
for line in open(path):
    name, rest = line[len('cmdstat_'):].split(':', 1)
    f = dict(kv.split('=') for kv in rest.split(','))
    if name in ('config', 'info', 'ping'):
        continue
    rows.append((name, int(f['calls']), int(f['usec'])))
calls = sum(r[1] for r in rows)
usec = sum(r[2] for r in rows)
print('announces %d: Redis commands/announce %.2f, command time %.2f us/announce, Redis CPU %.2f us/announce'
      % (n, calls / n, usec / n, (c1 - c0) * 1e6 / n))
for name, c, u in sorted(rows, key=lambda r: -r[2]):
    print('  %-18s %6.3f calls/announce  %6.2f us/announce' % (name, c / n, u / n))
PY
