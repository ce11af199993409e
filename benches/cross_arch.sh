#!/usr/bin/env bash
# The arm64 path end to end on an x86_64 machine: cross-compile loadagent for
# aarch64-unknown-linux-gnu (.cargo/config.toml), run the same scenario with the native and the
# arm64 binary (the latter under qemu-user), several times each, and compare them by arch.
#
# The arm64 figures are EMULATED (qemu translates every instruction): they prove the binary,
# the fingerprint and the comparison work, and say nothing about arm64 hardware. On real arm64
# nodes, run the Job in deploy/kubernetes/job.yaml and compare its reports.
#
#   benches/cross_arch.sh          # RUNS=3, SECS=3, RATE=500
#   apt-get install gcc-aarch64-linux-gnu qemu-user; rustup target add aarch64-unknown-linux-gnu
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
SECS=${SECS:-3}
RATE=${RATE:-500}
command -v aarch64-linux-gnu-gcc >/dev/null || { echo "missing: apt-get install gcc-aarch64-linux-gnu" >&2; exit 1; }
command -v qemu-aarch64 >/dev/null || { echo "missing: apt-get install qemu-user" >&2; exit 1; }
rustup target list --installed | grep -q aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
cargo build --release --quiet
cargo build --release --quiet --target aarch64-unknown-linux-gnu
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/s.toml" <<TOML
name = "cross-arch"
kind = "unary"
[target]
address = "embedded"
[call]
method = "loadagent.bench.v1.Bench/Unary"
data = { payload_size = 256 }
[load]
rate = $RATE
concurrency = 64
duration = "${SECS}s"
warmup = "1s"
TOML
target/release/loadagent run -q "$work/s.toml" --repeat "$RUNS" --pause 1s --out-dir "$work/native" > /dev/null
qemu-aarch64 -L /usr/aarch64-linux-gnu target/aarch64-unknown-linux-gnu/release/loadagent \
  run -q "$work/s.toml" --repeat "$RUNS" --pause 1s --out-dir "$work/arm64" > /dev/null
target/release/loadagent compare "$work"/native/*.json "$work"/arm64/*.json --format markdown
