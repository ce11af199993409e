#!/usr/bin/env python3
"""Usage: cpu.py OUT.json COMMAND...  Runs COMMAND and writes to OUT.json the CPU seconds (user, system)
and wall seconds it used, from the kernel's accounting of the child (getrusage)."""
import json
import resource
import subprocess
import sys
import time

start = time.monotonic()
out, cmd = sys.argv[1], sys.argv[2:]
proc = subprocess.run(cmd)
wall = time.monotonic() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(out, "w") as f:
    json.dump({"user": usage.ru_utime, "system": usage.ru_stime, "wall": wall,
               "maxrss_bytes": usage.ru_maxrss * 1024, "exit": proc.returncode}, f)
sys.exit(proc.returncode)
