#!/usr/bin/env bash
# A mix of calls costs (almost) what one method costs: loadagent's CPU per 1,000 requests at
# a fixed rate against the reference target, one `[call]` vs a `[[calls]]` mix of 4 entries
# (the same method, each entry with its own metadata, so each sends its own headers), in
# alternating rounds; prints each round's ratio and the median (issue 27: at most 1.05).
#
#   benches/mix.sh            # RATE=10000 CONNS=4 SECS=10 ROUNDS=5 by default
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
RATE=${RATE:-10000}
CONNS=${CONNS:-4}
SECS=${SECS:-10}
ROUNDS=${ROUNDS:-5}
cargo build --release --quiet
BIN=target/release/loadagent
work=$(mktemp -d)
trap 'kill $target_pid 2>/dev/null || true; rm -rf "$work"' EXIT

"$BIN" target --listen 127.0.0.1:0 > "$work/target.out" &
target_pid=$!
addr=$(listening_on "$work/target.out")

load="[load]
rate = $RATE
concurrency = 64
connections = $CONNS
duration = \"${SECS}s\""
bench_scenario "$work/one.toml" one unary Unary "$addr" "metadata = { x-entry = \"a\" }
timeout = \"5s\"
$load"
{
  printf 'name = "mix"\nkind = "unary"\n[target]\naddress = "%s"\n' "$addr"
  for entry in a b c d; do
    printf '[[calls]]\nmethod = "loadagent.bench.v1.Bench/Unary"\nproto = ["%s/proto/bench.proto"]\ndata = { payload_size = 64 }\nmetadata = { x-entry = "%s" }\ntimeout = "5s"\nweight = 1\n' "$PWD" "$entry"
  done
  echo "$load"
} > "$work/mix.toml"

cpu() { python3 benches/cpu.py "$work/cpu.json" "$@"; }
echo "== $RATE req/s over $CONNS connections for ${SECS}s, $ROUNDS rounds: one method vs a mix of 4"
: > "$work/rounds.txt"
for round in $(seq 1 "$ROUNDS"); do
  for which in one mix; do
    cpu "$BIN" run -q "$work/$which.toml" --out "$work/$which-$round.json" > "$work/$which.txt" 2>&1 || { cat "$work/$which.txt"; exit 1; }
    echo "$which|$(cat "$work/cpu.json")|$work/$which-$round.json" >> "$work/rounds.txt"
  done
done
python3 - "$work/rounds.txt" <<'PY'
import json, statistics, sys
rows = [l.rstrip("\n").split("|") for l in open(sys.argv[1])]
def per_1k(cpu, report):
    c = json.loads(cpu); r = json.load(open(report))
    return (c["user"] + c["system"]) / r["totals"]["requests"] * 1000 * 1000, r
ratios = []
for i in range(0, len(rows), 2):
    one, r1 = per_1k(rows[i][1], rows[i][2])
    mix, r2 = per_1k(rows[i + 1][1], rows[i + 1][2])
    assert r2["totals"]["requests"] == sum(m["requests"] for m in r2["methods"])
    ratios.append(mix / one)
    print(f"round {i // 2 + 1}: one {one:.2f} ms, mix {mix:.2f} ms CPU per 1k requests: {mix / one:.3f}x"
          f" (errors {r1['totals']['errors']}, {r2['totals']['errors']})")
print(f"median mix/one: {statistics.median(ratios):.3f}x (rounds {min(ratios):.3f}-{max(ratios):.3f})")
PY
