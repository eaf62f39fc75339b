#!/usr/bin/env python3
"""The whole run's peak RSS stays visible from outside the process (issue #23 item 8): the
resident-set high-water mark the parent reads for the finished child (what /usr/bin/time prints)
is at least the sampling phase's peak that generate reports. (The old CLI reset the mark between
its phases, so outside tools saw only the decoding phase.)
    peak_rss.py <generate> <output dir>
"""
import os
import re
import resource
import subprocess
import sys

exe, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
# A batch large enough that the sampling phase (logits of 2·64 rows × 64 tokens × 512) outweighs
# decoding (one 32×32 image at a time).
r = subprocess.run([exe, "--batch", "64", "--threads", "2", "--output", os.path.join(out, "rss.png")],
                   capture_output=True, text=True)
if r.returncode != 0:
    sys.exit(f"generate failed ({r.returncode}):\n{r.stdout}{r.stderr}")
m = re.search(r"peak RSS ([0-9.]+) MiB; sampling phase ([0-9.]+) MiB", r.stdout)
if not m:
    sys.exit("no peak RSS line in:\n" + r.stdout)
whole, sampling = float(m.group(1)), float(m.group(2))
child_max_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
print(f"reported: whole run {whole} MiB, sampling phase {sampling} MiB; seen from outside: {child_max_mib:.1f} MiB")
if sampling <= 0 or whole < sampling:
    sys.exit("the reported peaks are inconsistent")
if child_max_mib + 1.0 < sampling:
    sys.exit(f"the outside peak {child_max_mib:.1f} MiB is below the sampling phase's {sampling} MiB: the mark was reset")
print("ok")
