#!/bin/bash
# Builds the libFuzzer targets of fuzz/ (clang, ASan + UBSan) into build/fuzz and runs each for
# FUZZ_SECONDS on a copy of its seed corpus, so the repository is never written to. Exits
# non-zero if a target fails to build, crashes, leaks, times out or breaks a property; prints
# the executions per target. `make fuzz` calls it; see fuzz/README.md.
#
#   fuzz/run.sh                     every default target, FUZZ_SECONDS each (default 60)
#   fuzz/run.sh query bencode       only these
#   FUZZ_SECONDS=20 make fuzz       the bounded CI run
#   FUZZ_BUILD_ONLY=1 fuzz/run.sh   build, run nothing
#   fuzz/run.sh -r bencode FILE...  replay inputs (a crash file) through one target, no fuzzing
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_CC=${FUZZ_CC:-clang}
OUT=build/fuzz
PKGS="libevent hiredis yaml-0.1"

# The default list. http_head and proxy need lib/http.c (see fuzz/README.md).
DEFAULT_TARGETS="query announce bencode config redis_member peer_client clientip http_head proxy udp"

# Library sources each target links (compiled with the same sanitizer flags).
target_sources() {
    case "$1" in
    query) echo "lib/query.c" ;;
    announce) echo "lib/announce.c lib/query.c lib/bencode.c" ;;
    bencode) echo "lib/bencode.c" ;;
    config) echo "lib/config.c lib/clientip.c storage/redis_sentinel.c lib/log.c" ;;
    redis_member) echo "storage/redis_keys.c" ;;
    peer_client) echo "lib/peer_client.c" ;;
    clientip) echo "lib/clientip.c" ;;
    http_head | proxy) echo "lib/http.c" ;;
    udp) echo "lib/udp.c lib/announce.c lib/query.c lib/bencode.c" ;;
    *) echo "fuzz/run.sh: unknown target '$1'" >&2; return 1 ;;
    esac
}

SAN="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all"
CFLAGS_ALL="$SAN -g -O1 -fno-omit-frame-pointer -I. -D_GNU_SOURCE -std=c11 -Wall -Wextra \
    $(pkg-config --cflags $PKGS)"
# Our own files are held to the project's warning set; others' code is built as it is.
CFLAGS_FUZZ="-Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes"
LIBS="$(pkg-config --libs $PKGS)"

replay=0
if [ "${1:-}" = "-r" ]; then
    replay=1
    shift
fi
if [ $# -gt 0 ] && [ $replay -eq 0 ]; then
    targets="$*"
elif [ $replay -eq 1 ]; then
    targets="$1"
    shift
else
    targets=${FUZZ_TARGETS:-$DEFAULT_TARGETS}
fi

if ! command -v "$FUZZ_CC" >/dev/null; then
    echo "fuzz/run.sh: $FUZZ_CC not found (apt-get install clang libclang-rt-dev)" >&2
    exit 1
fi

mkdir -p "$OUT/obj" "$OUT/bin"

# Compiles src into $OUT/obj unless the object is newer than the source and every header.
compile() {
    local src=$1 extra=$2
    local obj="$OUT/obj/${src%.c}.o"

    mkdir -p "$(dirname "$obj")"
    if [ -f "$obj" ] && [ -z "$(find "$src" lib storage fuzz -name '*.[ch]' -newer "$obj" 2>/dev/null | head -1)" ]; then
        echo "$obj"
        return 0
    fi
    # shellcheck disable=SC2086
    $FUZZ_CC $CFLAGS_ALL $extra -c -o "$obj" "$src" >&2 || return 1
    echo "$obj"
}

build() {
    local t=$1 objs="" src o

    for src in $(target_sources "$t"); do
        if [ ! -f "$src" ]; then
            echo "fuzz/run.sh: $t needs $src, which does not exist" >&2
            return 1
        fi
        o=$(compile "$src" "") || return 1
        objs="$objs $o"
    done
    [ -f "fuzz/fuzz_$t.c" ] || { echo "fuzz/run.sh: no fuzz/fuzz_$t.c" >&2; return 1; }
    o=$(compile "fuzz/fuzz_$t.c" "$CFLAGS_FUZZ") || return 1
    # shellcheck disable=SC2086
    $FUZZ_CC $SAN -o "$OUT/bin/fuzz_$t" "$o" $objs $LIBS
}

# One build at a time (two runs may share build/fuzz); the lock goes with this shell.
exec 9>"$OUT/.build.lock"
flock 9
for t in $targets; do
    echo "== build fuzz_$t"
    if ! build "$t"; then
        echo "fuzz/run.sh: fuzz_$t: build FAILED" >&2
        exit 1
    fi
done
flock -u 9
[ "${FUZZ_BUILD_ONLY:-0}" = 1 ] && exit 0

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

if [ $replay -eq 1 ]; then
    exec "$OUT/bin/fuzz_$targets" -runs=1 "$@"
fi

status=0
summary=""
for t in $targets; do
    corpus="$OUT/corpus/$t"
    artifacts="$OUT/artifacts/$t/"
    log="$OUT/logs/$t.log"
    mkdir -p "$corpus" "$artifacts" "$OUT/logs"
    # The seeds join what earlier runs found; the repository's copy is only read.
    if [ -d "fuzz/corpus/$t" ]; then
        cp -f fuzz/corpus/"$t"/* "$corpus"/ 2>/dev/null || true
    fi
    dict=()
    [ -f "fuzz/dict/$t.dict" ] && dict=(-dict="fuzz/dict/$t.dict")

    echo "== run fuzz_$t for ${FUZZ_SECONDS}s (log: $log)"
    rc=0
    "$OUT/bin/fuzz_$t" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=5 \
        -print_final_stats=1 -artifact_prefix="$artifacts" "${dict[@]}" "$corpus" \
        >"$log" 2>&1 || rc=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    execs=${execs:-?}
    if [ $rc -ne 0 ]; then
        status=1
        echo "fuzz_$t: FAILED (exit $rc) after $execs executions; last lines of $log:"
        tail -n 40 "$log"
        summary="$summary$(printf '%-14s %12s  FAILED, see %s' "$t" "$execs" "$artifacts")\n"
    else
        summary="$summary$(printf '%-14s %12s  ok' "$t" "$execs")\n"
    fi
done

echo "== fuzz summary (${FUZZ_SECONDS}s each): target, executions, result"
printf "%b" "$summary"
exit $status
