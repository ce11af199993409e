#!/usr/bin/env bash
# Distributed runs on this machine: 8 shard processes (as the pods of an Indexed Job would
# run) against `loadagent target`, started by one --start-at; prints each shard's start skew
# (its schedule's zero against --start-at, on this one clock) and the time `loadagent merge`
# takes for the 8 one-minute reports (best of 3).
#   benches/distributed.sh            # SHARDS=8 SECS=60 RATE=4000 (the whole run's)
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
SHARDS=${SHARDS:-8}
SECS=${SECS:-60}
RATE=${RATE:-4000}
cargo build --release --quiet
BIN=target/release/loadagent
work=$(mktemp -d)
trap 'kill $target_pid 2>/dev/null || true; rm -rf "$work"' EXIT
"$BIN" target --listen 127.0.0.1:0 > "$work/target.out" &
target_pid=$!
addr=$(listening_on "$work/target.out")
bench_scenario "$work/s.toml" distributed unary Unary "$addr" "[load]
rate = $RATE
concurrency = 64
connections = 1
duration = \"${SECS}s\""

start_at=$(python3 -c "import time; print(f'{time.time() + 5:.3f}')")
pids=()
for i in $(seq 0 $((SHARDS - 1))); do
  "$BIN" run -q "$work/s.toml" --shard "$i/$SHARDS" --start-at "$start_at" \
    --out "$work/shard-$i.json" > "$work/shard-$i.out" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
echo "== $SHARDS shards, $RATE req/s in all for ${SECS}s, one --start-at"
python3 - "$work" "$SHARDS" <<'PY'
import json, sys
work, n = sys.argv[1], int(sys.argv[2])
skews, total = [], 0
for i in range(n):
    r = json.load(open(f"{work}/shard-{i}.json"))
    skews.append(r["shard"]["start_skew_ms"])
    total += r["totals"]["requests"]
print("start skew per shard (ms):", " ".join(f"{s:.2f}" for s in skews))
print(f"spread (max - min): {max(skews) - min(skews):.2f} ms; requests in all: {total}")
PY
files=()
for i in $(seq 0 $((SHARDS - 1))); do files+=("$work/shard-$i.json"); done
python3 - "$BIN" "$work/merged.json" "${files[@]}" <<'PY'
import subprocess, sys, time
bin_, out, files = sys.argv[1], sys.argv[2], sys.argv[3:]
best = None
for _ in range(3):
    t = time.monotonic()
    subprocess.run([bin_, "merge", *files, "--out", out], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    d = time.monotonic() - t
    best = d if best is None else min(best, d)
print(f"merge of {len(files)} reports: {best * 1000:.0f} ms (best of 3)")
PY
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print('merged:', r['totals']['requests'], 'requests,', r['load']['asked_requests'], 'asked,', round(r['totals']['rps'],1), 'req/s')" "$work/merged.json"
