#!/usr/bin/env bash
# gRPC-Web vs native gRPC: loadagent's CPU per request (user+system, from the kernel's
# accounting of the child) at the same fixed rate, for native gRPC and each gRPC-Web form,
# against two server pairs:
#
# - one server for both forms: the reference target (tonic, with tonic-web translating
#   gRPC-Web), so the ratio is the client's cost alone — the figure the bar is about;
# - two servers written by others: the echo service on Python grpcio (native) and on Python
#   sonora under hypercorn (gRPC-Web) — different servers write their answers differently
#   (frames per answer, flushes), so this ratio also carries the servers' habits.
#
# Beside the reference target's rows, h2load (nghttp2, in C) sends the same request at the
# same rate over HTTP/2 (native gRPC) and over HTTP/1.1 (`--h1`, gRPC-Web): what one
# call per connection costs a client with no per-call overhead of its own.
#
# gRPC-Web over HTTP/1.1 runs twice: on the lean HTTP/1.1 connection (the default) and
# through hyper's client (`transport = "h2"`), what the lean connection replaced.
#
# Rounds alternate the forms, so a shared machine's drift moves them alike; the median round
# is printed, with each form's ratio to native against the same pair.
#
#   benches/grpc_web.sh        # RATE=400 (Python pair) REF_RATE=2000 SECS=10 ROUNDS=3 CONC=16
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
RATE=${RATE:-400}
REF_RATE=${REF_RATE:-2000}
SECS=${SECS:-10}
ROUNDS=${ROUNDS:-3}
CONC=${CONC:-16}
command -v h2load >/dev/null || { echo "h2load missing: apt-get install nghttp2-client" >&2; exit 1; }
cargo build --release --quiet
BIN=target/release/loadagent
work=$(mktemp -d)
trap 'kill $native_pid $web_pid $ref_pid 2>/dev/null || true; rm -rf "$work"' EXIT

python3 tests/python/echo_server.py > "$work/native.out" &
native_pid=$!
# hypercorn recycles a connection after 1,000 requests by default, and drops calls in flight
# when it does (see tests/grpc_web.rs): not what this measures.
python3 tests/python/web_server.py --max-requests-per-connection 100000000 > "$work/web.out" 2>/dev/null &
web_pid=$!
"$BIN" target --listen 127.0.0.1:0 > "$work/ref.out" 2>&1 &
ref_pid=$!
native="127.0.0.1:$(listening_on "$work/native.out" "PORT ")"
web="127.0.0.1:$(listening_on "$work/web.out" "PORT ")"
ref="$(listening_on "$work/ref.out" "listening on ")"

scenario() {  # $1 file, $2 address, $3 [target] extra, $4 rate, $5 method, $6 [call] lines
  cat > "$1" <<TOML
name = "web-bench"
kind = "unary"
[target]
address = "$2"
$3
[call]
method = "$5"
$6
[load]
rate = $4
concurrency = $CONC
duration = "${SECS}s"
TOML
}
# web11hyper: HTTP/1.1 through hyper's client (`transport = "h2"`), what the lean HTTP/1.1
# connection replaced for unary calls, measured beside it.
forms=(native web11 web11hyper web2 text11)
extras=("" 'protocol = "grpc-web"' 'protocol = "grpc-web"' $'protocol = "grpc-web"\nhttp_version = "2"' 'protocol = "grpc-web-text"')
calls=("" "" 'transport = "h2"' "" "")
for i in "${!forms[@]}"; do
  scenario "$work/py-${forms[$i]}.toml" "$([ $i = 0 ] && echo "$native" || echo "$web")" "${extras[$i]}" "$RATE" \
    testing.echo.v1.Echo/Say $'proto = ["'"$PWD"$'/tests/python/echo.proto"]\ndata = { message = "hello" }\n'"${calls[$i]}"
  scenario "$work/ref-${forms[$i]}.toml" "$ref" "${extras[$i]}" "$REF_RATE" \
    loadagent.bench.v1.Bench/Unary $'data = { payload_size = 5 }\n'"${calls[$i]}"
done

