#!/bin/sh
# `make run`: starts a local Redis (unless one already answers on $REDIS_PORT, default 6379) and
# tyto in the foreground with ./tyto.yaml. Ctrl-C stops tyto, then the Redis this script started.
set -eu
cd "$(dirname "$0")/.."
port="${REDIS_PORT:-6379}"
state="${TYTO_RUN_DIR:-$PWD/run}"
mkdir -p "$state"

redis_pid=""
if redis-cli -p "$port" ping >/dev/null 2>&1; then
    echo "run: using the Redis already answering on 127.0.0.1:$port"
else
    redis-server redis/redis.conf --bind 127.0.0.1 --port "$port" --dir "$state" \
        --daemonize yes --pidfile "$state/redis.pid" --logfile "$state/redis.log"
    i=0
    until redis-cli -p "$port" ping >/dev/null 2>&1; do
        i=$((i + 1))
        [ "$i" -gt 50 ] && { echo "run: redis-server did not start (see $state/redis.log)" >&2; exit 1; }
        sleep 0.1
    done
    redis_pid=$(cat "$state/redis.pid")
    echo "run: started redis-server (pid $redis_pid) on 127.0.0.1:$port, data in $state"
fi

stop_redis() {
    if [ -n "$redis_pid" ]; then
        kill "$redis_pid" 2>/dev/null || true
        echo "run: stopped redis-server (pid $redis_pid)"
    fi
}
trap stop_redis EXIT

echo "run: tyto on port $(sed -n 's/^ *port: *\([0-9]*\).*/\1/p' tyto.yaml | head -n 1); try:"
echo "  curl 'http://127.0.0.1:6969/announce?info_hash=%12%34%56%78%9a%bc%de%f0%12%34%56%78%9a%bc%de%f0%12%34%56%78&peer_id=-TY0001-000000000001&port=6881&left=0'"
TYTO_REDIS_URL="${TYTO_REDIS_URL:-redis://127.0.0.1:$port}" ./tyto -c tyto.yaml &
tyto_pid=$!
# Ctrl-C reaches tyto too (same process group); wait for its drain before Redis goes.
trap 'kill -TERM "$tyto_pid" 2>/dev/null || true' INT TERM
while kill -0 "$tyto_pid" 2>/dev/null; do
    wait "$tyto_pid" || true
done
