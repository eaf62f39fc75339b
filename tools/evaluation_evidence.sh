#!/usr/bin/env bash
# tools/evaluation_evidence.sh — the evidence of docs/evaluation.md: the default model, 100 images
# per class (seed 11, the model's recommended cfg 3 / top-k 100 / top-p 0.95) through the evaluation
# mode as one process, as 2 shards merged (other batch sizes), and as `mpirun -np 2` when
# evaluate_mpi exists; the three files must be byte-identical; then the classifier's
# class-match rate (tools/eval_npz.py).
#   tools/evaluation_evidence.sh [BUILD_DIR] [WORK_DIR]
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build}
work=${2:-$build/evaluation_evidence}
py=${PYTHON:-/usr/bin/python3}
ev=$build/examples/evaluate
mpi=$build/examples/evaluate_mpi
mkdir -p "$work"
rm -f "$work"/*.npz "$work"/*.partial "$work"/*.journal
args=(--per-class 100 --classes 0-9 --seed 11 --quiet)
threads=$(nproc)

t0=$(date +%s.%N)
"$ev" "${args[@]}" --batch 16 --threads "$threads" --npz "$work/single.npz"
t1=$(date +%s.%N)
"$ev" "${args[@]}" --batch 8 --threads "$threads" --shard 0/2 --npz "$work/sharded.npz"
"$ev" "${args[@]}" --batch 32 --threads "$threads" --shard 1/2 --npz "$work/sharded.npz"
"$ev" --merge 2 --npz "$work/sharded.npz"
cmp "$work/single.npz" "$work/sharded.npz"
echo "single process and 2 shards merged: identical bytes"
if [ -x "$mpi" ] && command -v mpirun >/dev/null; then
  root=(); [ "$(id -u)" = 0 ] && root=(--allow-run-as-root)
  mpirun "${root[@]}" --oversubscribe -np 2 "$mpi" "${args[@]}" --batch 16 --npz "$work/mpi.npz"
  cmp "$work/single.npz" "$work/mpi.npz"
  echo "mpirun -np 2: identical bytes"
fi
sha256sum "$work"/*.npz
echo "single-process run: $(echo "$t1 - $t0" | bc) s wall for 1000 images ($threads threads; not a benchmark)"
"$py" "$src/tools/eval_npz.py" "$work/single.npz" --json "$work/class_match.json"
