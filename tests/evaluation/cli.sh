#!/usr/bin/env bash
# tests/evaluation/cli.sh — the evaluate programs end to end on the default model (32×32 images):
#   cli.sh cli EVALUATE WORKDIR PYTHON    one process vs batch 1 vs 2 shards + merge, a run stopped by
#                                         --stop-after and one killed by SIGKILL resume to the same
#                                         bytes, bad merges refused, numpy reads the file
#   cli.sh mpi EVALUATE WORKDIR MPIEXEC EVALUATE_MPI
#                                         mpirun -np 2 over the loopback == one process, byte for byte
set -euo pipefail
mode=$1 exe=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$work" && mkdir -p "$work" && cd "$work"
common=(--per-class 4 --classes 0-4 --threads 1 --quiet)  # 20 images
fail() { echo "FAIL: $*" >&2; exit 1; }
expect_error() {  # expect_error PATTERN CMD...: exit code 1 or 2 and PATTERN on stderr
  local pat=$1; shift
  local rc=0
  "$@" 2> err.txt || rc=$?
  [ "$rc" = 1 ] || [ "$rc" = 2 ] || fail "expected an error from: $* (exit $rc)"
  grep -q -- "$pat" err.txt || { cat err.txt >&2; fail "message lacks '$pat'"; }
  echo "refused as expected: $(head -c 300 err.txt)"
}

"$exe" "${common[@]}" --batch 3 --npz single.npz
[ -s single.npz ] || fail "no single.npz"

if [ "$mode" = mpi ]; then
  mpiexec=$4 mpi_exe=$5
  root=(); [ "$(id -u)" = 0 ] && root=(--allow-run-as-root)
  "$mpiexec" "${root[@]}" --oversubscribe -np 2 "$mpi_exe" "${common[@]}" --batch 5 --npz mpi.npz
  cmp single.npz mpi.npz || fail "the 2-rank MPI run differs from one process"
  ls mpi.shard-* 2>/dev/null && fail "shard files left after the merge"
  echo "mpirun -np 2: identical bytes"
  exit 0
fi

"$exe" "${common[@]}" --batch 1 --npz b1.npz
cmp single.npz b1.npz || fail "batch 1 differs from batch 3"

"$exe" "${common[@]}" --batch 5 --shard 0/2 --npz sh.npz
"$exe" "${common[@]}" --batch 2 --shard 1/2 --npz sh.npz
[ -s sh.shard-00000-of-00002.npz ] && [ -s sh.shard-00001-of-00002.npz ] || fail "shard files missing"
"$exe" --merge 2 --npz sh.npz
cmp single.npz sh.npz || fail "2 shards merged differ from one process"
echo "batch 1, batch 3, 2 shards + merge: identical bytes"

rc=0; "$exe" "${common[@]}" --batch 3 --npz stop.npz --stop-after 5 || rc=$?
[ "$rc" = 3 ] || fail "--stop-after: exit $rc, expected 3"
[ ! -e stop.npz ] && [ -e stop.npz.partial ] && [ -e stop.npz.journal ] || fail "stopped run: wrong files"
"$exe" "${common[@]}" --batch 4 --npz stop.npz
cmp single.npz stop.npz || fail "the resumed run differs"
[ ! -e stop.npz.partial ] && [ ! -e stop.npz.journal ] || fail "partial/journal left after completion"

# SIGKILL once a few images are durable; the rerun of the same command completes the same bytes.
"$exe" --per-class 8 --classes 0-9 --threads 1 --quiet --batch 1 --npz ref80.npz
"$exe" --per-class 8 --classes 0-9 --threads 1 --quiet --batch 1 --npz kill.npz &
pid=$!
for _ in $(seq 1 600); do
  grep -qE '"images_done": ([3-9]|[1-9][0-9])' kill.npz.journal 2>/dev/null && break
  sleep 0.05
done
if kill -9 "$pid" 2>/dev/null; then
  wait "$pid" 2>/dev/null || true
  [ ! -e kill.npz ] || fail "a killed run left a complete-looking kill.npz"
  echo "killed at: $(grep images_done kill.npz.journal)"
else
  wait "$pid" || true
  echo "note: the run finished before it could be killed (nothing to resume)"
fi
"$exe" --per-class 8 --classes 0-9 --threads 1 --quiet --batch 2 --npz kill.npz
cmp ref80.npz kill.npz || fail "the run resumed after SIGKILL differs"
ls kill.npz.* 2>/dev/null && fail "files of the killed run left behind"
echo "stopped and killed runs resume to identical bytes"

expect_error "a shard is missing" "$exe" --merge-files sh.shard-00000-of-00002.npz --npz bad.npz
expect_error "overlaps" "$exe" --merge-files sh.shard-00000-of-00002.npz,sh.shard-00000-of-00002.npz,sh.shard-00001-of-00002.npz --npz bad.npz
"$exe" "${common[@]}" --seed 1 --shard 1/2 --npz other.npz
expect_error "a shard of another run.*identity.seed" "$exe" --merge-files sh.shard-00000-of-00002.npz,other.shard-00001-of-00002.npz --npz bad.npz
[ ! -e bad.npz ] || fail "a refused merge wrote bad.npz"
expect_error "exists and holds a different run" "$exe" "${common[@]}" --seed 2 --npz single.npz
cmp single.npz b1.npz || fail "a refused run touched single.npz"
expect_error "class label 10 (image 0) is out of range" "$exe" --per-class 1 --classes 10-10 --npz x.npz
expect_error "give either --per-class" "$exe" --npz x.npz
expect_error "is not a shard" "$exe" "${common[@]}" --shard 2/2 --npz x.npz

python=$4
rc=0; "$python" "$here/numpy_reads.py" single.npz 20 32 || rc=$?
[ "$rc" = 0 ] || [ "$rc" = 77 ] || fail "numpy could not read single.npz"
echo "all evaluate CLI checks passed"
