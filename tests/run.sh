#!/usr/bin/env bash
# Runs every tyto test against a private, throw-away Redis: the cmocka programs given as arguments
# (one pass/fail each), then every tests/e2e/test_*.py (one pass/fail per test case), which start
# $TYTO_BIN themselves. Ends with the line "N passed, N failed" (", N skipped" when a case this
# machine cannot run was skipped: tytotest.skip_unsupported; any other skip is a failure); exits
# non-zero if anything failed or nothing passed. Called by `make test` and `make asan`.
#
#   TYTO_BIN=build/tyto tests/run.sh build/tests/unit/test_*      (e2e tests need only TYTO_BIN)
#   TYTO_TEST_FILTER=scrape   run only the programs / cases whose name contains "scrape"
#   TYTO_TEST_VALGRIND=1      run the cmocka programs, and tyto in the e2e tests, under valgrind
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
filter=${TYTO_TEST_FILTER:-}
python=/usr/bin/python3       # Debian's: the one with python3-libtorrent
unit_timeout=${TYTO_TEST_UNIT_TIMEOUT:-300}
e2e_timeout=${TYTO_TEST_E2E_TIMEOUT:-1200}

d=$(mktemp -d "${TMPDIR:-/tmp}/tyto-test.XXXXXX") || { echo "run.sh: mktemp failed" >&2; exit 1; }

redis_pid=""
child=""                      # the test program running now (its `timeout`), and its output tail
tailer=""

# shellcheck disable=SC2317  # called from the traps
cleanup() {
    trap - EXIT INT TERM
    # `timeout` passes the signal on to the test program, which stops its own servers.
    [ -n "$child" ] && kill "$child" 2>/dev/null && wait "$child" 2>/dev/null
    [ -n "$tailer" ] && kill "$tailer" 2>/dev/null
    if [ -n "$redis_pid" ]; then
        kill "$redis_pid" 2>/dev/null
        for i in $(seq 50); do
            # Exited (a zombie until the wait below reaps it) or gone.
            case "$(ps -o stat= -p "$redis_pid" 2>/dev/null)" in ''|Z*) break ;; esac
            sleep 0.1
            [ "$i" -eq 50 ] && kill -9 "$redis_pid" 2>/dev/null
        done
        wait "$redis_pid" 2>/dev/null
    fi
    rm -rf "$d"
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

passed=0
failed=0
skipped=0
summary=()

# run_logged SECONDS OUT CMD...: runs CMD under `timeout` in the background with its output in
# OUT, shown as it comes; sets rc. Waiting on a background job lets INT/TERM traps run at once.
run_logged() {
    local secs=$1 out=$2
    shift 2
    : > "$out"
    timeout "$secs" "$@" > "$out" 2>&1 &
    child=$!
    tail -s 0.1 -n +1 -f --pid="$child" "$out" &
    tailer=$!
    wait "$child"
    rc=$?
    wait "$tailer" 2>/dev/null
    child=""
    tailer=""
}

