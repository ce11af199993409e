# Shared by the benchmark scripts (source it): wait for a child process to say where it listens.

# listening_on FILE [PREFIX]: waits up to 10 s for a line "PREFIX ADDR" (default prefix
# "listening on ") in FILE, then prints ADDR; fails, naming FILE, if none comes.
listening_on() {
  local file=$1 prefix=${2:-listening on } addr=""
  for _ in $(seq 100); do
    addr=$(sed -n "s/^$prefix//p" "$file" 2>/dev/null | head -n 1)
    [ -n "$addr" ] && break
    sleep 0.1
  done
  [ -n "$addr" ] || { echo "nothing is listening: no \"$prefix\" line in $file" >&2; return 1; }
  echo "$addr"
}

# bench_scenario FILE NAME KIND METHOD ADDR REST: writes a scenario calling the reference
# target's loadagent.bench.v1.Bench/METHOD at ADDR with a 64-byte payload; REST follows the
# [call] table's keys (more [call] keys, then [load] and any other table).
bench_scenario() {
  cat > "$1" <<TOML
name = "$2"
kind = "$3"
[target]
address = "$5"
[call]
method = "loadagent.bench.v1.Bench/$4"
proto = ["$PWD/proto/bench.proto"]
data = { payload_size = 64 }
$6
TOML
}