# BenchRequest { payload_size: 5 } = 08 05, in a gRPC frame (flag 0, length 2): the body
# h2load sends, the same message the reference scenarios render.
printf '\x00\x00\x00\x00\x02\x08\x05' > "$work/frame.bin"
h2load_form() {  # $1 form (h2 or h1): runs h2load, prints its cpu.json|succeeded requests
  local args
  if [ "$1" = h2 ]; then
    args=(-H 'content-type: application/grpc' -H 'te: trailers' -c 1 -m "$CONC" --rps "$REF_RATE")
  else
    args=(--h1 -H 'content-type: application/grpc-web+proto' -H 'x-grpc-web: 1' -c "$CONC" --rps "$((REF_RATE / CONC))")
  fi
  python3 benches/cpu.py "$work/cpu.json" h2load -d "$work/frame.bin" "${args[@]}" -D "$SECS" \
    "http://$ref/loadagent.bench.v1.Bench/Unary" > "$work/h2load.txt" 2>&1 || { cat "$work/h2load.txt" >&2; exit 1; }
  echo "$(cat "$work/cpu.json")|$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' "$work/h2load.txt")"
}

echo "== ${SECS}s per run, concurrency $CONC, $ROUNDS rounds"
echo "== same server: the reference target (tonic + tonic-web) on $ref at $REF_RATE req/s"
echo "== two servers: grpcio on $native (native), sonora+hypercorn on $web (gRPC-Web) at $RATE req/s"
: > "$work/rounds.txt"
for round in $(seq 1 "$ROUNDS"); do
  for pair in ref py; do
    for form in "${forms[@]}"; do
      python3 benches/cpu.py "$work/cpu.json" "$BIN" run -q "$work/$pair-$form.toml" --out "$work/$pair-$form-$round.json" > "$work/run.txt" 2>&1 || { cat "$work/run.txt"; exit 1; }
      echo "$round|$pair|$form|$(cat "$work/cpu.json")|$work/$pair-$form-$round.json" >> "$work/rounds.txt"
    done
  done
  for form in h2 h1; do
    echo "$round|h2load|$form|$(h2load_form $form)" >> "$work/rounds.txt"
  done
done
python3 - "$work/rounds.txt" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    rnd, pair, form, cpu, report = line.rstrip("\n").split("|")
    cpu = json.loads(cpu)
    if pair == "h2load":
        done = int(report)
        rows.setdefault(pair, {}).setdefault(form, []).append((cpu["user"] + cpu["system"]) / done * 1e6)
        continue
    report = json.load(open(report))
    done = report["totals"]["requests"]
    ok = report["totals"]["ok"]
    if ok != done:
        sys.exit(f"{pair} {form} round {rnd}: {done - ok} of {done} requests failed: {report['errors'][:3]}")
    per_1k = (cpu["user"] + cpu["system"]) / done * 1000 * 1000  # ms of CPU per 1,000 requests
    rows.setdefault(pair, {}).setdefault(form, []).append((per_1k, done, report["latency"]["corrected"]["p50_us"]))
names = {"native": "native gRPC (HTTP/2)", "web11": "grpc-web, HTTP/1.1", "web11hyper": "grpc-web, HTTP/1.1 (hyper)", "web2": "grpc-web, HTTP/2", "text11": "grpc-web-text, HTTP/1.1"}
titles = {"ref": "same server (reference target, tonic + tonic-web)", "py": "two servers (grpcio native, sonora gRPC-Web)"}
for pair in ["ref", "py"]:
    print(f"\n-- {titles[pair]}")
    base = statistics.median(r[0] for r in rows[pair]["native"])
    print(f"{'form':<26} {'CPU ms / 1k req (median)':>26} {'vs native':>10} {'requests':>9} {'p50 corrected':>14}")
    for form, rs in rows[pair].items():
        m = statistics.median(r[0] for r in rs)
        print(f"{names[form]:<26} {m:>26.1f} {m / base:>9.2f}x {rs[0][1]:>9} {rs[0][2] / 1000:>12.2f}ms")
h2, h1 = (statistics.median(rows["h2load"][f]) for f in ("h2", "h1"))
print("\n-- h2load against the same reference target, same request and rate")
print(f"h2load, native gRPC (HTTP/2) {h2:>23.1f}      1.00x")
print(f"h2load --h1, grpc-web        {h1:>23.1f} {h1 / h2:>9.2f}x")
PY
