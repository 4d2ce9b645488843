#!/bin/bash
# The full scale of issue 14's concurrency proof: USERS users × DRAWS draws each across two
# flash serve processes sharing MariaDB, Redis and NATS on loopback, then bench draw's
# verification (each user's quota = recharged − answered on account, month and day, one
# record per unit, each answered award recorded, draw events written, hot quota = SQL,
# records ≤ stock). Usage: scale.sh BIN (built without -race), e.g.
#   go build -o /tmp/bigmarket ./cmd/bigmarket && bench/scale.sh /tmp/bigmarket
# Fresh MariaDB databases (config + 2 user databases, dropped after), a unique Redis/NATS
# prefix; results under $OUTDIR (default /tmp/scale).
set -u
BIN=$1
P=${P:-sc$(date +%H%M%S)}
OUT=${OUTDIR:-/tmp/scale}/$P; mkdir -p "$OUT"
DSN='root@tcp(127.0.0.1:3306)'
for s in cfg u1 u2; do mysql -uroot -h127.0.0.1 -e "CREATE DATABASE \`${P}_$s\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"; done
export BIGMARKET_ADMIN_TOKEN=bench-admin-token-0123456789
export BIGMARKET_CONFIG_DSN="$DSN/${P}_cfg" BIGMARKET_USER_DSNS="$DSN/${P}_u1,$DSN/${P}_u2"
export BIGMARKET_REDIS_ADDRS=127.0.0.1:6379 BIGMARKET_REDIS_PREFIX=$P
export BIGMARKET_NATS_URLS=nats://127.0.0.1:4222 BIGMARKET_NATS_PREFIX=$P
export BIGMARKET_LOG_LEVEL=warn BIGMARKET_DRAW_PATH=flash BIGMARKET_MYSQL_MAX_CONNS=${CONNS:-4}
"$BIN" migrate --seed > "$OUT/migrate" 2>&1 || { cat "$OUT/migrate"; exit 1; }
pids=()
for n in 1 2; do
  BIGMARKET_DATA_DIR=$OUT/data$n BIGMARKET_ADDR=127.0.0.1:${PORT:-280}9$n BIGMARKET_OPS_ADDR=127.0.0.1:${PORT:-280}8$n \
    "$BIN" serve > "$OUT/serve$n" 2>&1 &
  pids+=($!)
done
for n in 1 2; do
  for i in $(seq 1 120); do curl -sf 127.0.0.1:${PORT:-280}9$n/readyz > /dev/null && break; sleep 0.5; done
done
/usr/bin/time -f "bench-cpu %U %S wall %e" "$BIN" bench draw -url http://127.0.0.1:${PORT:-280}91,http://127.0.0.1:${PORT:-280}92 \
  -users "${USERS:-10000}" -draws-per-user "${DRAWS:-20}" -c "${C:-64}" -out "$OUT/draw.json" > "$OUT/draw.txt" 2> "$OUT/draw.err"
echo "exit $?" >> "$OUT/draw.txt"
for n in 1 2; do curl -s 127.0.0.1:${PORT:-280}8$n/metrics | grep -E '^bigmarket_draw_writer_lag' >> "$OUT/draw.txt"; done
kill "${pids[@]}"; wait "${pids[@]}" 2> /dev/null
for s in cfg u1 u2; do mysql -uroot -h127.0.0.1 -e "DROP DATABASE IF EXISTS \`${P}_$s\`"; done
redis-cli -h 127.0.0.1 --scan --pattern "$P:*" | xargs -r -n 1000 redis-cli -h 127.0.0.1 del > /dev/null
echo "done $OUT"; grep bench-cpu "$OUT/draw.err"; cat "$OUT/draw.txt"
