#!/usr/bin/env bash
# Reading a large agent config: 20,000 and 40,000 [[targets]] (about 1 and 2 MB), checked
# with `loadagent agent --check-config`, three runs each, the best kept. Linear reading takes
# about twice as long for twice the file; the quadratic reader took 28 s for the first.
# Usage: benches/config_read.sh [path/to/loadagent] (default: target/release/loadagent)
set -euo pipefail
bin=${1:-target/release/loadagent}
[ -x "$bin" ] || { echo "build it first: cargo build --release" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
gen() {
  local n=$1 out=$2
  python3 - "$n" > "$out" <<'PY'
import sys
n = int(sys.argv[1])
print('listen = "127.0.0.1:9477"')
for i in range(n):
    print(f'[[targets]]\nname = "target-{i:05d}"\naddress = "10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}:50051"\ninterval = "5s"\n')
PY
}
best() {
  local file=$1 fastest=""
  for _ in 1 2 3; do
    local start end
    start=$(date +%s.%N)
    "$bin" agent --check-config "$file" >/dev/null
    end=$(date +%s.%N)
    fastest=$(python3 -c "a='$fastest'; t=$end-$start; print(min(float(a), t) if a else t)")
  done
  echo "$fastest"
}
gen 20000 "$dir/a.toml"
gen 40000 "$dir/b.toml"
a=$(best "$dir/a.toml"); b=$(best "$dir/b.toml")
printf '20,000 targets (%s bytes): %.3f s\n40,000 targets (%s bytes): %.3f s\nratio %.2f (linear: about 2)\n' \
  "$(stat -c %s "$dir/a.toml")" "$a" "$(stat -c %s "$dir/b.toml")" "$b" "$(python3 -c "print($b/$a)")"
