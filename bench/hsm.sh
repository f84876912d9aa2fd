#!/usr/bin/env bash
# The seal key in an HSM against the seal key in a file, rerunnable by anyone
# with SoftHSM2 and opensc (apt-get install softhsm2 opensc): makes a SoftHSM2
# token in a scratch directory with an EC P-256 key generated inside it, a DEMO
# ONLY certificate for it from the demo CA, and then measures
#
#   1. one seal signature (`bench seal`, 2 threads): file key, token key;
#   2. the accept path, profile `small` (every accept seals a manifest and a
#      receipt): the gateway with the file key, then with the token key,
#      alternating `rounds` times.
#
#   bench/hsm.sh [seconds per run, default 15] [connections, default 64] [rounds, default 2]
#
# OZG_BIN=/path/to/ozg-gateway measures that binary instead of building.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-15}
CONN=${2:-64}
ROUNDS=${3:-2}
if [[ -n "${OZG_BIN:-}" ]]; then
  BIN=$OZG_BIN
else
  cargo build --release -q -p ozg-gateway
  BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/ozg-gateway
fi
MODULE=$(ls /usr/lib/softhsm/libsofthsm2.so /usr/lib/*-linux-gnu/softhsm/libsofthsm2.so 2>/dev/null | head -n1)
[[ -n "$MODULE" ]] || { echo "SoftHSM2 is not installed: apt-get install softhsm2 opensc" >&2; exit 1; }
W=$(mktemp -d)
cleanup() { kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT

export SOFTHSM2_CONF=$W/softhsm2.conf OZG_HSM_PIN=472913
mkdir -p "$W/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$W/tokens" > "$SOFTHSM2_CONF"
softhsm2-util --init-token --free --label ozg-bench --pin "$OZG_HSM_PIN" --so-pin 88776655 >/dev/null
P11=(pkcs11-tool --module "$MODULE" --token-label ozg-bench --login --pin "$OZG_HSM_PIN")
"${P11[@]}" --keypairgen --key-type EC:prime256v1 --label seal --id 01 --sensitive >/dev/null
"${P11[@]}" --read-object --type pubkey --label seal -o "$W/seal.pub.der" >/dev/null
openssl pkey -pubin -inform DER -in "$W/seal.pub.der" -out "$W/seal.pub.pem"
printf 'basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\n' > "$W/seal.ext"
openssl x509 -new -days 30 -subj "/O=ozg-gateway DEMO ONLY/CN=benchmark seal in SoftHSM" \
  -force_pubkey "$W/seal.pub.pem" -CA certs-example/ca.pem -CAkey certs-example/ca.key \
  -extfile "$W/seal.ext" -out "$W/seal-hsm.pem" 2>/dev/null

sed -e "s#@DIR@#$W/file#g" -e "s#@REPO@#$PWD#g" bench/gateway-bench.toml > "$W/file.toml"
sed -e "s#@DIR@#$W/token#g" -e "s#@REPO@#$PWD#g" \
    -e "s#^seal_certificate = .*#seal_certificate = \"$W/seal-hsm.pem\"#" \
    -e "s#^seal_key = .*#seal_key = \"pkcs11:token=ozg-bench;object=seal\"#" \
    bench/gateway-bench.toml > "$W/token.toml"
# [pki.pkcs11] goes right after the [pki] table's keys.
python3 - "$W/token.toml" "$MODULE" <<'PY'
import sys
path, module = sys.argv[1:3]
text = open(path).read()
table = f'\n[pki.pkcs11]\nmodule = "{module}"\npin = "${{OZG_HSM_PIN}}"\n'
text = text.replace("\n[log]", table + "\n[log]", 1)
open(path, "w").write(text)
PY

wait_port() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 did not open" >&2; exit 1; }

"$BIN" bench seal --config "$W/file.toml" --seconds 5 --json > "$W/seal-file.json"
"$BIN" bench seal --config "$W/token.toml" --seconds 5 --json > "$W/seal-token.json"

"$BIN" demo-receiver --accept-only --listen 127.0.0.1:19444 --out "$W/inbox" 2>"$W/sink.log" &
wait_port 19444
for round in $(seq 1 "$ROUNDS"); do
  for kind in file token; do
    rm -rf "$W/$kind"
    "$BIN" serve --config "$W/$kind.toml" 2>"$W/gateway-$kind.log" &
    GW=$!
    wait_port 18443
    "$BIN" loadgen --url https://localhost:18443 --admin http://127.0.0.1:19090 --json \
      --profile small --connections "$CONN" --duration "${SECS}s" > "$W/small-$kind-$round.json"
    kill "$GW"; wait "$GW" 2>/dev/null || true
  done
done

python3 - "$W" "$ROUNDS" <<'PY'
import json, os, platform, sys
w, rounds = sys.argv[1], int(sys.argv[2])
j = lambda n: json.load(open(os.path.join(w, n)))
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
print(f"Machine: {os.cpu_count()} x {cpu}; SoftHSM2 in the same process; load generator on the same machine.\n")
print("| seal key | signatures/s (2 threads) | one signature p50 / p99 (ms) |")
print("| --- | ---: | --- |")
for kind in ("file", "token"):
    s = j(f"seal-{kind}.json")
    print(f"| {kind} ({s['alg']}) | {s['signatures_per_second']:.0f} | {s['p50_ms']:.3f} / {s['p99_ms']:.3f} |")
print("\n| round | seal key | small accepted/s | 202 p50 / p99 (ms) | refused / errors |")
print("| --- | --- | ---: | --- | --- |")
tot = {"file": 0.0, "token": 0.0}
for r in range(1, rounds + 1):
    for kind in ("file", "token"):
        s = j(f"small-{kind}-{r}.json")
        tot[kind] += s["accepted_per_second"]
        l = s["accept_latency_ms"]
        print(f"| {r} | {kind} | {s['accepted_per_second']:.0f} | {l['p50']:.1f} / {l['p99']:.1f} | {s['refused']} / {s['errors']} |")
print(f"\ntoken ÷ file, accepted/s over all rounds: {tot['token'] / tot['file']:.0%}")
PY
