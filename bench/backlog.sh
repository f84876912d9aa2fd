#!/usr/bin/env bash
# Backlog test (see BENCHMARKS.md): the http target of the `small` profile is down
# (no sink runs), N deliveries pile up; prints the gateway's RSS and its accept
# rate before and with the backlog. Needs release build and ~15 KiB disk per submission.
#
#   bench/backlog.sh [N, default 1000000] [embedded|cluster, default embedded]
#
# `cluster` runs one instance in cluster mode (bench/gateway-cluster.toml) against
# the machine's PostgreSQL and RabbitMQ, in a scratch database and queue prefix
# removed at the end. OZG_BIN=/path/to/ozg-gateway measures that binary.
set -u
cd "$(dirname "$0")/.."
N=${1:-1000000}
MODE=${2:-embedded}
if [[ -n "${OZG_BIN:-}" ]]; then
  BIN=$OZG_BIN
else
  cargo build --release -q -p ozg-gateway
  BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/ozg-gateway
fi
W=$(mktemp -d)
TAG=ozg_backlog_$$
if [[ $MODE == cluster ]]; then
  sed -e "s#@DIR@#$W#g" -e "s#@REPO@#$PWD#g" -e "s#@DB@#$TAG#g" -e "s#@PREFIX@#$TAG#g" \
    bench/gateway-cluster.toml > $W/gateway.toml
else
  sed -e "s#@DIR@#$W#g" -e "s#@REPO@#$PWD#g" bench/gateway-bench.toml > $W/gateway.toml
fi
$BIN serve --config $W/gateway.toml 2>$W/gw.log &
GW=$!
sleep 2
echo "unloaded:"; $BIN loadgen --url https://localhost:18443 --admin http://127.0.0.1:19090 --profile small --connections 64 --duration 10s 2>/dev/null
echo "filling to $N:"; $BIN loadgen --url https://localhost:18443 --admin http://127.0.0.1:19090 --profile small --connections 64 --count $N 2>/dev/null
echo "RSS after fill: $(awk '/VmRSS|VmHWM/ {print $1, $2, $3}' /proc/$GW/status | tr '\n' ' ')"
echo "with the backlog:"; $BIN loadgen --url https://localhost:18443 --admin http://127.0.0.1:19090 --profile small --connections 64 --duration 10s 2>/dev/null
echo "RSS at the end: $(awk '/VmRSS|VmHWM/ {print $1, $2, $3}' /proc/$GW/status | tr '\n' ' ')"
curl -s http://127.0.0.1:19090/metrics | grep -E '^ozg_deliveries|^ozg_target_paused|^ozg_outbox|^ozg_audit_unplaced'
for _ in 1 2 3; do echo "/metrics scrape: $(curl -s -o /dev/null -w '%{time_total}' http://127.0.0.1:19090/metrics) s"; done
kill $GW; wait $GW
if [[ $MODE == cluster ]]; then
  psql -q -h 127.0.0.1 -U postgres -d postgres -Atc "SELECT pg_size_pretty(pg_database_size('$TAG'))" | sed 's/^/database size: /'
  rabbitmqctl -q list_queues name messages | grep "^$TAG" | awk '$2 > 0'
  psql -q -h 127.0.0.1 -U postgres -d postgres -c "DROP DATABASE IF EXISTS \"$TAG\" WITH (FORCE)"
  for q in $(rabbitmqctl -q list_queues name | grep "^$TAG"); do rabbitmqctl -q delete_queue "$q" >/dev/null; done
else
  du -sh $W/var
fi
rm -rf $W
