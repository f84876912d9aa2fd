#!/usr/bin/env bash
# The `large` profile: one 32 MiB attachment (16 KiB of XML besides) to two
# targets over 16 connections, against the embedded default with fast local
# receivers — how fast large uploads are taken and delivered, and how much
# memory the daemon holds meanwhile (its peak RSS, VmHWM); then 100 such uploads
# stalled before their end against a fresh daemon, and its peak RSS.
# Prints Markdown.
#
#   bench/large.sh [seconds, default 30] [connections, default 16]
#
# OZG_BIN=/path/to/ozg-gateway bench/large.sh … measures that binary instead of
# building this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-30}
CONN=${2:-16}
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
"$BIN" loadgen --url https://localhost:18443 --admin http://127.0.0.1:19090 --json \
  --profile large --connections "$CONN" --duration "${SECS}s" > "$W/large.json"
sleep 5   # what was accepted is delivered
HWM=$(awk '/VmHWM/ {print $2}' /proc/"$GW"/status)
kill "$GW"; wait "$GW" 2>/dev/null || true
"$BIN" bench crypto --config "$W/gateway.toml" --profile large --seconds 10 --json > "$W/crypto.json"

# 100 uploads of the large profile stopped before their end, against a
# fresh daemon: what it holds for them (its peak RSS while they hang).
"$BIN" serve --config "$W/gateway.toml" 2>>"$W/gateway.log" &
GW=$!
wait_port 18443
"$BIN" loadgen --url https://localhost:18443 --admin none --json --profile large \
  --connections 100 --stall --duration 20s > "$W/stalled.json" &
STALL=$!
wait "$STALL"
STALLED_HWM=$(awk '/VmHWM/ {print $2}' /proc/"$GW"/status)
kill "$GW"; wait "$GW" 2>/dev/null || true

python3 - "$W" "$HWM" "$STALLED_HWM" <<'PY'
import json, os, platform, sys
w, hwm, stalled_hwm = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = json.load(open(os.path.join(w, "large.json")))
c = json.load(open(os.path.join(w, "crypto.json")))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
print(f"Machine: {os.cpu_count()} x {cpu}; load generator and receivers on the same machine.\n")
print("| profile | accepted/s | payload MiB/s | 202 p50 / p99 (ms) | delivered/s | refused (by type) / errors | seal+encrypt limit | peak RSS |")
print("| --- | ---: | ---: | --- | ---: | --- | ---: | ---: |")
lat = r["accept_latency_ms"]
why = ", ".join(f"{k} {n}" for k, n in r.get("refusals", {}).items()) or "0"
print(f"| large ({r['connections']} conn., {r['seconds']:.0f} s) | {r['accepted_per_second']:.1f} | {r['payload_mib_per_second']:.1f} | "
      f"{lat['p50']:.0f} / {lat['p99']:.0f} | {r.get('delivered_per_second') or 0:.1f} | {why} / {r['errors']} | "
      f"{c['submissions_per_second']:.1f}/s | {hwm // 1024} MiB |")
st = json.load(open(os.path.join(w, "stalled.json")))
why = ", ".join(f"{k} {n}" for k, n in st["refused"].items()) or "none"
print(f"\n{st['connections']} uploads of the large profile stalled before their end for 20 s: "
      f"{st['held']} held, refused early: {why}, errors {st['errors']}, {st['bytes_sent'] / 2**20:.0f} MiB sent; "
      f"peak RSS of the (fresh) daemon {stalled_hwm // 1024} MiB")
PY
