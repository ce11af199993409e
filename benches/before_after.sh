#!/usr/bin/env bash
# Before/after: this tree's loadagent against another revision's, side by side in one run,
# against the same target (`loadagent target` of this tree, its own process):
# - CPU per 1,000 unary requests at a fixed rate, rounds alternating which goes first; the
#   median round's ratio is the figure (this VM shares its host: absolute times drift);
# - peak RSS and messages received of 10,000 bidi streams at 1 message/s;
# - instructions per unary request and per streamed message, counted by valgrind's callgrind
#   (instructions, not seconds: whatever else the machine does, two identical binaries
#   read within 2% — 0.995× and 0.996× a unary request, 0.999× and 0.983× a streamed
#   message, HEAD against itself — where the CPU times above move by ±20% a round on a
#   shared VM; what is left is the closed model's batching, which timing still moves).
#   As fast as the generator goes under valgrind; two run lengths, so start-up cancels
#   out: (I(long) − I(short)) / (n(long) − n(short)). INSTRUCTIONS=0 skips it.
#   gRPC-Web over HTTP/1.1 is counted the same way (a connection per worker, 16 workers).
#   benches/before_after.sh REV            # ROUNDS=5 SECS=10 RATE=10000 STREAMS=10000
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
REV=${1:?usage: benches/before_after.sh REV (a commit, tag or branch to compare with)}
ROUNDS=${ROUNDS:-5}
SECS=${SECS:-10}
RATE=${RATE:-10000}
STREAMS=${STREAMS:-10000}
INSTRUCTIONS=${INSTRUCTIONS:-1}
if [ "$INSTRUCTIONS" = 1 ] && ! command -v valgrind > /dev/null; then
  echo "valgrind is not installed (apt-get install valgrind), or set INSTRUCTIONS=0" >&2
  exit 1
fi
cargo build --release --quiet
NEW=$PWD/target/release/loadagent
work=$(mktemp -d)
old_tree="$work/tree"
git worktree add -f --detach "$old_tree" "$REV" -q
trap 'kill $target_pid 2>/dev/null || true; git worktree remove --force "$old_tree" 2>/dev/null || true; rm -rf "$work"' EXIT
# The old build keeps its own target folder (its dependencies are reused next time).
OLD_TARGET=${OLD_TARGET_DIR:-$PWD/target/before-after}
(cd "$old_tree" && CARGO_TARGET_DIR="$OLD_TARGET" cargo build --release --quiet)
OLD=$OLD_TARGET/release/loadagent
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

"$NEW" target --listen 127.0.0.1:0 > "$work/target.out" &
target_pid=$!
addr=$(listening_on "$work/target.out")

bench_scenario "$work/unary.toml" before-after-unary unary Unary "$addr" "[load]
rate = $RATE
concurrency = 64
connections = 4
duration = \"${SECS}s\""
bench_scenario "$work/streams.toml" before-after-streams bidi_stream BidiStream "$addr" "[load]
concurrency = $STREAMS
connections = 4
duration = \"$((SECS * 2))s\"
warmup = \"5s\"
[stream]
messages = 100000
message_interval = \"1s\""

# once BIN SCENARIO: prints "CPU-ms-per-1000 peak-RSS-MiB received-per-second"
once() {
  python3 benches/cpu.py "$work/cpu.json" "$1" run -q "$2" --out "$work/r.json" > /dev/null
  python3 - "$work/cpu.json" "$work/r.json" <<'PY'
import json, sys
u, r = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
m = r.get("messages")
n = m["sent"] if m else r["totals"]["ok"]
rate = m["received_per_second"] if m else r["totals"]["rps"]
print(f'{(u["user"] + u["system"]) / n * 1e6:.2f} {r["process"]["peak_rss_bytes"] / 2**20:.1f} {rate:.0f}')
PY
}

