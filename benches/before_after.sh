#!/usr/bin/env bash
# Before/after: this tree's loadagent against another revision's, side by side in one run,
# against the same target (`loadagent target` of this tree, its own process):
# - CPU per 1,000 unary requests at a fixed rate, rounds alternating which goes first; the
#   median round's ratio is the figure (this VM shares its host: absolute times drift);
# - peak RSS and messages received of 10,000 bidi streams at 1 message/s.
#   benches/before_after.sh REV            # ROUNDS=5 SECS=10 RATE=10000 STREAMS=10000
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
REV=${1:?usage: benches/before_after.sh REV (a commit, tag or branch to compare with)}
ROUNDS=${ROUNDS:-5}
SECS=${SECS:-10}
RATE=${RATE:-10000}
STREAMS=${STREAMS:-10000}
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
