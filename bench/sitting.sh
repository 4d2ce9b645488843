#!/bin/bash
# Bench sitting used for the issue 14 measurements. Needs MariaDB, Redis, NATS on loopback;
# builds bench/bare (a net/http handler answering a fixed envelope) into /tmp/bare/bare.
# One bench sitting. Usage: sitting.sh BIN SCENARIO...   scenarios: flash flash1m grab rain bare
# Each draw/grab scenario: fresh MariaDB DBs (cfg + 2 user DBs, dropped after), unique
# Redis/NATS prefix, external Redis/NATS, migrate --seed, serve, bench; CPU split by process.
set -u
BIN=$1; shift
P=${P:-pf$(date +%H%M%S)}
OUT=${OUTDIR:-/tmp/perf}/$P; mkdir -p $OUT
DSN='root@tcp(127.0.0.1:3306)'
DUR=${DUR:-30s}
# Ports (override when another sitting may run on this machine): API, operator, bare handler.
PORT=${PORT:-18091} OPS=${OPS:-19091} BAREPORT=${BAREPORT:-18099}
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
pids() { echo "$1 $(pgrep -ox mariadbd) $(pgrep -ox redis-server) $(pgrep -ox nats-server)"; }
sampler() { # out start window pids... — CPU ticks of each pid over [start, start+window] s, and of the bench
  # (start counted from the run's first progress line when WAITFOR names the bench's stderr: after
  # provisioning and the pre-run tally, which take minutes at 1M users)
  local out=$1 st=$2 win=$3; shift 3
  if [ -n "${WAITFOR:-}" ]; then for i in $(seq 1 2400); do grep -qE '^ *[0-9.]+s +[0-9]+ requests' $WAITFOR 2>/dev/null && break; sleep 0.5; done; fi
  sleep $st
  local bp=$(pgrep -f "^$BIN bench" | head -1) b=() a=()
  for p in "$@" $bp; do b+=($(ticks $p)); done; sleep $win
  local i=0 r="${win}s:"; for p in "$@" $bp; do r="$r $(( $(ticks $p) - b[i] ))"; i=$((i+1)); done; echo "$r" > $out
}
run() { # name mode benchargs...
  local name=$1 mode=$2; shift 2
  local db=${P}_$name
  for s in cfg u1 u2; do mysql -uroot -h127.0.0.1 -e "CREATE DATABASE \`${db}_$s\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"; done
  export BIGMARKET_ADMIN_TOKEN=bench-admin-token-0123456789
  export BIGMARKET_CONFIG_DSN="$DSN/${db}_cfg" BIGMARKET_USER_DSNS="$DSN/${db}_u1,$DSN/${db}_u2"
  export BIGMARKET_REDIS_ADDRS=127.0.0.1:6379 BIGMARKET_REDIS_PREFIX=$db
  export BIGMARKET_NATS_URLS=nats://127.0.0.1:4222 BIGMARKET_NATS_PREFIX=$db
  export BIGMARKET_DATA_DIR=$OUT/data_$name BIGMARKET_ADDR=127.0.0.1:$PORT BIGMARKET_OPS_ADDR=127.0.0.1:$OPS
  export BIGMARKET_LOG_LEVEL=warn BIGMARKET_DRAW_PATH=$mode BIGMARKET_MYSQL_MAX_CONNS=24
  $BIN migrate --seed > $OUT/$name.migrate 2>&1
  $BIN serve > $OUT/$name.serve 2>&1 &
  local spid=$!
  for i in $(seq 1 120); do curl -sf 127.0.0.1:$PORT/readyz >/dev/null && break; sleep 0.5; done
  if ! ss -ltnp | grep " 127.0.0.1:$PORT " | grep -q "pid=$spid,"; then # another sitting's serve answering?
    echo "== $name: 127.0.0.1:$PORT is not this serve's (pid $spid): set PORT/OPS" | tee -a $OUT/summary; kill $spid; return 1
  fi
  local ps_=($(pids $spid))
  local secs=${DUR%s}; [ $name = grab ] && secs=${GDUR:-15s} && secs=${secs%s}
  WAITFOR=$OUT/$name.err sampler $OUT/$name.cpu 4 $((secs-6)) ${ps_[@]} &
  local samp=$!
  echo "== $name load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/summary
  if [ -n "${PROF:-}" ]; then (for i in $(seq 1 2400); do grep -qE '^ *[0-9.]+s +[0-9]+ requests' $OUT/$name.err 2>/dev/null && break; sleep 0.5; done; sleep 10; curl -s "127.0.0.1:$OPS/debug/pprof/profile?seconds=10" > $OUT/$name.cpu.pprof; curl -s "127.0.0.1:$OPS/debug/pprof/allocs" > $OUT/$name.allocs.pprof) & local prof=$!; fi
  /usr/bin/time -f "bench-cpu %U %S" $BIN bench "$@" -out $OUT/$name.json > $OUT/$name.txt 2> $OUT/$name.err
  echo "exit $?" >> $OUT/$name.txt
  wait $samp
  [ -n "${PROF:-}" ] && wait $prof
  curl -s 127.0.0.1:$OPS/metrics | grep -E '^bigmarket_draw_writer_lag' >> $OUT/$name.txt
  echo "cpu over $(cat $OUT/$name.cpu) (ticks: serve mariadbd redis nats bench) $(grep bench-cpu $OUT/$name.err)" >> $OUT/summary
  grep -iE 'draws/s|grabs/s|/s|p99|p50|verif|PASS|FAIL|drain|last tenth|behind' $OUT/$name.txt | head -20 >> $OUT/summary
  kill $spid; wait $spid 2>/dev/null
  for s in cfg u1 u2; do mysql -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS \`${db}_$s\`"; done
  redis-cli -h 127.0.0.1 --scan --pattern "$db:*" | xargs -r -n 1000 redis-cli -h 127.0.0.1 del > /dev/null
}
bare() {
  # Built from the module's root, so that the sitting may run from any directory.
  mkdir -p /tmp/bare && (cd "$(dirname "$0")/.." && go build -o /tmp/bare/bare ./bench/bare) || return 1
  /tmp/bare/bare 127.0.0.1:$BAREPORT > $OUT/bare.log 2>&1 &
  local bp=$!; sleep 0.5
  sampler $OUT/bare.cpu 2 11 $bp &
  local samp=$!
  echo "== bare load $(cut -d' ' -f1-3 /proc/loadavg)" >> $OUT/summary
  /usr/bin/time -f "bench-cpu %U %S" $BIN bench -url http://127.0.0.1:$BAREPORT -armory=false -c 64 -d 15s -out $OUT/bare.json > $OUT/bare.txt 2> $OUT/bare.err
  wait $samp; echo "cpu over $(cat $OUT/bare.cpu) (ticks: bare bench) $(grep bench-cpu $OUT/bare.err)" >> $OUT/summary
  grep -iE '/s|p99|p50' $OUT/bare.txt | head -10 >> $OUT/summary
  kill $bp; wait $bp 2>/dev/null
}
for sc in "$@"; do case $sc in
  flash) run flash flash draw -users 10000 -c 64 -d $DUR ;;
  flash1m) run flash1m flash draw -users 1000000 -c 64 -d $DUR ;;
  grab)  run grab flash grab -packets 60 -items 1000 -users 200000 -c 64 -d ${GDUR:-15s} ;;
  rain)  run rain flash rain -users 100000 -prizes 10000 -c 64 -d $DUR ;;
  bare)  bare ;;
esac; done
echo "done $OUT"; cat $OUT/summary
