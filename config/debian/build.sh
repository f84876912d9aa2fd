#!/bin/sh
# Builds the .deb: the release binary, its man pages and shell completions;
# then cargo-deb (the unit is config/ozg-gateway.service). Run from anywhere:
#   config/debian/build.sh        ->  prints the path of the .deb
# Needs cargo-deb (cargo install cargo-deb --locked) and dpkg.
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
target=${CARGO_TARGET_DIR:-$repo/target}
cargo build --release --locked -p ozg-gateway
bin="$target/release/ozg-gateway"
assets="$target/release/deb-assets"
rm -rf "$assets"
mkdir -p "$assets/man" "$assets/completions"
"$bin" man --out "$assets/man" >/dev/null
gzip -9n "$assets"/man/*.1
"$bin" completions bash > "$assets/completions/ozg-gateway"
"$bin" completions zsh > "$assets/completions/_ozg-gateway"
"$bin" completions fish > "$assets/completions/ozg-gateway.fish"
cargo deb -p ozg-gateway --no-build --locked --output "$target/debian/"
