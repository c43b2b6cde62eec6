#!/bin/sh
# The docker-compose.yml topology without Docker, on loopback: one Redis, two tyto hosts and
# haproxy in front, with the same deploy/haproxy.cfg compose uses (its loopback branch, chosen by
# TYTO_BACKEND_1). For tests, and for anyone without a Docker engine.
#
#   scripts/topology.sh start     start everything, wait until haproxy sees both hosts healthy,
#                                 print the variables below
#   scripts/topology.sh env       print them again (sh syntax: eval "$(scripts/topology.sh env)")
#   scripts/topology.sh stop      stop what start started (by its recorded pids), keep the logs
#
#   client ──▶ haproxy 127.0.0.1:FRONT ──▶ tyto 127.0.0.2:PORT, tyto 127.0.0.3:PORT ──▶ redis
#   client ──HTTPS──▶ haproxy 127.0.0.1:TLS_PORT ──▶ the same (with TYTO_TOPOLOGY_TLS_CERT)
#   client ──UDP (BEP 15)──────────────────▶ tyto 127.0.0.2:PORT, tyto 127.0.0.3:PORT
#
# haproxy does not balance UDP: UDP clients reach the hosts directly, on the same port number as
# HTTP; the hosts share one udp.secret (TYTO_UDP_SECRET, printed), so an id one host issued is
# accepted by the other.
#
# Each tyto host's operator routes (/metrics, /stats) are on its own admin listener, ADDRESS:ADMIN
# with an admin port of its own per host (printed as TYTO_ADMIN_N), never behind haproxy.
#
# Settings (environment):
#   TYTO_BIN               tyto binary                               default ./tyto
#   TYTO_TOPOLOGY_DIR      state: configs, logs, pids, Redis socket  default ${TMPDIR:-/tmp}/tyto-topology.UID
#   TYTO_TOPOLOGY_REDIS    unix socket of a Redis to use instead of starting one
#   TYTO_TOPOLOGY_UDP_SECRET  the hosts' udp.secret                 default: random
#   TYTO_TOPOLOGY_PREFIX   Redis key prefix                          default tyto:
#   TYTO_TOPOLOGY_WORKERS  workers per tyto host                     default 1
#   TYTO_TOPOLOGY_HOSTS    the tyto hosts' addresses                 default "127.0.0.2 127.0.0.3"
#   TYTO_TOPOLOGY_PORT     their port; TYTO_TOPOLOGY_FRONT_PORT haproxy's, TYTO_TOPOLOGY_STATS_PORT
#                          its stats page                            default: free ports
#   HAPROXY                haproxy binary                            default /usr/sbin/haproxy
#   TYTO_TOPOLOGY_TLS_CERT PEM file (certificate + key) for haproxy's HTTPS listener, on
#                          127.0.0.1:TLS_PORT (printed as TYTO_FRONT_TLS); default: none (no HTTPS)
#   TYTO_TOPOLOGY_TLS_PORT its port                                  default: a free port
#
# Every tyto host trusts only haproxy's source address (127.0.0.1) in proxy.trusted, so the
# X-Forwarded-For haproxy adds is believed and one sent by anyone else is not.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${TYTO_TOPOLOGY_DIR:-${TMPDIR:-/tmp}/tyto-topology.$(id -u)}
bin=${TYTO_BIN:-./tyto}
haproxy=${HAPROXY:-/usr/sbin/haproxy}
hosts=${TYTO_TOPOLOGY_HOSTS:-127.0.0.2 127.0.0.3}
prefix=${TYTO_TOPOLOGY_PREFIX:-tyto:}
workers=${TYTO_TOPOLOGY_WORKERS:-1}
proxy_addr=127.0.0.1

die() {
    echo "topology: $*" >&2
    exit 1
}

# A port nobody uses, TCP and UDP, on every address given (bind port 0 on the first, then check).
free_port() {
    python3 - "$@" <<'EOF'
import socket, sys
addrs = sys.argv[1:] or ['127.0.0.1']
for _ in range(100):
    s = socket.socket()
    s.bind((addrs[0], 0))
    port = s.getsockname()[1]
    others = []
    try:
        for a in addrs[1:]:
            o = socket.socket()
            o.bind((a, port))
            others.append(o)
        for a in addrs:
            o = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            others.append(o)
            o.bind((a, port))
    except OSError:
        continue
    finally:
        for o in others:
            o.close()
        s.close()
    print(port)
    sys.exit(0)
sys.exit(1)
EOF
}

