#!/usr/bin/env bash
# gRPC-Web vs native gRPC: loadagent's CPU per request (user+system, from the kernel's
# accounting of the child) at the same fixed rate against comparable servers — the same echo
# service on Python grpcio (native) and on Python sonora under hypercorn (gRPC-Web), both
# written by others — for native gRPC and each gRPC-Web form. Rounds alternate the forms, so
# a shared machine's drift moves them alike; the median round is printed, with each form's
# ratio to native.
#
#   benches/grpc_web.sh                 # RATE=400 SECS=10 ROUNDS=3 CONC=16
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
RATE=${RATE:-400}
SECS=${SECS:-10}
ROUNDS=${ROUNDS:-3}
CONC=${CONC:-16}
cargo build --release --quiet
BIN=target/release/loadagent
work=$(mktemp -d)
trap 'kill $native_pid $web_pid 2>/dev/null || true; rm -rf "$work"' EXIT

python3 tests/python/echo_server.py > "$work/native.out" &
native_pid=$!
# hypercorn recycles a connection after 1,000 requests by default, and drops calls in flight
# when it does (see tests/grpc_web.rs): not what this measures.
python3 tests/python/web_server.py --max-requests-per-connection 100000000 > "$work/web.out" 2>/dev/null &
web_pid=$!
native="127.0.0.1:$(listening_on "$work/native.out" "PORT ")"
web="127.0.0.1:$(listening_on "$work/web.out" "PORT ")"

scenario() {  # $1 file, $2 address, $3 [target] extra
  cat > "$1" <<TOML
name = "web-bench"
kind = "unary"
[target]
address = "$2"
$3
[call]
method = "testing.echo.v1.Echo/Say"
proto = ["$PWD/tests/python/echo.proto"]
data = { message = "hello" }
[load]
rate = $RATE
concurrency = $CONC
duration = "${SECS}s"
TOML
}
scenario "$work/native.toml" "$native" ""
scenario "$work/web11.toml" "$web" 'protocol = "grpc-web"'
scenario "$work/web2.toml" "$web" $'protocol = "grpc-web"\nhttp_version = "2"'
scenario "$work/text11.toml" "$web" 'protocol = "grpc-web-text"'

echo "== $RATE req/s for ${SECS}s, concurrency $CONC, $ROUNDS rounds; native: grpcio on $native, gRPC-Web: sonora+hypercorn on $web"
: > "$work/rounds.txt"
for round in $(seq 1 "$ROUNDS"); do
  for form in native web11 web2 text11; do
    python3 benches/cpu.py "$work/cpu.json" "$BIN" run -q "$work/$form.toml" --out "$work/$form-$round.json" > "$work/run.txt" 2>&1 || { cat "$work/run.txt"; exit 1; }
    echo "$round|$form|$(cat "$work/cpu.json")|$work/$form-$round.json" >> "$work/rounds.txt"
  done
done
python3 - "$work/rounds.txt" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    rnd, form, cpu, report = line.rstrip("\n").split("|")
    cpu, report = json.loads(cpu), json.load(open(report))
    done = report["totals"]["requests"]
    ok = report["totals"]["ok"]
    if ok != done:
        sys.exit(f"{form} round {rnd}: {done - ok} of {done} requests failed: {report['errors'][:3]}")
    per_1k = (cpu["user"] + cpu["system"]) / done * 1000 * 1000  # ms of CPU per 1,000 requests
    rows.setdefault(form, []).append((per_1k, done, report["latency"]["corrected"]["p50_us"]))
names = {"native": "native gRPC (HTTP/2)", "web11": "grpc-web, HTTP/1.1", "web2": "grpc-web, HTTP/2", "text11": "grpc-web-text, HTTP/1.1"}
base = statistics.median(r[0] for r in rows["native"])
print(f"{'form':<26} {'CPU ms / 1k req (median)':>26} {'vs native':>10} {'requests':>9} {'p50 corrected':>14}")
for form, rs in rows.items():
    m = statistics.median(r[0] for r in rs)
    print(f"{names[form]:<26} {m:>26.1f} {m / base:>9.2f}x {rs[0][1]:>9} {rs[0][2] / 1000:>12.2f}ms")
PY
