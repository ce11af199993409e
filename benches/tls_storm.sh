#!/usr/bin/env bash
# TLS handshake cost against peers, one run, one server (`loadagent target --tls`, a separate
# process), same suite (TLS 1.3, TLS_AES_128_GCM_SHA256, X25519):
# 1. RATE new connections/s for SECS, one gRPC request per connection: loadagent vs h2load
#    (-n N -c N -r RATE): CPU seconds per 1,000 handshakes, and the ratio (bar <= 1.2x).
# 2. Handshake-only, one connection at a time, as fast as possible: loadagent vs
#    `openssl s_time -new`: CPU per 1,000 handshakes.
# 3. A sustained storm (64 handshakes in flight): handshakes/s the pair reaches on this
#    machine, and the CPU of the generator and of the target.
#   benches/tls_storm.sh            # RATE=500 SECS=10
set -euo pipefail
cd "$(dirname "$0")/.."
source benches/lib.sh
RATE=${RATE:-500}
SECS=${SECS:-10}
command -v h2load >/dev/null || { echo "h2load missing: apt-get install nghttp2-client" >&2; exit 1; }
cargo build --release --quiet
BIN=target/release/loadagent
work=$(mktemp -d)
trap 'kill $target_pid 2>/dev/null || true; rm -rf "$work"' EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
"$BIN" target --listen 127.0.0.1:0 --tls --cert-out "$work/cert.pem" > "$work/target.out" &
target_pid=$!
addr=$(listening_on "$work/target.out")
printf '\x00\x00\x00\x00\x02\x08\x40' > "$work/frame.bin"

scenario() {  # $1 load table, $2 "call" or ""
  cat > "$work/s.toml" <<TOML
name = "bench-tls"
kind = "tls_handshake"
[target]
address = "$addr"
[target.tls]
ca = "$work/cert.pem"
server_name = "localhost"
versions = ["1.3"]
cipher_suites = ["TLS13_AES_128_GCM_SHA256"]
groups = ["X25519"]
resumption = "none"
close = "fin"
TOML
  if [ "$2" = call ]; then
    printf '[call]\nmethod = "loadagent.bench.v1.Bench/Unary"\nproto = ["%s/proto/bench.proto"]\ndata = { payload_size = 64 }\ntimeout = "5s"\n' "$PWD" >> "$work/s.toml"
  fi
  printf '[load]\n%s\n' "$1" >> "$work/s.toml"
}
cpu() { python3 benches/cpu.py "$work/cpu.json" "$@"; }
cpu_s() { python3 -c 'import json,sys; u=json.load(open(sys.argv[1])); print(u["user"]+u["system"])' "$work/cpu.json"; }
target_cpu() { awk '{print ($14+$15)/100}' "/proc/$target_pid/stat"; }

n=$((RATE * SECS))
echo "== $RATE new connections/s for ${SECS}s, one request each (target $addr)"
cpu h2load -n "$n" -c "$n" -r "$RATE" -d "$work/frame.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
  "https://$addr/loadagent.bench.v1.Bench/Unary" > "$work/h2.txt" 2>&1 || { cat "$work/h2.txt"; exit 1; }
h2_cpu=$(cpu_s); h2_ok=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' "$work/h2.txt")
scenario "rate = $RATE
concurrency = 256
duration = \"${SECS}s\"" call
cpu "$BIN" run -q "$work/s.toml" --out "$work/la.json" > /dev/null
la_cpu=$(cpu_s)
python3 - "$h2_cpu" "$h2_ok" "$la_cpu" "$work/la.json" <<'PY'
import json, sys
h2_cpu, h2_ok, la_cpu, r = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), json.load(open(sys.argv[4]))
la_ok = r["totals"]["ok"]
a, b = h2_cpu / h2_ok * 1000, la_cpu / la_ok * 1000
print(f"h2load    {h2_ok:6d} ok  {a:6.3f} CPU s / 1,000 handshakes")
print(f"loadagent {la_ok:6d} ok  {b:6.3f} CPU s / 1,000 handshakes   ({r['totals']['handshakes_per_second']:.0f}/s; tls p50 {r['phases']['tls_handshake']['p50_us']}us)")
print(f"loadagent / h2load: {b/a:.2f}x   (bar <= 1.2x, goal <= 1.0x)")
PY

echo
echo "== handshakes only, one at a time, ${SECS}s: loadagent vs openssl s_time -new"
cpu openssl s_time -connect "$addr" -new -time "$SECS" > "$work/st.txt" 2>&1 || true
st_cpu=$(cpu_s); st_n=$(sed -n 's/^\([0-9]*\) connections in [0-9.]*s;.*/\1/p' "$work/st.txt" | head -1)
scenario "concurrency = 1
duration = \"${SECS}s\"" ""
cpu "$BIN" run -q "$work/s.toml" --out "$work/one.json" > /dev/null
python3 - "$st_cpu" "$st_n" "$(cpu_s)" "$work/one.json" <<'PY'
import json, sys
st_cpu, st_n, la_cpu, r = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), json.load(open(sys.argv[4]))
la_n = r["totals"]["ok"]
print(f"openssl s_time {st_n:6d} handshakes  {st_cpu/st_n*1000:6.3f} CPU s / 1,000")
print(f"loadagent      {la_n:6d} handshakes  {la_cpu/la_n*1000:6.3f} CPU s / 1,000   (ratio {la_cpu/la_n/(st_cpu/st_n):.2f}x)")
PY

echo
echo "== sustained storm: 64 handshakes in flight, ${SECS}s (generator and target share this machine's cores)"
scenario "concurrency = 64
duration = \"${SECS}s\"" ""
before=$(target_cpu)
cpu "$BIN" run -q "$work/s.toml" --out "$work/storm.json" > /dev/null
after=$(target_cpu)
python3 - "$(cpu_s)" "$before" "$after" "$work/storm.json" <<'PY'
import json, sys
gen, before, after, r = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), json.load(open(sys.argv[4]))
tgt = after - before
d = r["duration_seconds"]
print(f"{r['totals']['handshakes_per_second']:.0f} handshakes/s; CPU over the run: generator {gen:.2f} s ({gen/d*100:.0f}% of a core), target {tgt:.2f} s ({tgt/d*100:.0f}% of a core)")
print(f"handshake p50 {r['phases']['tls_handshake']['p50_us']}us p99 {r['phases']['tls_handshake']['p99_us']}us; errors {r['handshake_errors']}")
PY
