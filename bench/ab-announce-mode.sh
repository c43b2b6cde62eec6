#!/bin/bash
# A/B: redis.announce function vs pipeline, churn keep-alive and close, alternating.
set -u
B=/work/main/build/lead/tyto
d=$(mktemp -d)
rp=$((20000 + RANDOM % 10000))
redis-server /work/main/redis/redis.conf --port $rp --bind 127.0.0.1 --save '' --dir $d --daemonize yes --pidfile $d/r.pid --logfile $d/r.log
sleep 0.5
for m in function pipeline; do
  p=$((30000 + RANDOM % 10000))
  cat > $d/$m.yaml <<Y
listen: {port: $p, ipv4: "127.0.0.1", ipv6: ""}
workers: ${W:-1}
redis: {url: "redis://127.0.0.1:$rp", announce: $m, prefix: "$m:"}
log: {level: warn}
Y
  $B -c $d/$m.yaml > $d/$m.log 2>&1 &
  echo $! > $d/$m.pid; echo $p > $d/$m.port
done
sleep 1
export BENCH_DIR=/work/main/bench BENCH_CHURN_HASH=$(printf churn | sha1sum | cut -c1-40) BENCH_HASHES=/dev/null BENCH_TORRENTS=1 BENCH_PEERS=1
cpu() { redis-cli -p $rp info cpu | awk -F: '/used_cpu_(sys|user):/{s+=$2} END{printf "%.3f", s}'; }
for round in 1 2 3; do
  for m in function pipeline; do
    for mode in ka close; do
      p=$(cat $d/$m.port)
      hdr=""; [ $mode = close ] && hdr="-H Connection:close"
      redis-cli -p $rp del "$m:{$BENCH_CHURN_HASH}:leechers" "$m:{$BENCH_CHURN_HASH}:seeders" >/dev/null
      c0=$(cpu)
      out=$(wrk -t2 -c32 -d${DUR:-5}s $hdr -s /work/main/bench/churn.lua http://127.0.0.1:$p/ 2>&1)
      c1=$(cpu)
      rps=$(echo "$out" | awk '/Requests\/sec/{print $2}')
      n=$(echo "$out" | awk '/requests in/{print $1}')
      bad=$(echo "$out" | grep -o '"bad":[0-9]*' | head -1)
      echo "round=$round mode=$m conn=$mode rps=$rps redis_us_per_req=$(echo "($c1-$c0)*1000000/$n" | bc -l | cut -c1-6) $bad"
    done
  done
done
for m in function pipeline; do kill $(cat $d/$m.pid); done
sleep 1; kill $(cat $d/r.pid); cat $d/pipeline.log | tail -5; rm -rf $d
