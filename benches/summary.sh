#!/usr/bin/env bash
# Every figure issue 28 sets a bar for, in one table, each beside its peer: runs the
# benchmarks below one after another on this machine, keeps their whole output in
# target/bench-summary/, and prints a Markdown table for the README's Benchmarks section
# (which is this table pasted, not figures typed by hand).
#   benches/peer_unary.sh   unary CPU per request vs h2load; maximum rate vs h2load
#   benches/grpc_web.sh     gRPC-Web CPU per request vs native gRPC (HTTP/2, HTTP/1.1)
#   benches/agent.sh        agent RSS at 1,000 targets (one address, 1,000 addresses),
#                           scrape and lateness p99
#   benches/streams.sh      10,000 bidi streams at 1 msg/s: peak RSS, messages received
#   the stripped binary's size (release and dist profiles)
#   tests/allocations.rs, tests/socket_writes.rs: the deterministic guards' own figures
#
#   benches/summary.sh                 # about 15 minutes on a 2-vCPU VM
#   SKIP_DIST=1 benches/summary.sh     # without the dist build (fat LTO: ~10 minutes more)
#   TABLE_ONLY=1 benches/summary.sh    # the table again from the outputs kept last time
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/bench-summary
mkdir -p "$out"
command -v h2load >/dev/null || { echo "h2load missing: apt-get install nghttp2-client" >&2; exit 1; }

run() {  # $1 name, rest: command → its output in $out/NAME.txt
  local name=$1; shift
  echo "running $name: $*" >&2
  "$@" > "$out/$name.txt" 2>&1 || { echo "$name failed (see $out/$name.txt)" >&2; tail -20 "$out/$name.txt" >&2; exit 1; }
}

if [ -z "${TABLE_ONLY:-}" ]; then
run peer_unary env ROUNDS="${ROUNDS:-5}" benches/peer_unary.sh
run grpc_web env ROUNDS="${WEB_ROUNDS:-3}" benches/grpc_web.sh
run agent env SECS="${AGENT_SECS:-30}" benches/agent.sh
run streams env SECS="${STREAM_SECS:-20}" benches/streams.sh
run allocations cargo test --test allocations -- --nocapture --test-threads 1
run socket_writes cargo test --test socket_writes -- --nocapture
cargo build --release --quiet
strip -o "$out/loadagent.release" target/release/loadagent
if [ -z "${SKIP_DIST:-}" ]; then
  cargo build --profile dist --quiet
  strip -o "$out/loadagent.dist" target/dist/loadagent
fi
fi

python3 - "$out" <<'PY'
import os, re, sys
out = sys.argv[1]
text = {n: open(os.path.join(out, n + ".txt")).read() for n in
        ["peer_unary", "grpc_web", "agent", "streams", "allocations", "socket_writes"]}

def find(name, pattern, group=1, cast=float):
    m = re.search(pattern, text[name], re.M)
    if not m:
        sys.exit(f"summary: no /{pattern}/ in {out}/{name}.txt: did its output change?")
    return cast(m.group(group))

def findall(name, pattern):
    return [float(x) for x in re.findall(pattern, text[name], re.M)]

rows = []
def row(figure, ours, peer, ratio, bar):
    rows.append((figure, ours, peer, ratio, bar))

m = re.search(r"median round: loadagent / h2load CPU per request ([0-9.]+)x \(([0-9.]+) vs ([0-9.]+) ms", text["peer_unary"])
if not m:
    sys.exit("summary: no median round in peer_unary.txt")
row("Unary CPU per 1,000 requests, 10,000 req/s over 4 connections",
    f"{m.group(2)} ms", f"h2load {m.group(3)} ms", f"**{m.group(1)}×**", "≤ 1.0× (goal 0.9×)")
h2max = find("peer_unary", r"^h2load:\s+([0-9.]+) req/s")
lamax = find("peer_unary", r"^loadagent: ([0-9.]+) req/s")
row("Maximum unary rate, 4 connections (closed model), median of rounds", f"{lamax:,.0f} req/s",
    f"h2load {h2max:,.0f} req/s", f"**{lamax / h2max:.2f}×**", "≥ 1.0×")
m = re.search(r"requests per generator CPU-second ([0-9.]+)x \(([0-9,]+) vs ([0-9,]+)\)", text["peer_unary"])
if not m:
    sys.exit("summary: no requests per CPU-second in peer_unary.txt")
row("Requests per generator CPU-second at the maximum rate", m.group(2),
    f"h2load {m.group(3)}", f"**{m.group(1)}×**", "≥ 1.0×")

