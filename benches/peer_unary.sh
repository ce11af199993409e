#!/usr/bin/env bash
# Peer benchmark: loadagent vs h2load on the same server (`loadagent target`, a separate
# process), at the same fixed rate over the same number of connections, in one run.
# Prints each generator's CPU seconds (user+system) per 1,000 requests and the ratio, then
# each one's maximum rate against the reference target and its requests per CPU-second
# used (rounds alternating, the median round's ratios), and loadagent's peak RSS at
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
echo "== maximum rate against the reference target, $CONNS connections, ${SECS}s, $ROUNDS rounds"
# Each generator as fast as the target answers (h2load: 64 streams a connection; loadagent:
# the closed model, 256 in flight), rounds alternating which goes first. Both share the
# machine with the target, so a generator's own CPU per request decides how much the target
# gets: the rate, and the rate per CPU-second the generator used, are the figures (one run
# of each moved by 40% between runs on this VM; the median round's ratio is the figure).
scenario "concurrency = 256
connections = $CONNS
duration = \"${SECS}s\""
max_h2() {
  cpu h2load -d "$work/frame.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
    -c "$CONNS" -m 64 -D "$SECS" "$url" > "$work/h2max.txt" 2>&1 || { cat "$work/h2max.txt"; exit 1; }
  echo "$(sed -n 's/^finished in .*, \([0-9.]*\) req\/s.*/\1/p' "$work/h2max.txt")|$(cat "$work/cpu.json")"
}
max_la() {
  cpu "$BIN" run -q "$work/s.toml" --out "$work/lamax.json" > "$work/la.txt" 2>&1 || { cat "$work/la.txt"; exit 1; }
  echo "$(field "$work/lamax.json" "['totals']['rps']")|$(cat "$work/cpu.json")"
}
: > "$work/max.txt"
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then h2r=$(max_h2); lar=$(max_la); else lar=$(max_la); h2r=$(max_h2); fi
  echo "$h2r|$lar" >> "$work/max.txt"
done
python3 - "$work/max.txt" <<'PY'
import json, statistics, sys
print("| round | h2load req/s | h2load CPU s | loadagent req/s | loadagent CPU s | rate ratio | per CPU-second ratio |")
print("|---|---|---|---|---|---|---|")
rounds = []
for i, line in enumerate(l for l in open(sys.argv[1]).read().split("\n") if l):
    h2, h2u, la, lau = line.split("|")
    h2, la, h2u, lau = float(h2), float(la), json.loads(h2u), json.loads(lau)
    h2c, lac = h2u["user"] + h2u["system"], lau["user"] + lau["system"]
    rate, per_cpu = la / h2, (la / lac) / (h2 / h2c)
    rounds.append((rate, per_cpu, h2, la, h2 * h2u["wall"] / h2c, la * lau["wall"] / lac))
    print(f"| {i + 1} | {h2:,.0f} | {h2c:.2f} | {la:,.0f} | {lac:.2f} | {rate:.2f}x | {per_cpu:.2f}x |")
rate, _, h2, la, _, _ = sorted(rounds)[len(rounds) // 2]
print(f"h2load:    {h2:.0f} req/s (median round by rate ratio)")
print(f"loadagent: {la:.0f} req/s (closed model, 256 in flight)")
print(f"median round: loadagent / h2load maximum rate {rate:.2f}x ({la:,.0f} vs {h2:,.0f} req/s)")
_, per_cpu, _, _, h2k, lak = sorted(rounds, key=lambda r: r[1])[len(rounds) // 2]
print(f"median round: loadagent / h2load requests per generator CPU-second {per_cpu:.2f}x "
      f"({lak:,.0f} vs {h2k:,.0f})")
PY
