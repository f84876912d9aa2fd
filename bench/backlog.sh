#!/usr/bin/env bash
# Backlog test (see BENCHMARKS.md): the http target of the `small` profile is down
# (no sink runs), N deliveries pile up; prints the gateway's RSS and its accept
# rate before and with the backlog. Needs release build and ~15 KiB disk per submission.
#
#   bench/backlog.sh [N, default 1000000]
set -u
cd "$(dirname "$0")/.."
cargo build --release -q -p ozg-gateway
N=${1:-1000000}
W=$(mktemp -d)
sed -e "s#@DIR@#$W#g" -e "s#@REPO@#$PWD#g" bench/gateway-bench.toml > $W/gateway.toml
BIN=target/release/ozg-gateway
$BIN serve --config $W/gateway.toml 2>$W/gw.log &
GW=$!
sleep 1
echo "unloaded:"; $BIN loadgen --url https://localhost:18443 --admin http://127.0.0.1:19090 --profile small --connections 64 --duration 10s 2>/dev/null
echo "filling to $N:"; $BIN loadgen --url https://localhost:18443 --admin http://127.0.0.1:19090 --profile small --connections 64 --count $N 2>/dev/null
echo "RSS after fill: $(awk '/VmRSS|VmHWM/ {print $1, $2, $3}' /proc/$GW/status | tr '\n' ' ')"
echo "with the backlog:"; $BIN loadgen --url https://localhost:18443 --admin http://127.0.0.1:19090 --profile small --connections 64 --duration 10s 2>/dev/null
echo "RSS at the end: $(awk '/VmRSS|VmHWM/ {print $1, $2, $3}' /proc/$GW/status | tr '\n' ' ')"
curl -s http://127.0.0.1:19090/metrics | grep -E '^ozg_deliveries|^ozg_target_paused'
for _ in 1 2 3; do echo "/metrics scrape: $(curl -s -o /dev/null -w '%{time_total}' http://127.0.0.1:19090/metrics) s"; done
du -sh $W/var
kill $GW; wait $GW
rm -rf $W
