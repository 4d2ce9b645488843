#!/bin/bash
# Counts Redis commands per draw / grab with MONITOR on a small run (issue 14 round trips).
# Count Redis commands per draw/grab: MONITOR filtered to this run's prefix during a small run.
set -u
BIN=$1 kind=$2
P=pc$(date +%H%M%S)
OUT=${OUTDIR:-/tmp/perf}/$P; mkdir -p $OUT
DSN='root@tcp(127.0.0.1:3306)'
db=$P
for s in cfg u1 u2; do mysql -uroot -h127.0.0.1 -e "CREATE DATABASE \`${db}_$s\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"; done
export BIGMARKET_ADMIN_TOKEN=bench-admin-token-0123456789
export BIGMARKET_CONFIG_DSN="$DSN/${db}_cfg" BIGMARKET_USER_DSNS="$DSN/${db}_u1,$DSN/${db}_u2"
export BIGMARKET_REDIS_ADDRS=127.0.0.1:6379 BIGMARKET_REDIS_PREFIX=$db
export BIGMARKET_NATS_URLS=nats://127.0.0.1:4222 BIGMARKET_NATS_PREFIX=$db
export BIGMARKET_DATA_DIR=$OUT/data BIGMARKET_ADDR=127.0.0.1:18092 BIGMARKET_OPS_ADDR=127.0.0.1:19092
export BIGMARKET_LOG_LEVEL=warn BIGMARKET_MYSQL_MAX_CONNS=8
$BIN migrate --seed > $OUT/migrate 2>&1
$BIN serve > $OUT/serve 2>&1 &
spid=$!
for i in $(seq 1 120); do curl -sf 127.0.0.1:18092/readyz >/dev/null && break; sleep 0.5; done
if [ $kind = draw ]; then
  # warm: every user touched once, then count a second pass
  $BIN bench draw -url http://127.0.0.1:18092 -users 1000 -prefix cnt$P -c 4 -n 1000 -verify=false -q > $OUT/warm 2>&1
  (timeout 5 redis-cli monitor > $OUT/mon) & m=$!; sleep 0.5
  $BIN bench draw -url http://127.0.0.1:18092 -users 1000 -prefix cnt$P -c 1 -n 200 -verify=false -q > $OUT/run 2>&1
else
  (timeout 6 redis-cli monitor > $OUT/mon) & m=$!; sleep 0.5
  $BIN bench grab -url http://127.0.0.1:18092 -packets 2 -items 1000 -users 5000 -c 2 -d 2s > $OUT/run 2>&1
fi
wait $m
grep -E "requests" $OUT/run
grep "$db" $OUT/mon | awk '{print $4}' | sort | uniq -c | sort -rn
grep "$db" $OUT/mon | grep -oE '"(EVALSHA|EVAL)" "[0-9a-f]{8}' | sort | uniq -c
kill $spid; wait $spid 2>/dev/null
for s in cfg u1 u2; do mysql -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS \`${db}_$s\`"; done
redis-cli --scan --pattern "$db:*" | xargs -r -n 1000 redis-cli del > /dev/null
echo $OUT
