#!/usr/bin/env bash
# bench/cluster.sh: tyto on one Redis against tyto on a Redis Cluster (issue 12), same workload.
#
# Starts, on free loopback ports in a temporary directory: one redis-server (target "single"), one
# with a replica (target "replicated": replication's cost without the cluster), a cluster of three
# primaries and three replicas (target "cluster", tests/cluster.sh; the replicas are kept, as in
# production, so the primaries pay for replication; each replica's CPU is reported per node and
# left out of the per-announce total, which is the primaries'), and one tyto per target (WORKERS
# workers; for "cluster" redis.cluster: true with the primaries as redis.nodes). Each tyto is
# loaded with the steady pool (PEERS peers in TORRENTS swarms, bench/load.lua: each peer announced
# once), then gets RUNS runs of DURATION seconds of bench/steady.lua (wrk -tTHREADS -cCONNS,
# keep-alive, every reply checked: a failure reason or a reply without peers is an error), the
# targets' order rotated each run. Around each run it reads utime+stime of every redis-server and
# tyto process (/proc/PID/stat). Prints each run, then a Markdown table of the medians ready for
# bench/RESULTS.md: requests/s, errors, p99, tyto's CPU and Redis's CPU per announce (each node's
# CPU delta / requests served, and the sum over the primaries), and the primaries' commands run per
# announce and the time spent inside them (INFO commandstats, reset before each run; EXEC's and
# EVAL's own time left out, as it holds their inner commands', which count on their own).
#
#   bench/cluster.sh                      every target, defaults below
#   TARGETS=single bench/cluster.sh       one Redis only (TARGETS="single replicated cluster" by default)
#
# Environment [defaults]: RUNS [3], DURATION [10] s, THREADS [2], CONNS [32], WORKERS [2],
# TORRENTS [10000], PEERS [100000], LOAD_LIMIT [120] s, TYTO_BIN [build/tyto], TARGETS, KEEP=1
# (keep the temporary directory). Everything is bounded (wrk by -d, the load by LOAD_LIMIT, the
# cluster's start and stop by tests/cluster.sh); only processes started here are signalled, by PID.
set -u

cd "$(dirname "$0")/.." || exit 1
runs=${RUNS:-3} secs=${DURATION:-10} threads=${THREADS:-2} conns=${CONNS:-32} workers=${WORKERS:-2}
torrents=${TORRENTS:-10000} peers=${PEERS:-100000} load_limit=${LOAD_LIMIT:-120}
tyto_bin=$(realpath "${TYTO_BIN:-build/tyto}")
targets=${TARGETS:-single replicated cluster}
hz=$(getconf CLK_TCK)

say() { echo "bench/cluster.sh: $*" >&2; }
for tool in wrk redis-server redis-cli python3; do
    command -v "$tool" > /dev/null || { say "$tool is needed"; exit 1; }
