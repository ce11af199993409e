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
