#!/usr/bin/env bash
# Case statistics over a year of history (see BENCHMARKS.md): fills an embedded
# store with N synthetic submissions (bench/stats_history.py) as a store of
# schema version 7, starts the gateway on it (the migration counts the
# history: its time is printed), and times statistics queries through the
# operator API (5 runs each; curl's total time).
#
#   bench/stats.sh [N, default 5000000]
#
# Needs a release build (or OZG_BIN=/path/to/ozg-gateway) and ~1 GiB disk per
# million submissions.
set -u
cd "$(dirname "$0")/.."
N=${1:-5000000}
if [[ -n "${OZG_BIN:-}" ]]; then
  BIN=$OZG_BIN
else
  cargo build --release -q -p ozg-gateway
  BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/ozg-gateway
fi
W=$(mktemp -d)
sed -e "s#@DIR@#$W#g" -e "s#@REPO@#$PWD#g" bench/gateway-bench.toml > $W/gateway.toml
up() { # [seconds to wait for readiness, default 60]
  $BIN serve --config $W/gateway.toml 2>>$W/gw.log &
  GW=$!
  for _ in $(seq 1 ${1:-60}); do curl -sf http://127.0.0.1:19090/readyz >/dev/null && return; sleep 1; done
  echo "the gateway did not come up: $(tail -5 $W/gw.log)"; exit 1
}
up; kill $GW; wait $GW
python3 bench/stats_history.py $W/var $N
t0=$(date +%s.%N)
up 3600
echo "start with the migration that counts the history: $(echo "$(date +%s.%N) - $t0" | bc) s"
sqlite3 -readonly $W/var/gateway.db "SELECT 'case_counts rows per period: ' || group_concat(period || ' ' || c, ', ') FROM (SELECT period, count(*) c FROM case_counts GROUP BY period)" 2>/dev/null
today=$(date +%F); year_ago=$(date -d '-364 days' +%F)
for q in \
  "period=month&by=leistung" \
  "period=month&by=leistung,destination,portal,target" \
  "period=week&by=leistung,destination&from=$year_ago&to=$today" \
  "period=day&by=leistung&from=$year_ago&to=$today" \
  "period=day&by=leistung,destination,portal,target&from=$year_ago&to=$today" \
  "period=day&by=tenant" \
  "period=hour&by=target" \
  "period=week&by=leistung,destination&from=$year_ago&to=$today&format=csv"; do
  times=$(for _ in 1 2 3 4 5; do curl -s -o $W/answer -w '%{time_total}\n' "http://127.0.0.1:19090/admin/v1/stats?$q"; done | sort -n | tr '\n' ' ')
  echo "$q: rows $(python3 -c "import json,sys; d=json.load(open('$W/answer')); print(len(d['rows']), 'accepted', d['totals']['accepted'])" 2>/dev/null || wc -l < $W/answer), seconds (sorted) $times"
done
echo "RSS: $(awk '/VmRSS|VmHWM/ {print $1, $2, $3}' /proc/$GW/status | tr '\n' ' ')"
kill $GW; wait $GW
du -sh $W/var
rm -rf $W