done
[ -x "$tyto_bin" ] || { say "no tyto binary at $tyto_bin (make tyto, or TYTO_BIN=...)"; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tyto-bench-cluster.XXXXXX") || exit 1
pids=()                # our own children: the single redis-server, the tytos, a wrk being stopped
cluster_dir=""

cleanup() {
    trap - EXIT INT TERM
    local p
    for p in "${pids[@]}"; do
        kill "$p" 2> /dev/null
    done
    for p in "${pids[@]}"; do
        wait "$p" 2> /dev/null
    done
    [ -n "$cluster_dir" ] && [ -d "$cluster_dir" ] && tests/cluster.sh stop "$cluster_dir"
    if [ "${KEEP:-0}" = 1 ]; then say "kept $tmp"; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

free_port() {
    python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ticks PID: utime + stime of PID in clock ticks (0 once it is gone).
ticks() {
    awk '{s = substr($0, index($0, ") ") + 2); split(s, f, " "); print f[12] + f[13]}' "/proc/$1/stat" 2> /dev/null || echo 0
}

# The benchmark's info-hashes: sha1 of the decimal index, one a line (bench/common.lua).
python3 -c 'import hashlib, sys
for i in range(int(sys.argv[1])): print(hashlib.sha1(str(i).encode()).hexdigest())' "$torrents" > "$tmp/hashes.txt"
export BENCH_DIR=bench BENCH_HASHES=$tmp/hashes.txt BENCH_TORRENTS=$torrents BENCH_PEERS=$peers

declare -A tport tmaster redis_nodes    # per target: tyto's port, its master pid, "name:pid ..."

# start_tyto TARGET REDIS_YAML: a tyto of WORKERS workers with the given redis: section.
start_tyto() {
    local name=$1 redis_yaml=$2 port i
    port=$(free_port)
    printf 'listen:\n  port: %d\n  ipv4: "127.0.0.1"\n  ipv6: ""\n  udp_port: 0\nworkers: %d\nredis:\n%s\nlog:\n  level: warn\nswarm:\n  max_peers_per_address: 0\nadmin:\n  listen: ""\n' \
        "$port" "$workers" "$redis_yaml" > "$tmp/tyto-$name.yaml"
    "$tyto_bin" -c "$tmp/tyto-$name.yaml" > "$tmp/tyto-$name.log" 2>&1 &
    pids+=($!)
    tmaster[$name]=$!
    tport[$name]=$port
    for i in $(seq 100); do
        curl -sf "http://127.0.0.1:$port/healthz" > /dev/null 2>&1 && return 0
        kill -0 "${tmaster[$name]}" 2> /dev/null || break
        sleep 0.1
    done
    say "tyto for $name did not come up:"
    tail -n 20 "$tmp/tyto-$name.log" >&2
    exit 1
}

for target in $targets; do
    case $target in
        single)
            rp=$(free_port)
            redis-server --port "$rp" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" \
                > "$tmp/redis-single.log" 2>&1 &
            pids+=($!)
            rpid=$!
            for _ in $(seq 50); do
                [ "$(redis-cli -p "$rp" ping 2> /dev/null)" = PONG ] && break
                sleep 0.1
            done
            redis_nodes[single]="redis:$rpid:$rp"
            start_tyto single "$(printf '  url: "redis://127.0.0.1:%d"\n' "$rp")"
            ;;
        replicated)
            # One Redis with one replica: what the cluster's primaries pay for replication,
            # without the cluster.
            rp=$(free_port)
            rr=$(free_port)
            for port in "$rp" "$rr"; do
                mkdir -p "$tmp/replicated-$port"
                redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp/replicated-$port" \
                    > "$tmp/redis-replicated-$port.log" 2>&1 &
                pids+=($!)
                eval "rpid_$port=$!"
                for _ in $(seq 50); do
                    [ "$(redis-cli -p "$port" ping 2> /dev/null)" = PONG ] && break
                    sleep 0.1
                done
            done
            redis-cli -p "$rr" replicaof 127.0.0.1 "$rp" > /dev/null
            for _ in $(seq 100); do
                redis-cli -p "$rr" info replication | grep -q 'master_link_status:up' && break
                sleep 0.1
            done
            eval "redis_nodes[replicated]=\"primary:\$rpid_$rp:$rp replica:\$rpid_$rr:$rr\""
            start_tyto replicated "$(printf '  url: "redis://127.0.0.1:%d"\n' "$rp")"
            ;;
        cluster)
            out=$(tests/cluster.sh start "$tmp/cluster") || { say "tests/cluster.sh start failed"; exit 1; }
            cluster_dir=$tmp/cluster
            primaries=$(echo "$out" | sed -n 's/^TYTO_CLUSTER_PRIMARIES=//p')
            all=$(echo "$out" | sed -n 's/^TYTO_CLUSTER_NODES=//p')
            list=""
            for addr in $(echo "$all" | tr ',' ' '); do
                p=${addr##*:}
                role=replica
                case ",$primaries," in *",$addr,"*) role=primary ;; esac
                list="$list $role-$p:$(cat "$cluster_dir/redis-$p.pid"):$p"
            done
            redis_nodes[cluster]=${list# }
            nodes_yaml=$(echo "$primaries" | sed 's/\([^,]*\)/"\1"/g; s/,/, /g')
            start_tyto cluster "$(printf '  url: "redis://%s"\n  cluster: true\n  nodes: [%s]\n' \
                "${primaries%%,*}" "$nodes_yaml")"
            ;;
        *) say "unknown target $target (single, replicated, cluster)"; exit 1 ;;
    esac
done

# Load: every peer of the pool once, wrk stopped as soon as each thread printed LOADED.
for target in $targets; do
    t0=$SECONDS
    wrk -t"$threads" -c"$conns" -d"${load_limit}s" -s bench/load.lua "http://127.0.0.1:${tport[$target]}/" \
        -- "$threads" "$conns" > "$tmp/load-$target.out" 2>&1 &
    wpid=$!
    pids+=("$wpid")
    while kill -0 "$wpid" 2> /dev/null && [ "$(grep -c '^LOADED' "$tmp/load-$target.out")" -lt "$threads" ]; do
        sleep 0.2
    done
    kill -INT "$wpid" 2> /dev/null
    wait "$wpid" 2> /dev/null
    say "$target: loaded in $((SECONDS - t0)) s: $(grep '^LOADED' "$tmp/load-$target.out" | tr '\n' ' ')"
    grep -q '"bad_body":0,' "$tmp/load-$target.out" || say "$target: the load had bad replies: $(grep '^BENCH' "$tmp/load-$target.out")"
done

