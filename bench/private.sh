#!/bin/bash
# bench/private.sh: private announces beside public ones, on one tyto build and one Redis, on
# loopback. Starts a private redis-server (redis/redis.conf, no snapshots), writes BENCH_USERS
# users (passkeys) and approves the BENCH_TORRENTS torrents by writing the keys of private mode's
# schema (README "Private tracker (BEP 27)"), then runs, against the same Redis:
#   public   tyto with private.enabled false, bench/steady.lua on /announce
#   private  tyto with private.enabled true (its own key prefix), bench/private.lua on
#            /<passkey>/announce with growing uploaded/downloaded counters (credited bytes)
# each for DURATION seconds with wrk (-t1 -c16, workers 1), and prints per phase: announces/s,
# bad replies, Redis commands per announce (INFO commandstats), Redis command time and Redis CPU
# (INFO cpu user+sys) per announce, and the commands by name. Stops only what it started, by PID.
# Usage: TYTO_BIN=./tyto [DURATION=5] [PEERS=20000] [TORRENTS=2000] [USERS=1000] bench/private.sh
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${TYTO_BIN:-$root/tyto}
duration=${DURATION:-5}
peers=${PEERS:-20000}
torrents=${TORRENTS:-2000}
users=${USERS:-1000}
command -v wrk >/dev/null || { echo "private.sh: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
d=$(mktemp -d /tmp/tyto-private-bench.XXXXXX)
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rport=$(free_port)
redis-server "$root/redis/redis.conf" --port "$rport" --bind 127.0.0.1 --save '' --dir "$d" \
    --logfile "$d/redis.log" --daemonize no >/dev/null 2>&1 &
rpid=$!
tpid=""
stop_tyto() {
    if [ -n "$tpid" ]; then
        kill "$tpid" 2>/dev/null || true
        wait "$tpid" 2>/dev/null || true
        tpid=""
    fi
}
cleanup() { stop_tyto; kill "$rpid" 2>/dev/null; wait 2>/dev/null; rm -rf "$d"; }
trap cleanup EXIT
for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.05; done

# Torrents (sha1 of the index, as bench/run), users u0..u(N-1) with passkeys, approvals: the
# private-mode keys under the prefix "priv:", written as Redis protocol through redis-cli --pipe.
/usr/bin/python3 - "$torrents" "$users" "$d" <<'PY'
import hashlib, random, string, sys, time
torrents, users, d = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
hashes = [hashlib.sha1(str(i).encode()).hexdigest() for i in range(torrents)]
open(d + '/hashes.txt', 'w').write(''.join(h + '\n' for h in hashes))
rng = random.Random(1)
alphabet = string.digits + string.ascii_letters
now = str(int(time.time()))
P = 'priv:'
def cmd(*args):
    out = ['*%d\r\n' % len(args)]
    for a in args:
        a = str(a)
        out.append('$%d\r\n%s\r\n' % (len(a.encode()), a))
    return ''.join(out)
with open(d + '/passkeys.txt', 'w') as pk, open(d + '/load.resp', 'w') as f:
    for i in range(users):
        name, key = 'u%d' % i, ''.join(rng.choice(alphabet) for _ in range(32))
        pk.write(key + '\n')
        f.write(cmd('HSET', P + '{private}:user:' + name, 'name', name, 'passkey', key, 'enabled', 1,
                    'can_leech', 1, 'expires', 0, 'uploaded', 0, 'downloaded', 0, 'snatches', 0,
                    'created', now))
        f.write(cmd('SET', P + '{private}:passkey:' + key, name))
        f.write(cmd('SADD', P + '{private}:users', name))
    for h in hashes:
        f.write(cmd('HSET', P + '{' + h + '}:torrent', 'added', now, 'freeleech', 0, 'neutral', 0,
                    'up', '1', 'down', '1'))
PY
redis-cli -p "$rport" --pipe <"$d/load.resp" >"$d/load.out" || { cat "$d/load.out" >&2; exit 1; }

cpu() { redis-cli -p "$rport" info cpu | awk -F: '/used_cpu_(user|sys):/ {s += $2} END {printf "%.6f", s}'; }

# phase NAME PREFIX PRIVATE(true|false) SCRIPT
phase() {
    local name=$1 prefix=$2 private=$3 script=$4 tport
    tport=$(free_port)
    cat >"$d/tyto-$name.yaml" <<YAML
listen:
  port: $tport
  ipv4: "127.0.0.1"
  ipv6: ""
  udp_port: 0
workers: 1
redis:
  url: "redis://127.0.0.1:$rport"
  prefix: "$prefix"
swarm:
  max_peers_per_address: 0
admin:
  listen: ""
log:
  level: warn
private:
  enabled: $private
YAML
    "$bin" -c "$d/tyto-$name.yaml" >"$d/tyto-$name.log" 2>&1 &
    tpid=$!
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$tport/healthz" && break; sleep 0.05; done
    redis-cli -p "$rport" config resetstat >/dev/null
    local c0 c1 out n
    c0=$(cpu)
    out=$(BENCH_DIR="$root/bench" BENCH_HASHES="$d/hashes.txt" BENCH_PEERS=$peers BENCH_TORRENTS=$torrents \
          BENCH_USERS=$users BENCH_PASSKEYS="$d/passkeys.txt" \
          wrk -t1 -c16 -d"${duration}s" -s "$root/bench/$script" "http://127.0.0.1:$tport/" 2>&1)
    c1=$(cpu)
    stop_tyto
    n=$(echo "$out" | awk '/requests in/ {print $1}')
    redis-cli -p "$rport" info commandstats | tr -d '\r' | grep '^cmdstat_' >"$d/cs-$name.txt"
    echo "$out" | grep -E '^BENCH ' >"$d/bench-$name.json" || { echo "$out" >&2; exit 1; }
    /usr/bin/python3 - "$name" "$d/cs-$name.txt" "$d/bench-$name.json" "$n" "$c0" "$c1" "$duration" <<'PY'
import json, sys
name, path, bpath, n, c0, c1, secs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), \
    float(sys.argv[5]), float(sys.argv[6]), float(sys.argv[7])
b = json.loads(open(bpath).read()[len('BENCH '):])
rows = []
for line in open(path):
    cmd, rest = line[len('cmdstat_'):].split(':', 1)
    f = dict(kv.split('=') for kv in rest.split(','))
    if cmd.split('|')[0] in ('config', 'info', 'ping', 'function'):
        continue
    rows.append((cmd, int(f['calls']), int(f['usec'])))
calls = sum(r[1] for r in rows)
usec = sum(r[2] for r in rows)
print('%-8s %d announces, %.0f/s, bad %d (sample %s); Redis commands/announce %.2f, '
      'command time %.2f us/announce, Redis CPU %.2f us/announce'
      % (name, n, n / secs, b['errors'], b['sample_bad'], calls / n, usec / n, (c1 - c0) * 1e6 / n))
for cmd, c, u in sorted(rows, key=lambda r: -r[2]):
    print('  %-18s %6.3f calls/announce  %6.2f us/announce' % (cmd, c / n, u / n))
PY
}

phase public pub: false steady.lua
phase private priv: true private.lua
# What private mode wrote: credited bytes and snatches over all users, the snatch stream's length.
redis-cli -p "$rport" --eval /dev/stdin 'priv:{private}:users' <<'LUA' | tr '\n' ' '
local up, down, sn = 0, 0, 0
for _, u in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    local v = redis.call('HMGET', 'priv:{private}:user:' .. u, 'uploaded', 'downloaded', 'snatches')
    up = up + tonumber(v[1] or 0); down = down + tonumber(v[2] or 0); sn = sn + tonumber(v[3] or 0)
end
return {'credited uploaded', string.format('%d', up), 'downloaded', string.format('%d', down),
        'snatches', sn, 'events', redis.call('XLEN', 'priv:{private}:events')}
LUA
echo
