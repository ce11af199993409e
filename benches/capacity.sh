#!/usr/bin/env bash
# Capacity searches ([capacity]): how long a search to 2% precision takes, how repeatable it
# is (the coefficient of variation of REPEAT searches), and the generator's own ceiling.
# The server is pinned to core 0 and the generator to core 1 (taskset), so each has one
# core of its own and the search measures the server's one core.
#
# - the reference target (`loadagent target`, a separate process, no service time);
# - Python grpcio with 8 worker threads and a 20 ms service time: capacity about 400/s;
# - the generator's ceiling: single-step searches at rate R (start_rate = max_rate = R),
#   bisected between the highest R that passes and the lowest the generator could not keep
#   up with (`limited_by = "generator"`). When the server is the limit first, the ceiling is
#   only known to be above the server's capacity: it says so (">=").
#
#   benches/capacity.sh              # REPEAT=5 STEP=4s PRECISION=0.02
#   REPEAT=3 STEP=3s KEEP=results/ SERVERS=grpcio benches/capacity.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
REPEAT=${REPEAT:-5}
STEP=${STEP:-4s}
PRECISION=${PRECISION:-0.02}
[ "$(nproc)" -ge 2 ] || { echo "needs 2 cores (one for the server, one for the generator)" >&2; exit 1; }
python3 -c "import grpc, grpc_tools" 2>/dev/null || { echo "grpcio missing: tests/setup.sh installs it" >&2; exit 1; }
cargo build --release --quiet
BIN=$PWD/target/release/loadagent
# KEEP=DIR keeps every report (the searches' steps) there.
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; [ -z "${KEEP:-}" ] || cp "$work"/*.json "$KEEP"/; rm -rf "$work"' EXIT

taskset -c 0 "$BIN" target --listen 127.0.0.1:0 > "$work/target.out" &
pids+=($!)
echo $! > "$work/target.pid"
target_addr=$(listening_on "$work/target.out")

# grpcio reads commands on stdin: give it one that stays open and says nothing.
taskset -c 0 python3 tests/python/echo_server.py --workers 8 --pid-file "$work/grpcio.pid" \
  < <(sleep 100000) > "$work/grpcio.out" 2>&1 &
pids+=($!)
grpcio_addr=127.0.0.1:$(listening_on "$work/grpcio.out" "PORT ")

# search NAME ADDRESS PIDFILE CALL SLO START MAX CONCURRENCY CONFIRM: a scenario file.
search() {
  cat > "$work/$1.toml" <<TOML
name = "$1"
kind = "unary"
[target]
address = "$2"
process = "$3"
[call]
$4
timeout = "5s"
[load]
concurrency = $8
connections = 4
warmup = "1s"
[capacity]
slo = $5
start_rate = $6
max_rate = $7
growth = 2
precision = $PRECISION
step = "$STEP"
settle = "1s"
confirm = "$9"
max_duration = "30m"
TOML
}

reference_call='method = "loadagent.bench.v1.Bench/Unary"
proto = ["'$PWD'/proto/bench.proto"]
data = { payload_size = 64 }'
grpcio_call='method = "testing.echo.v1.Echo/Say"
data = { message = "capacity", delay_ms = 20 }'

# The reference target's SLO leaves room for a shared VM's scheduling stalls (tens of ms,
# seen at any rate: with p99 < 20ms a stall at a quarter of the capacity failed steps): the
# search then finds where the server's one core runs out, which repeats.
search reference "$target_addr" "$work/target.pid" "$reference_call" \
  '["latency.p99 < 100ms", "error_rate < 0.1%"]' 2000 400000 512 "$STEP"
search grpcio "$grpcio_addr" "$work/grpcio.pid" "$grpcio_call" \
  '["latency.p99 < 250ms", "error_rate < 0.1%"]' 50 5000 128 "$STEP"

# run NAME OUT: one search on core 1; its wall time beside its report.
run() {
  local start end
  start=$(date +%s.%N)
  taskset -c 1 "$BIN" run -q "$work/$1.toml" --out "$2" > "$work/run.txt" 2>&1 || true
  end=$(date +%s.%N)
  [ -s "$2" ] || { cat "$work/run.txt"; exit 1; }
  python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$start" "$end" > "$2.wall"
}

echo "== $REPEAT searches each, step $STEP, precision $PRECISION; server on core 0, generator on core 1"
export SERVERS=${SERVERS:-reference grpcio}
for name in $SERVERS; do
  for i in $(seq 1 "$REPEAT"); do
    run "$name" "$work/$name-$i.json"
  done
done

# The ceiling: single steps at rate R.
ceiling_probe() {  # R -> prints limited_by of a one-step search at R
  search ceiling "$target_addr" "$work/target.pid" "$reference_call" \
    '["latency.p99 < 200ms", "error_rate < 1%"]' "$1" "$1" 512 0s
  run ceiling "$work/ceiling-$1.json"
  python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['capacity']['limited_by'])" "$work/ceiling-$1.json"
}
: > "$work/ceiling.txt"
low=0; high=0; rate=8000; target_first=0
while :; do
  said=$(ceiling_probe "$rate")
  echo "$rate $said" >> "$work/ceiling.txt"
  case "$said" in
    max_rate) low=$rate ;;
    generator) high=$rate ;;
    *) target_first=$rate; break ;;
  esac
  if [ "$high" = 0 ]; then
    rate=$((rate * 2))
    [ "$rate" -le 1024000 ] || break
  else
    [ "$(python3 -c "print(int(($high - $low) / max($low, 1) > 0.05))")" = 1 ] || break
    rate=$(((low + high) / 2))
  fi
done

python3 - "$work" "$REPEAT" "$low" "$high" "$target_first" <<'PY'
import json, os, statistics, sys
work, repeat = sys.argv[1], int(sys.argv[2])
low, high, target_first = (int(x) for x in sys.argv[3:6])
print("| server | searches | capacity/s (mean) | CV | limited by | steps (mean) | search time (mean) | per server core used | per usable core |")
print("|---|---|---|---|---|---|---|---|---|")
for name in os.environ.get("SERVERS", "reference grpcio").split():
    reports = [json.load(open(f"{work}/{name}-{i}.json")) for i in range(1, repeat + 1)]
    walls = [float(open(f"{work}/{name}-{i}.json.wall").read()) for i in range(1, repeat + 1)]
    caps = [r["capacity"] for r in reports]
    found = [c["rps"] for c in caps if c.get("rps")]
    limits = sorted({c["limited_by"] for c in caps})
    mean = statistics.mean(found) if found else float("nan")
    cv = statistics.pstdev(found) / mean if len(found) > 1 else float("nan")
    per_core = [c["per_server_core"] for c in caps if c.get("per_server_core")]
    per_usable = [c["per_usable_core"] for c in caps if c.get("per_usable_core")]
    steps = statistics.mean(len(c["steps"]) for c in caps)
    per = lambda v: f"{statistics.mean(v):.0f}/s" if v else "–"
    print(f"| {name} | {len(found)}/{repeat} found | {mean:.0f} | {cv * 100:.1f}% | {', '.join(limits)} | "
          f"{steps:.1f} | {statistics.mean(walls):.0f} s | {per(per_core)} | {per(per_usable)} |")
    print("  found: " + ", ".join(f"{x:.0f}" for x in found))
probes = open(f"{work}/ceiling.txt").read().split()
print("ceiling probes (rate limited_by): " + " ".join(f"{probes[i]}:{probes[i + 1]}" for i in range(0, len(probes), 2)))
reference = [json.load(open(f"{work}/reference-{i}.json"))["capacity"]
             for i in range(1, repeat + 1) if os.path.exists(f"{work}/reference-{i}.json")]
served = max([c["rps"] for c in reference if c.get("rps") and c["limited_by"] != "generator"] + [low])
if target_first:
    print(f"generator ceiling: >= {served:.0f}/s on one core (the server on its own core was the limit first: "
          f"a step at {target_first}/s failed on the server's side, and the searches found it at up to {served:.0f}/s)")
elif high:
    print(f"generator ceiling: {low}/s on one core (a step at {high}/s was limited by the generator)")
else:
    print(f"generator ceiling: >= {low}/s on one core (no probe found the generator's limit)")
PY
