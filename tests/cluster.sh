#!/usr/bin/env bash
# A throw-away Redis Cluster for tests of cluster routing (issue 12): three primaries and three
# replicas on free loopback ports, in a directory of their own, stopped again by the PIDs it wrote.
#
#   eval "$(tests/cluster.sh start [DIR])"   start six nodes in DIR (new or empty; default: mktemp -d)
#     and print, once CLUSTER INFO says cluster_state:ok on every node (progress goes to stderr):
#       TYTO_CLUSTER_DIR=/tmp/tyto-cluster.XXXXXX
#       TYTO_CLUSTER_NODES=127.0.0.1:p1,...,127.0.0.1:p6        (all six, in start order)
#       TYTO_CLUSTER_PRIMARIES=127.0.0.1:pa,127.0.0.1:pb,127.0.0.1:pc
#   tests/cluster.sh stop DIR               stop exactly the redis-server processes of DIR (by their
#                                           pid files), then remove DIR.
#
# Everything is bounded: start gives up after 60 s (stopping what it started), stop after 15 s.
# A failed start exits 1 and leaves nothing running; its node logs are printed to stderr first.
set -u

nodes=6
deadline_s=60
marker=.tyto-cluster          # written in DIR so that stop removes only a directory made here

say() { echo "cluster.sh: $*" >&2; }

# True if something listens on 127.0.0.1:$1 (a connect succeeds).
port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A port P with P and its cluster bus port P+10000 both free. Random, not sequential, so that two
# clusters started at once rarely pick the same; a race that loses is caught by the PING wait.
# Both below the kernel's ephemeral range (32768 and up here): an outgoing connection's local
# port there cannot be seen by a connect test, yet makes the node's bind fail.
free_port() {
    local p i
    for i in $(seq 100); do
        p=$((10000 + RANDOM % 12000))
        if ! port_busy "$p" && ! port_busy $((p + 10000)); then
            echo "$p"
            return 0
        fi
    done
    return 1
}

# cli PORT ARGS...: one redis-cli call that cannot hang.
cli() {
    local port=$1
    shift
    timeout 5 redis-cli -h 127.0.0.1 -p "$port" "$@" 2>/dev/null
}

# True if PID is alive and is a redis-server of ours (its command line names PORT), so that a
# recycled PID is never signalled.
ours() {
    local pid=$1 port=$2 cmd
    cmd=$({ tr '\0' ' ' < "/proc/$pid/cmdline"; } 2>/dev/null) || return 1
    case "$cmd" in *redis-server*":$port"*) return 0 ;; esac
    return 1
}

