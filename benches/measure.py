"""Runs a command, and prints its wall time and peak resident memory (of it and its children) as JSON.

usage: measure.py COMMAND [ARGS...]
"""
import json
import resource
import subprocess
import sys
import time

start = time.perf_counter()
proc = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
elapsed = time.perf_counter() - start
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
if proc.returncode not in (0, 1):
    sys.stderr.write(proc.stdout + proc.stderr)
    sys.exit(proc.returncode)
print(json.dumps({"seconds": elapsed, "peak_rss_mb": peak_kb / 1024, "stdout": proc.stdout}))