alive() {                              # alive PIDFILE
    [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# Waits up to 10 s for "$@" to succeed.
wait_for() {
    i=0
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        [ "$i" -gt 100 ] && return 1
        sleep 0.1
    done
}

http_status() {                        # http_status HOST PORT PATH -> prints the status code
    python3 - "$@" <<'EOF'
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=2)
c.request('GET', sys.argv[3])
print(c.getresponse().status)
EOF
}

healthy() {                            # healthy HOST PORT
    [ "$(http_status "$1" "$2" /healthz 2>/dev/null)" = 200 ]
}

# haproxy's stats CSV: every server of backend tyto is UP.
backends_up() {
    csv=$(python3 - "$stats_port" <<'EOF'
import http.client, sys
c = http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]), timeout=2)
c.request('GET', '/stats;csv')
sys.stdout.write(c.getresponse().read().decode())
EOF
) || return 1
    n=$(printf '%s\n' "$csv" | awk -F, '$1 == "tyto" && $2 != "BACKEND" && $18 == "UP"' | wc -l)
    [ "$n" -eq "$nhosts" ]
}

print_env() {
    [ -s "$dir/env" ] || die "not started (no $dir/env)"
    cat "$dir/env"
}

start() {
    case "$bin" in /*) ;; *) bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")" ;; esac
    [ -x "$bin" ] || die "no tyto binary at $bin (set TYTO_BIN, or run make)"
    [ -x "$haproxy" ] || die "no haproxy at $haproxy (apt-get install haproxy, or set HAPROXY)"
    mkdir -p "$dir"
    for f in "$dir"/*.pid; do
        [ -e "$f" ] || continue
        alive "$f" && die "already running ($f); run: $0 stop"
        rm -f "$f"
    done
    rm -f "$dir/env"
    # A start that fails half way stops what it started.
    trap 'stop' EXIT

    # Redis: ours on a unix socket, with the repository's redis.conf (as compose mounts it).
    if [ -n "${TYTO_TOPOLOGY_REDIS:-}" ]; then
        redis_sock=$TYTO_TOPOLOGY_REDIS
    else
        redis_sock=$dir/redis.sock
        redis-server "$root/redis/redis.conf" --port 0 --unixsocket "$redis_sock" --unixsocketperm 700 \
            --save '' --dir "$dir" --daemonize yes --pidfile "$dir/redis.pid" \
            --logfile "$dir/redis.log" >/dev/null || die "redis-server failed (see $dir/redis.log)"
        wait_for redis-cli -s "$redis_sock" ping || die "redis-server does not answer (see $dir/redis.log)"
    fi
    redis_url="unix://$redis_sock"

    # One UDP secret for every host of this topology.
    udp_secret=${TYTO_TOPOLOGY_UDP_SECRET:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}

    # The tyto hosts: one port, one address each (127/8 is all loopback on Linux).
    # shellcheck disable=SC2086
    port=${TYTO_TOPOLOGY_PORT:-$(free_port $hosts)} || die "no free port"
    nhosts=0
    backends=""
    admins=""
    for h in $hosts; do
        nhosts=$((nhosts + 1))
        [ "$nhosts" -le 4 ] || die "at most 4 hosts (deploy/haproxy.cfg has TYTO_BACKEND_1..4)"
        cfg=$dir/tyto$nhosts.yaml
        admin_port=$(free_port "$h") || die "no free admin port"
        # Distinct even when two hosts share an address (the same port would collide).
        while [ "$admin_port" = "$port" ] || case " $admins " in *":$admin_port "*) true ;; *) false ;; esac; do
            admin_port=$(free_port "$h") || die "no free admin port"
        done
        cat >"$cfg" <<EOF
# tyto host $nhosts of scripts/topology.sh
listen:
  port: $port
  ipv4: "$h"
  ipv6: ""
  udp_port: $port
udp:
  secret: "$udp_secret"
workers: $workers
storage:
  backend: redis
redis:
  url: "$redis_url"
  prefix: "$prefix"
log:
  level: info
  file: "$dir/tyto$nhosts.log"
proxy:
  trusted: ["$proxy_addr"]
admin:
  listen: "$h:$admin_port"
EOF
        # The caller's TYTO_* variables would override the file: pin the ones that matter.
        TYTO_REDIS_URL=$redis_url TYTO_REDIS_PREFIX=$prefix TYTO_LISTEN_PORT=$port \
        TYTO_LISTEN_IPV4=$h TYTO_LISTEN_IPV6="" TYTO_WORKERS=$workers TYTO_PROXY_TRUSTED=$proxy_addr \
        TYTO_ADMIN_LISTEN=$h:$admin_port TYTO_LISTEN_UDP_PORT=$port TYTO_UDP_SECRET=$udp_secret \
            "$bin" -c "$cfg" >>"$dir/tyto$nhosts.out" 2>&1 </dev/null &
        echo $! >"$dir/tyto$nhosts.pid"
        backends="$backends TYTO_BACKEND_$nhosts=$h:$port"
        admins="$admins TYTO_ADMIN_$nhosts=$h:$admin_port"
    done
    i=0
    for h in $hosts; do
        i=$((i + 1))
        wait_for healthy "$h" "$port" ||
            die "tyto $h:$port is not healthy (see $dir/tyto$i.log, $dir/tyto$i.out)"
    done

    # haproxy: the compose configuration, loopback branch.
    front_port=${TYTO_TOPOLOGY_FRONT_PORT:-$(free_port 127.0.0.1)} || die "no free port"
    stats_port=${TYTO_TOPOLOGY_STATS_PORT:-$(free_port 127.0.0.1)} || die "no free port"
    # The HTTPS listener (deploy/haproxy.cfg's TLS bind) only with a certificate; TYTO_TLS_CERT is
    # always set here, so that a caller's own does not reach haproxy.
    tls_cert=${TYTO_TOPOLOGY_TLS_CERT:-}
    tls_port=""
    if [ -n "$tls_cert" ]; then
        [ -r "$tls_cert" ] || die "cannot read the TLS certificate $tls_cert"
        tls_port=${TYTO_TOPOLOGY_TLS_PORT:-$(free_port 127.0.0.1)} || die "no free port"
    fi
    # shellcheck disable=SC2086
    env $backends TYTO_FRONT_BIND="127.0.0.1:$front_port" TYTO_STATS_BIND="127.0.0.1:$stats_port" \
        TYTO_TLS_CERT="$tls_cert" TYTO_TLS_BIND="127.0.0.1:${tls_port:-0}" \
        "$haproxy" -db -f "$root/deploy/haproxy.cfg" >>"$dir/haproxy.log" 2>&1 </dev/null &
    echo $! >"$dir/haproxy.pid"
    wait_for backends_up || die "haproxy does not see every tyto host UP (see $dir/haproxy.log)"

    {
        echo "TYTO_TOPOLOGY_DIR='$dir'"
        echo "TYTO_FRONT='127.0.0.1:$front_port'"
        echo "TYTO_STATS='127.0.0.1:$stats_port'"
        [ -n "$tls_port" ] && echo "TYTO_FRONT_TLS='127.0.0.1:$tls_port'"
        i=0
        for h in $hosts; do
            i=$((i + 1))
            echo "TYTO_HOST_$i='$h:$port'"
        done
        for a in $admins; do
            echo "${a%%=*}='${a#*=}'"
        done
        echo "TYTO_REDIS_URL='$redis_url'"
        echo "TYTO_REDIS_PREFIX='$prefix'"
        echo "TYTO_UDP_SECRET='$udp_secret'"
    } >"$dir/env"
    trap - EXIT
    print_env
}

# Stops one recorded process: TERM, up to 10 s, then KILL.
stop_pid() {                           # stop_pid PIDFILE
    [ -s "$1" ] || return 0
    pid=$(cat "$1")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        i=0
        while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do
            i=$((i + 1))
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$1"
}

stop() {
    [ -d "$dir" ] || return 0
    # Front to back: haproxy, the tyto hosts (they drain), then Redis.
    stop_pid "$dir/haproxy.pid"
    for f in "$dir"/tyto*.pid; do
        [ -e "$f" ] && stop_pid "$f"
    done
    stop_pid "$dir/redis.pid"
    rm -f "$dir/env" "$dir/redis.sock"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    env) print_env ;;
    *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
