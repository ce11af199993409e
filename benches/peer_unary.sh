#!/usr/bin/env bash
# Peer benchmark: loadagent vs h2load on the same server (`loadagent target`, a separate
# process), at the same fixed rate over the same number of connections, in one run.
# Prints each generator's CPU seconds (user+system) per 1,000 requests and the ratio, then
# each one's maximum rate against the reference target, and loadagent's peak RSS at
# 10,000 requests/s over 4 connections.
#
#   benches/peer_unary.sh            # RATE=10000 CONNS=4 SECS=10 ROUNDS=3 by default
#   RATE=5000 SECS=20 benches/peer_unary.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
RATE=${RATE:-10000}
CONNS=${CONNS:-4}
SECS=${SECS:-10}
ROUNDS=${ROUNDS:-3}
command -v h2load >/dev/null || { echo "h2load missing: apt-get install nghttp2-client" >&2; exit 1; }
cargo build --release --quiet
BIN=target/release/loadagent
work=$(mktemp -d)
trap 'kill $target_pid 2>/dev/null || true; rm -rf "$work"' EXIT

"$BIN" target --listen 127.0.0.1:0 > "$work/target.out" &
target_pid=$!
addr=$(listening_on "$work/target.out")

# BenchRequest { payload_size: 64 } = 08 40, in a gRPC frame (flag 0, length 2).
printf '\x00\x00\x00\x00\x02\x08\x40' > "$work/frame.bin"
url="http://$addr/loadagent.bench.v1.Bench/Unary"
h2() { h2load -d "$work/frame.bin" -H 'content-type: application/grpc' -H 'te: trailers' "$@" "$url"; }

scenario() {  # $1 = load table body
  bench_scenario "$work/s.toml" peer-unary unary Unary "$addr" "timeout = \"5s\"
[load]
$1"
}

cpu() { python3 benches/cpu.py "$work/cpu.json" "$@"; }
field() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))$2)" "$1"; }

echo "== fixed rate: $RATE req/s over $CONNS connections for ${SECS}s, $ROUNDS rounds (target: loadagent target on $addr)"
# The two generators alternate, round after round, and each round's ratio is taken from runs
# seconds apart: a shared machine's drift then moves both sides of a ratio alike. The
# median round is the figure.
h2_per_client=$((RATE / CONNS))
scenario "rate = $RATE
concurrency = 64
connections = $CONNS
duration = \"${SECS}s\""
: > "$work/rounds.txt"
for round in $(seq 1 "$ROUNDS"); do
  cpu h2load -d "$work/frame.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
    -c "$CONNS" -m 64 --rps "$h2_per_client" -D "$SECS" "$url" > "$work/h2.txt" 2>&1 || { cat "$work/h2.txt"; exit 1; }
  h2_cpu=$(cat "$work/cpu.json")
  h2_done=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' "$work/h2.txt")
  cpu "$BIN" run -q "$work/s.toml" --out "$work/la-$round.json" > "$work/la.txt" 2>&1 || { cat "$work/la.txt"; exit 1; }
  la_cpu=$(cat "$work/cpu.json")
  echo "$h2_cpu|$h2_done|$la_cpu|$work/la-$round.json" >> "$work/rounds.txt"
done
python3 - "$work/rounds.txt" "$RATE" <<'PY'
import json, statistics, sys
rate = float(sys.argv[2])
per_k = lambda u, n: (u["user"] + u["system"]) / n * 1000 * 1000  # ms per 1,000
rounds = []
print("| round | h2load req ok | h2load CPU ms / 1,000 | loadagent req ok | loadagent CPU ms / 1,000 | ratio | loadagent p99 uncorrected / corrected | loadagent peak RSS |")
print("|---|---|---|---|---|---|---|---|")
for i, line in enumerate(open(sys.argv[1]).read().split("\n")):
    if not line:
        continue
    h2, h2n, la, report = line.split("|")
    h2, h2n, la, report = json.loads(h2), int(h2n), json.loads(la), json.load(open(report))
    lan = report["totals"]["ok"]
    a, b = per_k(h2, h2n), per_k(la, lan)
    rounds.append((b / a, a, b, report))
    lat = report["latency"]
    print(f"| {i + 1} | {h2n} | {a:.1f} | {lan} | {b:.1f} | {b / a:.2f}x | "
          f"{lat['uncorrected']['p99_us']} / {lat['corrected']['p99_us']} us | "
          f"{report['process']['peak_rss_bytes'] / 2**20:.1f} MiB |")
ratio, a, b, report = sorted(rounds, key=lambda r: r[0])[len(rounds) // 2]
print(f"median round: loadagent / h2load CPU per request {ratio:.2f}x ({b:.1f} vs {a:.1f} ms per 1,000)"
      f"   (bar <= 1.5x, goal <= 1.0x)")
achieved = report["totals"]["rps"]
print(f"loadagent achieved {achieved:.1f} req/s of {rate:.0f} asked ({achieved / rate * 100:.2f}%) in that round")
PY

echo
echo "== loadagent variants at $RATE req/s over $CONNS connections, ${SECS}s: CPU ms per 1,000 requests"
variant() {  # $1 = label, $2 = data, rest = extra run arguments
  local label=$1 data=$2; shift 2
  scenario "rate = $RATE
concurrency = 64
connections = $CONNS
duration = \"${SECS}s\""
  sed -i "s|^data = .*|data = $data|" "$work/s.toml"
  cpu "$BIN" run -q "$work/s.toml" --out "$work/v.json" "$@" > /dev/null
  python3 - "$label" "$work/cpu.json" "$work/v.json" <<'PY'
import json, sys
u, r = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
print(f"{sys.argv[1]:<34} {(u['user'] + u['system']) / r['totals']['ok'] * 1e6:6.1f}")
PY
}
variant "static request" "{ payload_size = 64 }"
variant "static, all outputs on" "{ payload_size = 64 }" --html "$work/v.html" --hlog "$work/v.hlog" --csv "$work/v.csv"
variant "templated (one random field)" "{ payload_size = 64, error_message = \"{{random_int(1, 1000000)}}\" }"
variant "static request (again, for noise)" "{ payload_size = 64 }"

echo
echo "== maximum rate against the reference target, $CONNS connections, ${SECS}s"
h2 -c "$CONNS" -m 64 -D "$SECS" > "$work/h2max.txt" 2>&1 || true
sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/h2load:    \1 req\/s/p' "$work/h2max.txt"
scenario "concurrency = 256
connections = $CONNS
duration = \"${SECS}s\""
"$BIN" run -q "$work/s.toml" --out "$work/lamax.json" > /dev/null
echo "loadagent: $(field "$work/lamax.json" "['totals']['rps']") req/s (closed model, 256 in flight)"
