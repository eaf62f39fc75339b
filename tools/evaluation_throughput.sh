#!/usr/bin/env bash
# tools/evaluation_throughput.sh — images/s of evaluation sampling (bench/bench_evaluation: the whole
# run_evaluation path, .npz writes, fdatasync and journal included) for MVAR-d16 (random weights,
# official shapes, 256 px) and the default model (32 px), batch 1, 4, 16, every hardware thread,
# and the projected hours for 50,000 images on 1 machine and on N machines (one shard each; plus
# the merge, a sequential copy of the file). Run it on a quiet machine:
#   tools/evaluation_throughput.sh [BUILD_DIR] [N_MACHINES...]      (default N: 4 8 16)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build}
shift || true
machines=("$@")
[ ${#machines[@]} -gt 0 ] || machines=(4 8 16)
cmake --build "$build" --target bench_evaluation -j"$(nproc)" >/dev/null
json=$(mktemp)
"$build/bench/bench_evaluation" --benchmark_format=json --benchmark_out="$json" --benchmark_out_format=json >/dev/null
python3 - "$json" "${machines[@]}" <<'PY'
import json, sys
data = json.load(open(sys.argv[1]))
ns = [int(n) for n in sys.argv[2:]]
cpu = data["context"].get("host_name", "?"), data["context"].get("num_cpus", "?")
print(f"host {cpu[0]}, {cpu[1]} CPUs, {data['context'].get('date', '')}")
head = "| model | batch | threads | images/s | hours for 50,000 (1 machine) | " + " | ".join(f"{n} machines" for n in ns) + " |"
print(head)
print("|" + "---|" * (5 + len(ns)))
for b in data["benchmarks"]:
    name, batch = b["name"].split("/")[0], b["name"].split("/")[1]
    h = b["hours_50k"]
    print(f"| {name.replace('evaluation_', '')} | {batch} | {int(b['threads'])} | {b['images_per_s']:.3f} | {h:.2f} | "
          + " | ".join(f"{h / n:.2f}" for n in ns) + " |")
PY
rm -f "$json"