web = text["grpc_web"]
same, pair = web.split("-- two servers", 1)
pair, peer = pair.split("-- h2load", 1)
h1_ratio = re.search(r"^h2load --h1, grpc-web\s+[0-9.]+\s+([0-9.]+)x", peer, re.M)
for part, server in [(same, "same server: reference target, tonic-web"), (pair, "grpcio vs sonora")]:
    m = re.search(r"^native gRPC \(HTTP/2\)\s+([0-9.]+)", part, re.M)
    if not m:
        sys.exit("summary: no native row in grpc_web.txt")
    native = float(m.group(1))
    for form, label in [("grpc-web, HTTP/2", "HTTP/2"), ("grpc-web, HTTP/1.1", "HTTP/1.1")]:
        m = re.search(re.escape(form) + r"\s+([0-9.]+)\s+([0-9.]+)x", part)
        if m:
            peer_cell = f"native {native:.1f} ms"
            hyper = re.search(r"grpc-web, HTTP/1\.1 \(hyper\)\s+([0-9.]+)\s+([0-9.]+)x", part)
            if label == "HTTP/1.1" and hyper:
                peer_cell += f"; hyper's client {hyper.group(2)}×"
            if label == "HTTP/1.1" and h1_ratio and part is same:
                peer_cell += f"; h2load --h1 / h2load {h1_ratio.group(1)}×"
            row(f"gRPC-Web CPU per 1,000 requests over {label} ({server})", f"{m.group(1)} ms",
                peer_cell, f"**{m.group(2)}×**", "≤ 1.2×")

rss = findall("agent", r"agent RSS with 1,000 targets: ([0-9.]+) MiB")
scrape = findall("agent", r"OpenMetrics \(as Prometheus asks\): scrape p50 [0-9.]+ ms, p99 ([0-9.]+) ms")
late = findall("agent", r"lateness p50 [0-9.]+ ms, p99 ([0-9.]+) ms")
idle = find("agent", r"agent CPU .*, RSS ([0-9.]+) MiB")
row("Agent RSS, 10 targets", f"{idle} MiB", "", "", "≤ 10 MiB")
for i, what, bar in [(0, "one address", "≤ 25 MiB"), (1, "1,000 addresses", "≤ 30 MiB (goal 20)")]:
    if i < len(rss):
        row(f"Agent RSS, 1,000 targets at {what}", f"**{rss[i]} MiB**", "", "", bar)
if scrape:
    row("Agent /metrics scrape p99, 1,000 targets", f"{max(scrape)} ms", "", "", "≤ 20 ms")
if late:
    row("Agent probe lateness p99, 1,000 targets", f"{max(late)} ms", "", "", "≤ 5 ms")

m = re.search(r"message_rate 1\s+([0-9.]+) ms CPU / 1,000 messages, peak RSS\s+([0-9.]+) MiB, ([0-9]+) msg/s received", text["streams"])
streams = re.search(r"== ([0-9]+) bidi streams", text["streams"])
if m and streams:
    n = int(streams.group(1))
    row(f"{n:,} bidi streams × 1 msg/s: peak RSS", f"**{m.group(2)} MiB**", "", "", "≤ 32 MiB")
    asked = re.search(r"message_rate 1 .* received ([0-9]+) of ([0-9]+) asked", text["streams"])
    share = int(asked.group(1)) / int(asked.group(2)) if asked else float(m.group(3)) / n
    row(f"{n:,} bidi streams × 1 msg/s: received of asked", f"{share * 100:.1f}%", "", "", "≥ 99.9%")

per_call = find("allocations", r"allocations, unary: .* ([0-9.]+) per call")
per_web = find("allocations", r"allocations, grpc-web over HTTP/1.1: .* ([0-9.]+) per call")
per_msg = find("allocations", r"([0-9.]+) per message")
per_probe = find("allocations", r"([0-9.]+) per probe")
row("Allocations per unary call (tests/allocations.rs)", f"{per_call}", "", "", "budget 0.1")
row("Allocations per gRPC-Web call over HTTP/1.1", f"{per_web}", "", "", "budget 1.1")
row("Allocations per streamed message", f"{per_msg}", "", "", "budget 0.1")
row("Allocations per health-check probe", f"{per_probe}", "", "", "budget 5.5")
per_round = find("allocations", r"([0-9.]+) per published probe round")
row("Allocations per published probe round (the agent's series)", f"{per_round}", "", "", "budget 0")
m = re.search(r"([0-9.]+) socket writes and [0-9.]+ reads for ([0-9]+) calls in ([0-9]+) ms", text["socket_writes"])
if m:
    row("Socket writes per ms tick, open model (tests/socket_writes.rs)",
        f"{float(m.group(1)) / float(m.group(3)):.2f}", "", "", "≤ 1.5")

for profile in ["release", "dist"]:
    path = os.path.join(out, "loadagent." + profile)
    if os.path.exists(path):
        row(f"Stripped binary, {profile} profile", f"**{os.path.getsize(path) / 1e6:.1f} MB**", "", "", "≤ 20 MB")

cpu = open("/proc/cpuinfo").read()
model = re.search(r"model name\s*:\s*(.*)", cpu)
import datetime
print(f"Measured by benches/summary.sh on {os.cpu_count()} vCPUs ({model.group(1) if model else 'unknown CPU'}), "
      f"{datetime.date.today().isoformat()}, generator and target sharing the machine; ratios are what carry "
      f"over between machines.\n")
print("| figure | loadagent | peer | ratio | bar |")
print("|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(r) + " |")
PY