echo "== unary, $RATE req/s over 4 connections, ${SECS}s: CPU ms per 1,000 requests (before = $REV)"
echo "| round | before | after | after / before |"
echo "|---|---|---|---|"
ratios=()
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then
    b=$(once "$OLD" "$work/unary.toml"); a=$(once "$NEW" "$work/unary.toml")
  else
    a=$(once "$NEW" "$work/unary.toml"); b=$(once "$OLD" "$work/unary.toml")
  fi
  ratio=$(python3 -c "print(f'{${a%% *} / ${b%% *}:.3f}')")
  ratios+=("$ratio")
  echo "| $round | ${b%% *} | ${a%% *} | ${ratio}x |"
done
echo "median after / before: $(printf '%s\n' "${ratios[@]}" | sort -n | sed -n "$(((ROUNDS + 1) / 2))p")x"

echo
echo "== $STREAMS bidi streams x 1 msg/s over 4 connections, $((SECS * 2))s"
for which in before after; do
  bin=$OLD; [ $which = after ] && bin=$NEW
  read -r cpu rss rate <<< "$(once "$bin" "$work/streams.toml")"
  echo "$which: $cpu ms CPU / 1,000 messages, peak RSS $rss MiB, $rate msg/s received"
done

[ "$INSTRUCTIONS" = 1 ] || exit 0
# A closed-model run of $2 requests (unary; web: gRPC-Web over HTTP/1.1, a connection per
# worker) or of 100 streams of $2 messages each.
counted_scenario() {  # $1 file, $2 unary|stream|web, $3 count
  if [ "$2" = unary ]; then
    bench_scenario "$1" instructions-unary unary Unary "$addr" "[load]
concurrency = 64
connections = 4
requests = $3"
  elif [ "$2" = web ]; then
    bench_scenario "$1" instructions-web unary Unary "$addr" "[load]
concurrency = 16
requests = $3"
    sed -i 's/^\[call\]$/protocol = "grpc-web"\n[call]/' "$1"
  else
    bench_scenario "$1" instructions-stream bidi_stream BidiStream "$addr" "[load]
concurrency = 100
connections = 4
requests = 100
[stream]
messages = $3"
  fi
}
# instructions BIN SCENARIO: prints "instructions done" (requests, or messages received)
instructions() {
  rm -f "$work"/cg.out.*
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.out.%p" "$1" run -q "$2" --out "$work/cg.json" \
    > /dev/null 2> "$work/cg.err" || { cat "$work/cg.err" >&2; return 1; }
  python3 - "$work/cg.json" "$work"/cg.out.* <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
m = r.get("messages")
done = m["received"] if m else r["totals"]["ok"]
total = 0
for f in sys.argv[2:]:
    for line in open(f):
        if line.startswith("totals:"):
            total += int(line.split()[1])
print(total, done)
PY
}
echo
echo "== instructions (callgrind), closed model: per unary request (64 in flight), per streamed message (100 ping-pong streams), per gRPC-Web call over HTTP/1.1 (16 connections)"
echo "| what | round | before | after | after / before |"
echo "|---|---|---|---|---|"
counted_scenario "$work/u-short.toml" unary 2000
counted_scenario "$work/u-long.toml" unary 12000
counted_scenario "$work/s-short.toml" stream 20
counted_scenario "$work/s-long.toml" stream 120
counted_scenario "$work/w-short.toml" web 1000
counted_scenario "$work/w-long.toml" web 5000
per_unit() {  # BIN short long → instructions per request (message)
  read -r i1 n1 <<< "$(instructions "$1" "$2")"
  read -r i2 n2 <<< "$(instructions "$1" "$3")"
  python3 -c "print(f'{($i2 - $i1) / ($n2 - $n1):.0f}')"
}
for what in unary stream web; do
  short="$work/${what:0:1}-short.toml" long="$work/${what:0:1}-long.toml"
  for round in 1 2; do
    b=$(per_unit "$OLD" "$short" "$long"); a=$(per_unit "$NEW" "$short" "$long")
    echo "| $what | $round | $b | $a | $(python3 -c "print(f'{$a / $b:.3f}')")x |"
  done
done
