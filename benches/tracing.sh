#!/usr/bin/env bash
# Tracing overhead: the same unary load (RATE req/s, CONNS connections, SECS s) against
# `loadagent target`, with tracing off, at sample_ratio 0.01 and 1 to a live OTLP receiver
# (benches/otlp_sink.py), and at 1 to an unreachable endpoint. Prints CPU ms per 1,000
# requests, corrected p99, achieved rate, and spans exported/dropped, side by side.
#
#   benches/tracing.sh                 # RATE=10000 CONNS=4 SECS=10
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
RATE=${RATE:-10000}
CONNS=${CONNS:-4}
SECS=${SECS:-10}
python3 -c "import grpc, opentelemetry.proto" 2>/dev/null || pip install -q grpcio opentelemetry-proto
cargo build --release --quiet
BIN=target/release/loadagent
work=$(mktemp -d)
trap 'kill $target_pid $sink_pid 2>/dev/null || true; rm -rf "$work"' EXIT

"$BIN" target --listen 127.0.0.1:0 > "$work/target.out" &
target_pid=$!
python3 benches/otlp_sink.py > "$work/sink.out" &
sink_pid=$!
addr=$(listening_on "$work/target.out")
sink=$(listening_on "$work/sink.out" "PORT ")
closed=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")

variant() {  # $1 = label, $2 = [tracing] body (empty: none)
  bench_scenario "$work/s.toml" tracing-overhead unary Unary "$addr" "[load]
rate = $RATE
concurrency = 64
connections = $CONNS
duration = \"${SECS}s\"
$2"
  python3 benches/cpu.py "$work/cpu.json" "$BIN" run -q "$work/s.toml" --out "$work/r.json" > "$work/run.out" 2>&1
  python3 - "$1" "$work/cpu.json" "$work/r.json" "$work/run.out" <<'PY'
import json, sys, re
u, r, out = json.load(open(sys.argv[2])), json.load(open(sys.argv[3])), open(sys.argv[4]).read()
m = re.search(r"traces\s+(\d+) spans exported to \S+, (\d+) dropped", out)
spans = f"{m.group(1)} / {m.group(2)}" if m else "-"
print(f"| {sys.argv[1]:<28} | {(u['user'] + u['system']) / r['totals']['ok'] * 1e6:6.1f} | "
      f"{r['latency']['corrected']['p99_us'] / 1000:7.2f} | {r['totals']['rps']:8.1f} | {spans} |")
PY
}
echo "== $RATE req/s over $CONNS connections, ${SECS}s, against loadagent target on $addr"
echo "| tracing | CPU ms / 1,000 req | corrected p99 ms | achieved rps | spans exported / dropped |"
echo "|---|---|---|---|---|"
variant "off" ""
variant "sample_ratio 0.01" "[tracing]
otlp_endpoint = \"http://127.0.0.1:$sink\"
sample_ratio = 0.01"
variant "sample_ratio 1 (every call)" "[tracing]
otlp_endpoint = \"http://127.0.0.1:$sink\"
sample_ratio = 1.0"
variant "sample_ratio 1, unreachable" "[tracing]
otlp_endpoint = \"http://127.0.0.1:$closed\"
sample_ratio = 1.0"
variant "off (again, for noise)" ""
kill $sink_pid; wait $sink_pid 2>/dev/null || true
echo "receiver counted: $(sed -n 's/^SPANS //p' "$work/sink.out") spans"
