#!/usr/bin/env bash
# Agent benchmark, against `loadagent target` on loopback (every target entry points at it):
# 1. 10 targets probed every second, host/process collection on (a scrape per second):
#    the agent's RSS and CPU share over SECS.
# 2. 1,000 targets probed every 5 s: probe lateness p99 (from the agent's own histogram) and
#    /metrics scrape latency p99 over 100 scrapes.
#   benches/agent.sh            # SECS=30
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
SECS=${SECS:-30}
cargo build --release --quiet
BIN=target/release/loadagent
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
"$BIN" target --listen 127.0.0.1:0 > "$work/target.out" & pids+=($!)
taddr=$(listening_on "$work/target.out")

agent() {  # $1 targets, $2 interval → starts the agent, sets $apid $aaddr
  : > "$work/agent.toml"
  for i in $(seq "$1"); do printf '[[targets]]\nname = "t%d"\naddress = "%s"\ninterval = "%s"\n' "$i" "$taddr" "$2" >> "$work/agent.toml"; done
  "$BIN" agent --config "$work/agent.toml" --listen 127.0.0.1:0 > "$work/agent.out" 2>/dev/null & apid=$!; pids+=($apid)
  aaddr=$(listening_on "$work/agent.out")
}
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

echo "== 10 targets every 1s, a scrape per second, ${SECS}s"
agent 10 1s
sleep 3
t0=$(cpu_ticks "$apid"); s0=$(date +%s.%N)
for _ in $(seq "$SECS"); do curl -s "http://$aaddr/metrics" > /dev/null; sleep 1; done
t1=$(cpu_ticks "$apid"); s1=$(date +%s.%N)
python3 -c "import sys; t=(float(sys.argv[2])-float(sys.argv[1]))/100; w=float(sys.argv[4])-float(sys.argv[3]); print(f'agent CPU {t/w*100:.2f}% of one core (bar 1%), RSS {sys.argv[5]} MiB (bar 20 MB)')" "$t0" "$t1" "$s0" "$s1" "$(rss_mib "$apid")"
kill "$apid"

echo
echo "== 1,000 targets every 5s, ${SECS}s"
agent 1000 5s
sleep "$SECS"
curl -s "http://$aaddr/metrics" > "$work/m.txt"
python3 - "$work/m.txt" <<'PY'
import sys
buckets, count = [], 0
for line in open(sys.argv[1]):
    if line.startswith("loadagent_probe_lateness_seconds_bucket"):
        le = line.split('le="')[1].split('"')[0]
        buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    elif line.startswith("loadagent_probe_lateness_seconds_count"):
        count = float(line.rsplit(" ", 1)[1])
p99 = next(le for le, c in sorted(buckets) if c >= 0.99 * count)
ok = sum(1 for l in open(sys.argv[1]) if l.startswith("loadagent_probe_success{") and l.strip().endswith(" 1"))
print(f"{int(count)} probes; lateness p99 <= {p99*1000:g} ms (histogram bucket bound); {ok} of 1000 targets SERVING")
PY
python3 - "$aaddr" <<'PY'
import sys, time, urllib.request
t = []
for _ in range(100):
    s = time.monotonic(); urllib.request.urlopen(f"http://{sys.argv[1]}/metrics").read(); t.append(time.monotonic() - s)
t.sort()
print(f"/metrics with 1,000 targets: scrape p50 {t[49]*1000:.1f} ms, p99 {t[98]*1000:.1f} ms (bar 50 ms), {len(urllib.request.urlopen(f'http://{sys.argv[1]}/metrics').read())//1024} KiB")
PY
echo "agent RSS with 1,000 targets: $(rss_mib "$apid") MiB"
