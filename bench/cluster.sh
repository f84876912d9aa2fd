#!/usr/bin/env bash
# Cluster mode's benchmark (issue 14), rerunnable by anyone on a machine with
# PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and RabbitMQ on
# 127.0.0.1:5672 (guest/guest): builds release and, in one run,
#   1. the raw limits of the engines underneath: plain lapin publishing with
#      confirms into a quorum queue (messages of the relay's size), plain
#      PostgreSQL inserts and commits of the rows a sealed submission writes;
#   2. the gateway in cluster mode with one instance, then with two, each
#      driven with the `small` and `typical` profiles by the load generator
#      (two instances: connections spread over both).
# Every phase gets its own scratch database and queue prefix, removed at the end.
# Prints a Markdown report.
#
#   bench/cluster.sh [seconds per run, default 20] [connections, default 64; typical uses half]
#
# OZG_BIN=/path/to/ozg-gateway bench/cluster.sh … measures that binary instead.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}
CONN=${2:-64}
if [[ -n "${OZG_BIN:-}" ]]; then
  BIN=$OZG_BIN
else
  cargo build --release -q -p ozg-gateway
  BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/ozg-gateway
fi
W=$(mktemp -d)
TAG=ozg_bench_$$
PSQL=(psql -q -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1)
drop_scratch() {
  for db in $("${PSQL[@]}" -Atc "SELECT datname FROM pg_database WHERE datname LIKE '${TAG}%'"); do
    "${PSQL[@]}" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" || true
  done
  for q in $(rabbitmqctl -q list_queues name 2>/dev/null | grep "^${TAG}" || true); do
    rabbitmqctl -q delete_queue "$q" >/dev/null || true
  done
}
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; drop_scratch; rm -rf "$W"; }
trap cleanup EXIT

config() { # phase -> config file
  sed -e "s#@DIR@#$W/$1#g" -e "s#@REPO@#$PWD#g" -e "s#@DB@#${TAG}_$1#g" -e "s#@PREFIX@#${TAG}_$1#g" \
    bench/gateway-cluster.toml > "$W/$1.toml"
  mkdir -p "$W/$1"
  echo "$W/$1.toml"
}
wait_port() { for _ in $(seq 1 300); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; exit 1; }
rss_kib() { awk '/VmHWM/ {print $2}' /proc/"$1"/status; }

"$BIN" demo-receiver --accept-only --listen 127.0.0.1:19444 --out "$W/inbox" 2>"$W/sink.log" &
wait_port 19444

# 1. The engines alone.
RAW=$(config raw)
"$BIN" bench raw-amqp --config "$RAW" --seconds "$SECS" --json > "$W/raw-amqp.json"
"$BIN" bench raw-postgres --config "$RAW" --profile small --seconds "$SECS" --json > "$W/raw-pg-small.json"
"$BIN" bench raw-postgres --config "$RAW" --profile typical --seconds "$SECS" --json > "$W/raw-pg-typical.json"

# 2. The gateway: one instance, then two.
run_phase() { # name instances
  local name=$1 n=$2 cfg urls="" admins="" pids=()
  cfg=$(config "$name")
  for i in $(seq 1 "$n"); do
    local ingest=$((18443 + 10 * (i - 1))) admin=$((19090 + 10 * (i - 1)))
    OZG_INGEST_PORT=$ingest OZG_ADMIN_PORT=$admin "$BIN" serve --config "$cfg" 2>"$W/$name-$i.log" &
    pids+=($!)
    wait_port "$ingest"
    urls+="${urls:+,}https://localhost:$ingest"
    admins+="${admins:+,}http://127.0.0.1:$admin"
  done
  load() { "$BIN" loadgen --url "$urls" --admin "$admins" --json "$@"; }
  load --profile small --connections "$CONN" --duration "${SECS}s" > "$W/$name-small.json"
  drain "${admins%%,*}" > "$W/$name-small-drain"
  load --profile typical --connections "$((CONN / 2))" --duration "${SECS}s" > "$W/$name-typical.json"
  local rss=0
  for p in "${pids[@]}"; do rss=$(( $(rss_kib "$p") > rss ? $(rss_kib "$p") : rss )); done
  echo "$rss" > "$W/$name-rss"
  drain "${admins%%,*}" > "$W/$name-typical-drain"
  kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
}
# Waits (up to 5 minutes) until no delivery waits; prints the seconds it took.
drain() {
  local start=$SECONDS
  while (( SECONDS - start < 300 )); do
    local waiting
    waiting=$(curl -sf "$1/metrics" | awk '/^ozg_deliveries\{/ && /state="(pending|retry_wait|in_flight)"/ {n += $2} END {print n + 0}')
    [[ "$waiting" == 0 ]] && break
    sleep 1
  done
  echo $((SECONDS - start))
}
run_phase one 1
run_phase two 2

python3 - "$W" <<'PY'
import json, os, platform, sys
w = sys.argv[1]
j = lambda n: json.load(open(os.path.join(w, n)))
amqp, pgs, pgt = j("raw-amqp.json"), j("raw-pg-small.json"), j("raw-pg-typical.json")
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
mem = next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal"))
print(f"Machine: {os.cpu_count()} x {cpu}, {int(mem)//1024//1024} GiB RAM, Linux {platform.release()}; PostgreSQL, RabbitMQ, load generator and sink on the same machine.\n")
print("| engine alone | rate |")
print("| --- | ---: |")
print(f"| RabbitMQ: publish with confirms into a quorum queue ({amqp['workers']} channels) | {amqp['per_second']:.0f} messages/s |")
print(f"| PostgreSQL: insert + commit the rows of a `small` submission ({pgs['workers']} connections) | {pgs['per_second']:.0f} submissions/s |")
print(f"| PostgreSQL: the same, `typical` | {pgt['per_second']:.0f} submissions/s |")
print()
print("| instances | profile | accepted/s | payload MiB/s | 202 p50 / p90 / p99 / max (ms) | delivered/s | backlog start → end | refused / errors | ÷ lower raw limit |")
print("| ---: | --- | ---: | ---: | --- | ---: | --- | --- | ---: |")
for name, n in (("one", 1), ("two", 2)):
    for prof, pg in (("small", pgs), ("typical", pgt)):
        r = j(f"{name}-{prof}.json")
        l = r["accept_latency_ms"]
        # Messages per submission: one per target (small 1, typical 2).
        per = 1 if prof == "small" else 2
        limit = min(pg["per_second"], amqp["per_second"] / per)
        print(f"| {n} | {prof} ({r['connections']} conn.) | {r['accepted_per_second']:.0f} | {r['payload_mib_per_second']:.1f} | {l['p50']:.1f} / {l['p90']:.1f} / {l['p99']:.1f} / {l['max']:.1f} | {r.get('delivered_per_second', 0):.0f} | {r.get('backlog_start', 0):.0f} → {r.get('backlog_end', 0):.0f} | {r['refused']} / {r['errors']} | {r['accepted_per_second']/limit:.0%} |")
print()
for name, n in (("one", 1), ("two", 2)):
    t = lambda p: int(open(os.path.join(w, f"{name}-{p}-drain")).read())
    print(f"{n} instance(s): peak RSS (largest instance) {int(open(os.path.join(w, name + '-rss')).read())/1024:.0f} MiB; backlog delivered within {t('small')} s after `small`, {t('typical')} s after `typical`")
PY
