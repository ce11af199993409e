#!/usr/bin/env python3
"""Runs a command and prints, on stderr's last line, JSON with the CPU seconds (user, system)
and wall seconds it used, from the kernel's accounting of the child (getrusage)."""
import json
import resource
import subprocess
import sys
import time

start = time.monotonic()
proc = subprocess.run(sys.argv[1:])
wall = time.monotonic() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"user": usage.ru_utime, "system": usage.ru_stime, "wall": wall,
                  "maxrss_bytes": usage.ru_maxrss * 1024, "exit": proc.returncode}), file=sys.stderr)
sys.exit(proc.returncode)
