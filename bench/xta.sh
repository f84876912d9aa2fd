#!/usr/bin/env bash
# The XTA benchmark: four Fachverfahren (one account and certificate each) empty
# their message boxes over the XTA listener — getStatusList (100 at a time), then
# getMessage and close per message on 4 connections each — while the portal API
# keeps taking submissions that go to all four boxes. Small (8 KiB) and typical
# (16 KiB + 256 KiB) submissions. Prints a Markdown report.
#
#   bench/xta.sh [seconds per phase, default 20] [portal connections, default 16]
#
# Each profile: a fill phase (portal load alone: what the boxes hold when readers
# come), then a drain phase (readers and portal load at once; the readers' rate
# counts until their boxes were last non-empty).
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-20}
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

# Reader certificates from the DEMO CA (clientAuth, P-256).
sed '/^#/d' certs-example/ca.key > "$W/ca.key"; sed '/^#/d' certs-example/ca.pem > "$W/ca.pem"
printf "keyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n" > "$W/ext"
READERS=()
for i in 1 2 3 4; do
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/reader$i.key" \
    -subj "/O=ozg-gateway DEMO ONLY/CN=bench-reader$i" -out "$W/reader$i.csr" 2>/dev/null
  openssl x509 -req -in "$W/reader$i.csr" -CA "$W/ca.pem" -CAkey "$W/ca.key" -CAcreateserial \
    -days 2 -sha256 -extfile "$W/ext" -out "$W/reader$i.pem" 2>/dev/null
  READERS+=(--reader "$W/reader$i.pem:$W/reader$i.key:reader$i")
done
sed -e "s#@DIR@#$W#g" -e "s#@REPO@#$PWD#g" bench/gateway-xta.toml > "$W/gateway.toml"

wait_port() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; exit 1; }
"$BIN" serve --config "$W/gateway.toml" 2>"$W/gateway.log" &
GW=$!
wait_port 18443; wait_port 18445

load() { "$BIN" loadgen --url https://localhost:18443 --admin none --json "$@"; }
readers() { "$BIN" xta-readers --url https://localhost:18445/xta --ca certs-example/ca.pem --workers 4 "${READERS[@]}" --json "$@"; }

for profile in small typical; do
  load --profile "$profile" --connections "$CONN" --duration "${SECS}s" > "$W/$profile-fill.json"
  sleep 2   # the engine puts the last submissions in the boxes
  load --profile "$profile" --connections "$CONN" --duration "${SECS}s" > "$W/$profile-load.json" &
  LOAD=$!
  readers --duration "$((SECS * 6))s" --idle-stop 3s > "$W/$profile-read.json"
  wait "$LOAD"
  readers --duration 120s --idle-stop 3s > "$W/$profile-rest.json"   # empty the boxes before the next profile
done
RSS=$(awk '/VmHWM/ {print $2}' /proc/"$GW"/status)
kill "$GW"; wait "$GW" 2>/dev/null || true

python3 - "$W" "$RSS" <<'PY'
import json, os, platform, sys
w, rss = sys.argv[1], int(sys.argv[2])
j = lambda n: json.load(open(os.path.join(w, n)))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
mem = next(l.split()[1] for l in open("/proc/meminfo") if l.startswith("MemTotal"))
print(f"Machine: {os.cpu_count()} x {cpu}, {int(mem)//1024//1024} GiB RAM, Linux {platform.release()}; load generator and readers on the same machine.\n")
print("| profile | fill: accepted/s (4 boxes each) | drain: fetched+closed/s | envelope MiB/s | fetch+close p50 / p99 (ms) | portal accepted/s meanwhile | reader errors |")
print("| --- | ---: | ---: | ---: | --- | ---: | ---: |")
for p in ["small", "typical"]:
    fill, load, read = j(f"{p}-fill.json"), j(f"{p}-load.json"), j(f"{p}-read.json")
    lat = read["fetch_close_latency_ms"]
    print(f"| {p} | {fill['accepted_per_second']:.0f} | {read['messages_per_second']:.0f} ({read['messages']} in {read['seconds']:.1f} s) | {read['envelope_mib_per_second']:.1f} | {lat['p50']:.1f} / {lat['p99']:.1f} | {load['accepted_per_second']:.0f} | {read['errors']} |")
print(f"\nPeak RSS of the gateway: {rss // 1024} MiB.")
PY
