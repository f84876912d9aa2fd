#!/usr/bin/env bash
# The benchmark, rerunnable by anyone: builds release, starts the gateway on the
# embedded default with fast local receivers, drives both profiles with the load
# generator, and in the same run measures the limits (seal+encrypt alone on all
# cores; a bare HTTPS endpoint on the same TLS stack). Prints a Markdown report.
#
#   bench/run.sh [seconds per run, default 20] [connections, default 64; typical uses half]
#
# OZG_BIN=/path/to/ozg-gateway bench/run.sh … measures that binary instead of
# building this checkout (to compare two builds on the same machine).
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
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
sed -e "s#@DIR@#$W#g" -e "s#@REPO@#$PWD#g" bench/gateway-bench.toml > "$W/gateway.toml"

wait_port() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; exit 1; }

"$BIN" demo-receiver --accept-only --listen 127.0.0.1:19444 --out "$W/inbox" 2>"$W/sink.log" &
"$BIN" serve --config "$W/gateway.toml" 2>"$W/gateway.log" &
GW=$!
wait_port 19444; wait_port 18443

load() { "$BIN" loadgen --url https://localhost:18443 --admin http://127.0.0.1:19090 --json "$@"; }
rss_kib() { awk '/VmHWM/ {print $2}' /proc/"$GW"/status; }

load --profile small --connections "$CONN" --duration "${SECS}s" > "$W/small.json"
sleep 3   # let the backlog drain before the next profile
load --profile typical --connections "$((CONN / 2))" --duration "${SECS}s" > "$W/typical.json"
RSS=$(rss_kib)
kill "$GW"; wait "$GW" 2>/dev/null || true

"$BIN" bench crypto --config "$W/gateway.toml" --profile small --seconds 10 --json > "$W/crypto-small.json"
"$BIN" bench crypto --config "$W/gateway.toml" --profile typical --seconds 10 --json > "$W/crypto-typical.json"
"$BIN" bench bare-https --config "$W/gateway.toml" --listen 127.0.0.1:18444 &
BARE=$!
wait_port 18444
"$BIN" loadgen --url https://localhost:18444 --admin none --json --profile small --connections "$CONN" --duration "${SECS}s" > "$W/bare-small.json"
"$BIN" loadgen --url https://localhost:18444 --admin none --json --profile typical --connections "$((CONN / 2))" --duration "${SECS}s" > "$W/bare-typical.json"
kill "$BARE"; wait "$BARE" 2>/dev/null || true

python3 - "$W" "$RSS" <<'PY'
import json, os, platform, subprocess, sys
w, rss = sys.argv[1], int(sys.argv[2])
j = lambda n: json.load(open(os.path.join(w, n)))
small, typ, cs, ct, bs, bt = (j(n) for n in ["small.json", "typical.json", "crypto-small.json", "crypto-typical.json", "bare-small.json", "bare-typical.json"])
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
mem = next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal"))
print(f"Machine: {os.cpu_count()} x {cpu}, {int(mem)//1024//1024} GiB RAM, Linux {platform.release()}; load generator on the same machine.\n")
print("| profile | accepted/s | payload MiB/s | 202 p50 / p90 / p99 / max (ms) | delivered/s | backlog start → end | refused / errors |")
print("| --- | ---: | ---: | --- | ---: | --- | --- |")
for r in (small, typ):
    l = r["accept_latency_ms"]
    print(f"| {r['profile']} ({r['connections']} conn.) | {r['accepted_per_second']:.0f} | {r['payload_mib_per_second']:.1f} | {l['p50']:.1f} / {l['p90']:.1f} / {l['p99']:.1f} / {l['max']:.1f} | {r.get('delivered_per_second', 0):.0f} | {r.get('backlog_start', 0):.0f} → {r.get('backlog_end', 0):.0f} | {r['refused']} / {r['errors']} |")
print("\n| limit | small | typical |")
print("| --- | ---: | ---: |")
print(f"| seal+encrypt alone, {cs['threads']} threads (submissions/s) | {cs['submissions_per_second']:.0f} | {ct['submissions_per_second']:.0f} |")
print(f"| bare HTTPS endpoint, same TLS (requests/s) | {bs['accepted_per_second']:.0f} | {bt['accepted_per_second']:.0f} |")
print(f"| gateway ÷ seal+encrypt limit | {small['accepted_per_second']/cs['submissions_per_second']:.0%} | {typ['accepted_per_second']/ct['submissions_per_second']:.0%} |")
print(f"| gateway ÷ bare HTTPS | {small['accepted_per_second']/bs['accepted_per_second']:.0%} | {typ['accepted_per_second']/bt['accepted_per_second']:.0%} |")
print(f"\nGateway peak RSS during the runs: {rss/1024:.0f} MiB")
PY
