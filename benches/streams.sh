#!/usr/bin/env bash
# Streaming benchmark, one run against `loadagent target` in its own process:
# - 10,000 concurrent bidi streams at 1 message/s each over 4 connections, paced by
#   `message_interval` (a pause after each reply) and by `message_rate` (a schedule): the
#   generator's peak RSS, CPU per 1,000 messages and messages received per second;
# - unary CPU per 1,000 requests at the same message rate, measured in the same run;
# - maximum messages/s on one bidi stream and on 100 (pipelined, as fast as flow control allows).
#   benches/streams.sh            # STREAMS=10000 SECS=30 by default
#   STREAMS=50000 SECS=20 benches/streams.sh   # with the 10,000 run: the cost of one more stream
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
STREAMS=${STREAMS:-10000}
SECS=${SECS:-30}
cargo build --release --quiet
BIN=target/release/loadagent
work=$(mktemp -d)
trap 'kill $target_pid 2>/dev/null || true; rm -rf "$work"' EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$BIN" target --listen 127.0.0.1:0 > "$work/target.out" &
target_pid=$!
addr=$(listening_on "$work/target.out")

scenario() {  # $1 kind, $2 method, $3 load table, $4 stream table
  local stream="[stream]
$4"
  [ "$1" = unary ] && stream=""
  bench_scenario "$work/s.toml" "bench-$1" "$1" "$2" "$addr" "[load]
$3
$stream"
}
measure() {  # $1 label [$2 messages asked in the measured part]; prints CPU ms per 1,000 of `what` (messages or requests)
  python3 benches/cpu.py "$work/cpu.json" "$BIN" run -q "$work/s.toml" --out "$work/r.json" > /dev/null
  python3 - "$1" "$work/cpu.json" "$work/r.json" "${2:-}" <<'PY'
import json, sys
u, r = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
cpu = u["user"] + u["system"]
m = r.get("messages")
n = m["sent"] if m else r["totals"]["ok"]
what = "messages" if m else "requests"
extra = f", {m['received_per_second']:.0f} msg/s received" if m else f", {r['totals']['rps']:.0f} req/s"
s = r.get("streams")
# Streams opened in the warm-up are `open_at_start`; `opened` counts the measured part only.
extra += f", streams {s['open_at_start'] + s['opened']} open / {s['failed']} failed" if s else ""
# The per-second figures divide by the report's duration, which includes the wind-down after
# the measured part (streams closing: ~0.1 s at 10,000): received of asked is the exact ratio.
if m and sys.argv[4]:
    extra += f", received {m['received']} of {int(sys.argv[4])} asked"

print(f"{sys.argv[1]:<44} {cpu/n*1e6:7.1f} ms CPU / 1,000 {what}, peak RSS {r['process']['peak_rss_bytes']/2**20:6.1f} MiB{extra}")
PY
}

echo "== $STREAMS bidi streams x 1 msg/s over 4 connections, ${SECS}s (target $addr)"
scenario bidi_stream BidiStream "concurrency = $STREAMS
connections = 4
duration = \"${SECS}s\"
warmup = \"5s\"" "messages = 100000
message_interval = \"1s\""
measure "bidi, $STREAMS streams, message_interval 1s"
scenario bidi_stream BidiStream "concurrency = $STREAMS
connections = 4
duration = \"${SECS}s\"
warmup = \"5s\"" "messages = 100000
message_rate = 1"
# Each stream is due once a second, so a window of SECS seconds asks STREAMS × SECS messages.
measure "bidi, $STREAMS streams, message_rate 1" $((STREAMS * SECS))
scenario unary Unary "rate = $STREAMS
concurrency = 64
connections = 4
duration = \"${SECS}s\"" ""
measure "unary at the same rate ($STREAMS req/s)"

echo
echo "== maximum messages/s (pipelined bidi, no pause), 10s"
for n in 1 100; do
  scenario bidi_stream BidiStream "concurrency = $n
connections = 1
duration = \"10s\"" "messages = 100000000
mode = \"pipelined\""
  measure "bidi, $n stream(s)"
done