stop() {
    local dir=$1 f i left pids=() ports=()
    [ -f "$dir/$marker" ] || { say "$dir was not made by cluster.sh start"; return 1; }
    # Read every pid file first: a node deletes its own as it shuts down.
    for f in "$dir"/redis-*.pid; do
        [ -s "$f" ] || continue
        pids+=("$(cat "$f")")
        f=${f##*/redis-}
        ports+=("${f%.pid}")
    done
    for i in "${!pids[@]}"; do
        ours "${pids[$i]}" "${ports[$i]}" && kill "${pids[$i]}" 2>/dev/null
    done
    for f in $(seq 150); do
        left=0
        for i in "${!pids[@]}"; do
            ours "${pids[$i]}" "${ports[$i]}" || continue
            left=1
            if [ "$f" -eq 150 ]; then
                kill -9 "${pids[$i]}" 2>/dev/null && say "killed ${pids[$i]} (port ${ports[$i]}) with SIGKILL"
            fi
        done
        [ "$left" -eq 0 ] && break
        sleep 0.1
    done
    rm -rf "$dir"
}

fail_start() {
    local f
    say "start failed: $*"
    for f in "$dir"/redis-*.log; do
        [ -f "$f" ] && { echo "--- $f" >&2; tail -n 20 "$f" >&2; }
    done
    stop "$dir"
    exit 1
}

start() {
    local port i state all="" primaries="" ports=()
    if [ -n "${1:-}" ]; then
        dir=$1
        # stop removes DIR, so it must hold nothing but the cluster.
        if [ -e "$dir" ] && [ -n "$(ls -A "$dir")" ]; then
            say "$dir is not empty"
            exit 1
        fi
        mkdir -p "$dir" || exit 1
    else
        dir=$(mktemp -d "${TMPDIR:-/tmp}/tyto-cluster.XXXXXX") || exit 1
    fi
    dir=$(cd "$dir" && pwd)
    : > "$dir/$marker"
    SECONDS=0
    trap 'fail_start interrupted' INT TERM

    for i in $(seq "$nodes"); do
        port=$(free_port) || fail_start "no free port pair"
        # The pid file must exist before start returns: stop finds the processes only through it.
        # cluster-require-full-coverage no, as the README asks of operators: with Redis's default
        # (yes) a primary marked failed stops every node (CLUSTERDOWN) until its replica took over,
        # and swarms on the healthy primaries would fail too.
        # A data file per node: a replica's full sync lands in its dbfilename (a temporary file
        # renamed to it), then is loaded from there; with one dump.rdb for all six, replicas
        # syncing in the same instant (they do, right after the create) could load another
        # primary's keys, and a failover then promote them under the wrong slots.
        redis-server --bind 127.0.0.1 --port "$port" --dir "$dir" --dbfilename "dump-$port.rdb" \
            --cluster-enabled yes --cluster-config-file "nodes-$port.conf" \
            --cluster-node-timeout 5000 --cluster-require-full-coverage no --save '' --appendonly no \
            --daemonize yes --pidfile "$dir/redis-$port.pid" --logfile "$dir/redis-$port.log" \
            > /dev/null || fail_start "redis-server on port $port did not start"
        ports+=("$port")
    done
    for port in "${ports[@]}"; do
        until [ "$(cli "$port" PING)" = PONG ] && [ -s "$dir/redis-$port.pid" ]; do
            [ "$SECONDS" -lt "$deadline_s" ] || fail_start "port $port does not answer PING"
            sleep 0.1
        done
        all="$all,127.0.0.1:$port"
    done
    all=${all#,}
    say "nodes up on ${ports[*]}; creating the cluster"

    # shellcheck disable=SC2046  # one word per node address
    timeout $((deadline_s - SECONDS > 1 ? deadline_s - SECONDS : 1)) \
        redis-cli --cluster create $(echo "$all" | tr ',' ' ') --cluster-replicas 1 --cluster-yes \
        > "$dir/create.log" 2>&1 || { cat "$dir/create.log" >&2; fail_start "redis-cli --cluster create failed"; }

    for port in "${ports[@]}"; do
        while :; do
            state=$(cli "$port" CLUSTER INFO | tr -d '\r')
            case "$state" in
                *cluster_state:ok*cluster_known_nodes:$nodes*) break ;;
            esac
            [ "$SECONDS" -lt "$deadline_s" ] || fail_start "port $port: cluster_state not ok after ${deadline_s}s"
            sleep 0.2
        done
        case "$(cli "$port" ROLE | head -n 1)" in
            master) primaries="$primaries,127.0.0.1:$port" ;;
        esac
    done
    trap - INT TERM
    say "cluster ok after ${SECONDS}s"
    echo "TYTO_CLUSTER_DIR=$dir"
    echo "TYTO_CLUSTER_NODES=$all"
    echo "TYTO_CLUSTER_PRIMARIES=${primaries#,}"
}

case "${1:-}" in
    start) start "${2:-}" ;;
    stop)
        [ -n "${2:-}" ] || { sed -n '2,${/^#/!q;p}' "$0" >&2; exit 2; }
        stop "$2"
        ;;
    *)
        sed -n '2,${/^#/!q;p}' "$0" >&2
        exit 2
        ;;
esac