# The runs: per run, the targets in rotated order; one JSON line per (run, target).
: > "$tmp/rows"
# shellcheck disable=SC2086  # one word per target
set -- $targets
ntargets=$#
for run in $(seq "$runs"); do
    order=()
    for i in $(seq 0 $((ntargets - 1))); do
        idx=$(( (i + run - 1) % ntargets + 1 ))
        order+=("${!idx}")
    done
    for target in "${order[@]}"; do
        wpids=$(cat "/proc/${tmaster[$target]}/task/${tmaster[$target]}/children")
        declare -A before=()
        for w in $wpids; do before[w$w]=$(ticks "$w"); done
        for nd in ${redis_nodes[$target]}; do
            IFS=: read -r name pid port <<< "$nd"
            before[$name]=$(ticks "$pid")
            redis-cli -p "$port" config resetstat > /dev/null
        done
        out=$(wrk -t"$threads" -c"$conns" -d"${secs}s" -s bench/steady.lua "http://127.0.0.1:${tport[$target]}/" | grep '^BENCH ')
        cpu="{"
        cmds="{"
        sep=""
        for w in $wpids; do cpu="$cpu$sep\"tyto-worker-$w\": $(( $(ticks "$w") - ${before[w$w]} ))"; sep=", "; done
        csep=""
        for nd in ${redis_nodes[$target]}; do
            IFS=: read -r name pid port <<< "$nd"
            cpu="$cpu$sep\"$name\": $(( $(ticks "$pid") - ${before[$name]} ))"
            # Commands run and their time inside Redis (INFO commandstats: calls, usec). The time of
            # EXEC and EVAL is left out: it holds their inner commands' time, counted on their own.
            cmds="$cmds$csep\"$name\": [$(redis-cli -p "$port" info commandstats | tr -d '\r' \
                | awk -F'[=,]' '/^cmdstat_/ {c += $2} /^cmdstat_/ && !/^cmdstat_(exec|eval|evalsha|fcall|fcall_ro):/ {u += $4}
                                END {printf "%d, %d", c, u}')]"
            csep=", "
        done
        cpu="$cpu}"
        cmds="$cmds}"
        unset before
        printf '{"run": %d, "target": "%s", "bench": %s, "ticks": %s, "cmds": %s}\n' "$run" "$target" "${out#BENCH }" \
            "$cpu" "$cmds" \
            | tee -a "$tmp/rows" | python3 -c '
import json, sys
r = json.loads(sys.stdin.read()); b = r["bench"]; n = max(1, b["requests"]); hz = int(sys.argv[1])
us = lambda t: t / hz * 1e6 / n
redis = {k: us(v) for k, v in r["ticks"].items() if not k.startswith("tyto")}
tyto = sum(us(v) for k, v in r["ticks"].items() if k.startswith("tyto"))
prim = sum(v for k, v in redis.items() if not k.startswith("replica"))
print("run %d %-7s %6.0f req/s  errors %d  tyto %.1f us/announce  redis %.1f us/announce (%s)" % (
    r["run"], r["target"], n / b["duration_us"] * 1e6, b["errors"], tyto, prim,
    ", ".join("%s %.1f" % kv for kv in sorted(redis.items()))), file=sys.stderr)' "$hz"
    done
done

# The table of medians.
python3 - "$tmp/rows" "$hz" "$workers" "$threads" "$conns" "$secs" "$runs" "$torrents" "$peers" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
hz, workers, threads, conns, secs, runs, torrents, peers = map(int, sys.argv[2:])
med = statistics.median
print()
print("steady keep-alive, tyto %d workers, wrk -t%d -c%d, %d runs of %d s (medians), %d peers in %d swarms; "
      "Redis CPU = utime+stime of each redis-server / requests served" % (workers, threads, conns, runs, secs,
                                                                          peers, torrents))
print()
print("| target | req/s | errors | p99 ms | tyto CPU us/announce | Redis CPU us/announce (primaries) | "
      "Redis commands run/announce (primaries) | us in commands/announce (primaries) | per node CPU us/announce |")
print("|---|---|---|---|---|---|---|---|---|")
for target in dict.fromkeys(r["target"] for r in rows):
    rs = [r for r in rows if r["target"] == target]
    def us(r, k):
        return r["ticks"][k] / hz * 1e6 / max(1, r["bench"]["requests"])
    nodes = sorted(k for k in rs[0]["ticks"] if not k.startswith("tyto"))
    per = {k: med([us(r, k) for r in rs]) for k in nodes}
    total = med([sum(us(r, k) for k in nodes if not k.startswith("replica")) for r in rs])
    tyto = med([sum(us(r, k) for k in r["ticks"] if k.startswith("tyto")) for r in rs])
    rps = med([r["bench"]["requests"] / r["bench"]["duration_us"] * 1e6 for r in rs])
    p99 = med([r["bench"]["p99_us"] / 1000 for r in rs])
    errors = sum(r["bench"]["errors"] for r in rs)
    prim = [k for k in nodes if not k.startswith("replica")]
    calls = med([sum(r["cmds"][k][0] for k in prim) / max(1, r["bench"]["requests"]) for r in rs])
    cmd_us = med([sum(r["cmds"][k][1] for k in prim) / max(1, r["bench"]["requests"]) for r in rs])
    print("| %s | %.0f | %d | %.2f | %.1f | %.1f | %.1f | %.1f | %s |" % (
        target, rps, errors, p99, tyto, total, calls, cmd_us, ", ".join("%s %.1f" % (k, per[k]) for k in nodes)))
PY
