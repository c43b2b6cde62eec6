#!/bin/sh
# Compares lib/http.c with evhttp under wrk: starts both benchmark servers (pinned to CPU 1,
# wrk to CPU 0), runs RUNS alternating 5 s rounds keep-alive and with "Connection: close", and
# prints per round: mode, server, wrk's Requests/sec, server CPU microseconds per request.
# Usage: bench/http/run.sh LEAN_BIN EVHTTP_BIN [RUNS]      (see README.md for building them)
set -eu
lean_bin=$1; ev_bin=$2; runs=${3:-3}
hz=$(getconf CLK_TCK)
taskset -c 1 "$lean_bin" 18080 & lean=$!
taskset -c 1 "$ev_bin" 18081 & ev=$!
trap 'kill $lean $ev 2>/dev/null' EXIT INT TERM
sleep 0.3
cpu() { awk '{print $14 + $15}' /proc/$1/stat; }
for mode in keep-alive close; do
  for i in $(seq "$runs"); do
    for srv in lean:18080:$lean evhttp:18081:$ev; do
      name=${srv%%:*}; rest=${srv#*:}; port=${rest%%:*}; pid=${rest#*:}
      c0=$(cpu "$pid")
      if [ $mode = close ]; then
        out=$(taskset -c 0 wrk -t1 -c50 -d5s -H 'Connection: close' "http://127.0.0.1:$port/x")
      else
        out=$(taskset -c 0 wrk -t1 -c50 -d5s "http://127.0.0.1:$port/x")
      fi
      c1=$(cpu "$pid")
      rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
      n=$(echo "$out" | awk '/requests in/ {print $1}')
      echo "$mode $name $rps $(awk -v c=$((c1 - c0)) -v n="$n" -v hz="$hz" 'BEGIN {printf "%.2f", c / hz * 1e6 / n}')"
    done
  done
done