note() {                          # note pass|fail NAME
    if [ "$1" = pass ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
    fi
    summary+=("$1  $2")
}

# --- Redis ------------------------------------------------------------------------------------
# Our own child rather than --daemonize, so that it is reaped (no zombie left for init).
redis-server --port 0 --unixsocket "$d/redis.sock" --unixsocketperm 700 --save '' \
    --appendonly no --daemonize no --pidfile "$d/redis.pid" --dir "$d" \
    --logfile "$d/redis.log" >/dev/null 2>&1 &
redis_pid=$!
pong=""
for _ in $(seq 100); do
    pong=$(redis-cli -s "$d/redis.sock" ping 2>/dev/null) && [ "$pong" = PONG ] && break
    sleep 0.05
done
if [ "$pong" != PONG ]; then
    echo "run.sh: redis-server does not answer PING at $d/redis.sock" >&2
    cat "$d/redis.log" >&2 2>/dev/null
    echo "0 passed, 1 failed"
    exit 1
fi

export TYTO_TEST_REDIS="$d/redis.sock"
export TYTO_TEST_TMP="$d"
bin=${TYTO_BIN:-$root/build/tyto}
case "$bin" in
    /*) ;;
    *) bin="$(cd "$(dirname "$bin")" 2>/dev/null && pwd)/$(basename "$bin")" ;;
esac
export TYTO_BIN="$bin"
export PYTHONDONTWRITEBYTECODE=1

# --- cmocka programs --------------------------------------------------------------------------
for t in "$@"; do
    if [ -n "$filter" ] && [[ "$t" != *"$filter"* ]]; then
        continue
    fi
    echo "=== $t"
    if [ ! -x "$t" ]; then
        echo "run.sh: $t: not an executable"
        note fail "$t"
        continue
    fi
    if [ "${TYTO_TEST_VALGRIND:-}" = 1 ]; then
        run_logged "$unit_timeout" "$d/unit-out.txt" valgrind -q --leak-check=full --error-exitcode=99 \
            --errors-for-leak-kinds=definite "$t"
    else
        run_logged "$unit_timeout" "$d/unit-out.txt" "$t"
    fi
    if [ "$rc" -eq 0 ]; then
        note pass "$t"
    else
        [ "$rc" -eq 124 ] && echo "run.sh: $t: timed out after ${unit_timeout}s"
        echo "run.sh: $t: exit status $rc"
        note fail "$t"
    fi
done

# --- end-to-end tests -------------------------------------------------------------------------
# The suites that also run on a Redis Cluster: what a tracker answers and stores (swarm semantics,
# UDP, private mode, statistics, real clients, faults and deadlines). Not the operator CLI and
# topology suites, which read or start a single Redis of their own.
cluster_suites="test_http test_udp test_private test_stats test_libtorrent test_libtorrent_udp test_faults test_slow test_overload test_clock test_tls"

# run_e2e FILE LABEL: one e2e script (its cases filtered by TYTO_TEST_FILTER unless its name
# matches), its E2E-RESULT line added to the counts under LABEL.
run_e2e() {
    local f=$1 label=$2 line p n k
    echo "=== $label"
    out="$d/e2e-out.txt"
    run_logged "$e2e_timeout" "$out" "$python" "$f"
    line=$(grep -a '^E2E-RESULT ' "$out" | tail -n 1)
    if [ -z "$line" ]; then
        [ "$rc" -eq 124 ] && echo "run.sh: $f: timed out after ${e2e_timeout}s"
        echo "run.sh: $f: no result line (exit status $rc)"
        note fail "$label"
        return
    fi
    p=$(echo "$line" | sed -n 's/.*passed=\([0-9]*\).*/\1/p')
    n=$(echo "$line" | sed -n 's/.*failed=\([0-9]*\).*/\1/p')
    k=$(echo "$line" | sed -n 's/.*skipped=\([0-9]*\).*/\1/p')
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${n:-0}))
    skipped=$((skipped + ${k:-0}))
    summary+=("${p:-0} passed, ${n:-0} failed$([ "${k:-0}" -gt 0 ] && echo ", $k skipped")  $label")
    [ "${k:-0}" -gt 0 ] && grep -a '^SKIP ' "$out" | sed 's/^/  /' >> "$d/skips.txt"
    if [ "$rc" -ne 0 ] && [ "${n:-0}" -eq 0 ]; then
        echo "run.sh: $f: exit status $rc"
        note fail "$label (exit status)"
    fi
}

if [ ! -x "$python" ]; then
    echo "run.sh: $python not found (Debian's python3 with python3-libtorrent is needed)"
    note fail "tests/e2e"
else
    for f in "$here"/e2e/test_*.py; do
        [ -e "$f" ] || continue
        run_e2e "$f" "${f#"$root"/}"
    done
    # The integration suites once more with tyto on a Redis Cluster (3 primaries, 3 replicas,
    # started by each script: tests/cluster.sh) and 2 workers: tytotest's TYTO_TEST_CLUSTER=1.
    # TYTO_TEST_CLUSTER_SUITES="" leaves them out.
    for s in ${TYTO_TEST_CLUSTER_SUITES-$cluster_suites}; do
        f="$here/e2e/$s.py"
        [ -e "$f" ] || { echo "run.sh: $f: no such suite"; note fail "$s (on Redis Cluster)"; continue; }
        TYTO_TEST_CLUSTER=1 run_e2e "$f" "${f#"$root"/} (on Redis Cluster)"
    done
fi

echo
echo "=== summary"
for s in "${summary[@]+"${summary[@]}"}"; do
    echo "  $s"
done
if [ -s "$d/skips.txt" ]; then
    echo
    echo "=== skipped (this machine cannot run them; not counted as passed)"
    cat "$d/skips.txt"
fi
if [ "$skipped" -gt 0 ]; then
    echo "$passed passed, $failed failed, $skipped skipped"
else
    echo "$passed passed, $failed failed"
fi
if [ "$failed" -ne 0 ] || [ "$passed" -eq 0 ]; then
    exit 1
fi
exit 0
