#!/usr/bin/env bash
# Agent benchmark, against `loadagent target` on loopback:
# 1. 10 targets probed every second, a scrape per second: the agent's RSS (and the anonymous
#    part of it) and CPU share over SECS.
# 2. 1,000 targets probed every 5 s, all at one address (health checks share its connection),
#    then 3. 1,000 targets at 1,000 addresses (127.0.x.y: a connection each): probe lateness
#    p50/p99 exact (the agent's HDR window, loadagent_probe_lateness_percentile_seconds),
#    /metrics scrape latency p50/p99 over 100 scrapes as Prometheus asks (OpenMetrics) and as
#    text, the exposition's size, RSS.
#   benches/agent.sh                 # SECS=30
#   PROFILE=dist benches/agent.sh    # the container image's build (fat LTO: smaller code pages)
#   BIN=path/to/loadagent benches/agent.sh   # another build (before/after: benches/before_after.sh
#                                            # leaves the old one in target/before-after/release)
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
SECS=${SECS:-30}
PROFILE=${PROFILE:-release}
if [ -z "${BIN:-}" ]; then
  cargo build --profile "$PROFILE" --quiet
  BIN=target/$PROFILE/loadagent
  echo "profile $PROFILE"
else
  echo "binary $BIN"
fi
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
# On every loopback address (127.0.0.0/8), so 1,000 targets can each have their own.
port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
# The target runs from a copy of the binary: a node's agent shares its code pages with no
# other process, and the kernel leaves pages another process maps where they are (the
# agent gives back its start-up code once started: src/main.rs).
cp "$BIN" "$work/target-bin"
"$work/target-bin" target --listen "0.0.0.0:$port" > "$work/target.out" & pids+=($!)
listening_on "$work/target.out" > /dev/null

agent() {  # $1 targets, $2 interval, $3 "one" or "many" addresses → starts the agent, sets $apid $aaddr
  : > "$work/agent.toml"
  for i in $(seq "$1"); do
    if [ "$3" = one ]; then addr="127.0.0.1:$port"; else addr="127.0.$(( (i - 1) / 250 )).$(( (i - 1) % 250 + 1 )):$port"; fi
    printf '[[targets]]\nname = "t%d"\naddress = "%s"\ninterval = "%s"\n' "$i" "$addr" "$2" >> "$work/agent.toml"
  done
  "$BIN" agent --config "$work/agent.toml" --listen 127.0.0.1:0 > "$work/agent.out" 2>/dev/null & apid=$!; pids+=($apid)
  aaddr=$(listening_on "$work/agent.out")
}
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_mib() { awk '/VmRSS/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
anon_mib() { awk '/RssAnon/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }

echo "== 10 targets every 1s, a scrape per second, ${SECS}s"
agent 10 1s one
sleep 3
t0=$(cpu_ticks "$apid"); s0=$(date +%s.%N)
for _ in $(seq "$SECS"); do curl -s "http://$aaddr/metrics" > /dev/null; sleep 1; done
t1=$(cpu_ticks "$apid"); s1=$(date +%s.%N)
python3 -c "import sys; t=(float(sys.argv[2])-float(sys.argv[1]))/100; w=float(sys.argv[4])-float(sys.argv[3]); print(f'agent CPU {t/w*100:.2f}% of one core (bar 1%), RSS {sys.argv[5]} MiB (bar 10 MiB), of which anonymous {sys.argv[6]} MiB')" "$t0" "$t1" "$s0" "$s1" "$(rss_mib "$apid")" "$(anon_mib "$apid")"
kill "$apid"

fleet() {  # $1 "one" or "many"
  agent 1000 5s "$1"
  sleep "$SECS"
  curl -s "http://$aaddr/metrics" > "$work/m.txt"
  python3 - "$work/m.txt" <<'PY'
import sys
lines = open(sys.argv[1]).read().splitlines()
def value(series):
    for l in lines:
        if l.startswith(series + " "):
            return float(l.rsplit(" ", 1)[1])
count = value("loadagent_probe_lateness_seconds_count")
p50 = value('loadagent_probe_lateness_percentile_seconds{percentile="50"}')
p99 = value('loadagent_probe_lateness_percentile_seconds{percentile="99"}')
ok = sum(1 for l in lines if l.startswith("loadagent_probe_success{") and l.endswith(" 1"))
print(f"{int(count)} probes; lateness p50 {p50*1000:.2f} ms, p99 {p99*1000:.2f} ms (exact, last 1-2 min; bar 50 ms); {ok} of 1000 targets SERVING")
PY
  python3 - "$aaddr" <<'PY'
import sys, time, urllib.request
def scrapes(accept):
    t, size = [], 0
    for _ in range(100):
        req = urllib.request.Request(f"http://{sys.argv[1]}/metrics", headers={"Accept": accept})
        s = time.monotonic(); size = len(urllib.request.urlopen(req).read()); t.append(time.monotonic() - s)
    t.sort()
    return t[49] * 1000, t[98] * 1000, size
for name, accept in [("OpenMetrics (as Prometheus asks)", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"), ("text", "text/plain")]:
    p50, p99, size = scrapes(accept)
    print(f"/metrics {name}: scrape p50 {p50:.1f} ms, p99 {p99:.1f} ms (bar 50 ms, goal 20), {size/1e6:.2f} MB")
PY
  echo "agent RSS with 1,000 targets: $(rss_mib "$apid") MiB (bar 40, goal 30), of which anonymous $(anon_mib "$apid") MiB"
  kill "$apid"
}

echo
echo "== 1,000 targets every 5s at one address, ${SECS}s"
fleet one
echo
echo "== 1,000 targets every 5s at 1,000 addresses (a connection each), ${SECS}s"
fleet many
