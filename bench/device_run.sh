#!/usr/bin/env bash
# bench/device_run.sh — the whole side-by-side run on a server CPU without a package registry
# (written for the 16-core Emerald Rapids Xeon with AMX; docs/performance.md, "Server CPU").
#
#   bash bench/device_run.sh DEB_DIR STAGE [OUT_DIR]
#
# DEB_DIR holds the Debian 12 .debs of the header deps (apt-get download libeigen3-dev
# libxsimd-dev xtl-dev nlohmann-json3-dev catch2 libbenchmark-dev libbenchmark1debian libpng-dev
# libpng16-16 zlib1g-dev); they are unpacked with dpkg -x into a scratch prefix. Stages:
#   build  configure (-march=native; MVAR_FIXTURE_DIR from $MVAR_FIXTURES or tests/fixtures) and
#          build the tests and bench_generate (MVAR_TARGETS to build fewer);
#   test   test_gemm_dispatch (every kernel form this CPU runs, AMX ones included, against the
#          fp32 / double reference and each other), test_linear, test_model;
#   mvar   bench_generate: MVAR-d16 batch 1 + CFG, fp32 / bf16 / int8 weights, 2, 8, 16 threads,
#          the decoder, batch 16 at 16 threads, and the AVX-512 forms (MVAR_ISA=avx512) beside AMX;
#   order  the fp32 / bf16 AVX-512 forms with the GEMM's K-outer order forced off and on
#          (MVAR_BENCH_KOUTER), 16 and 2 threads, interleaved, twice;
#   torch  bench/torch_reference.py --time (plain PyTorch from SPEC.md, the machine's own torch,
#          GPU hidden) fp32 and bf16 autocast at 2, 8, 16 threads;
#   abbuild  a second bench_generate built from a copy of the tree with $MVAR_AB_INCLUDE laid over
#          include/ (another version of some mvar headers: the "before" of an A/B);
#   spin   the pool, interleaved twice at 16 and 8 threads: the abbuild binary ("before") and this
#          tree with MVAR_POOL_SPIN_US = 20 and 1000 (fp32, bf16, int8 weights, batch 1);
#   official  the official VAR and MVAR code (bench/official_run.py; checkouts in
#          $MVAR_OFFICIAL_SRC/{FoundationVision+VAR,CVL-UESTC+MVAR}) on a random d16 checkpoint
#          made here by tools/make_var_checkpoint.py, fp32 and bf16 autocast, 16, 8, 2 threads;
#   table  bench/device_table.py: one table from OUT_DIR's JSON files.
# Stages can be given as one comma-separated list: build,test,mvar.
set -uo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
DEBS=$(cd "$1" && pwd)
STAGES=",$2,"
OUT=${3:-${OUT:-/tmp/mvar_device_out}}
mkdir -p "$OUT"
PFX=/tmp/mvar_deps
BUILD=${MVAR_BUILD_DIR:-/tmp/mvar_build}
export LD_LIBRARY_PATH=$PFX/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export CUDA_VISIBLE_DEVICES=
log() { echo "device_run: $* ($(date -u +%H:%M:%S))"; }

if [ ! -d "$PFX/usr" ]; then
  for d in "$DEBS"/*.deb; do dpkg -x "$d" "$PFX"; done
fi
{ lscpu | grep -E 'Model name|^CPU\(s\)|Thread|NUMA node\(s\)'; grep -o -w -E 'amx_tile|amx_bf16|amx_int8|avx512_bf16|avx512_vnni' /proc/cpuinfo | sort | uniq -c; g++ --version | head -1; python3 -c 'import torch; print("torch", torch.__version__, torch.backends.mkldnn.is_available())'; } > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"

if [[ $STAGES == *,build,* ]]; then
  log build
  cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PFX/usr" \
    -DMVAR_BUILD_EXAMPLES=OFF -DMVAR_INSTALL=OFF -DMVAR_FIXTURE_DIR="${MVAR_FIXTURES:-$SRC/tests/fixtures}" > "$OUT/configure.log" 2>&1 ||
    { tail -30 "$OUT/configure.log"; exit 1; }
  cmake --build "$BUILD" --target ${MVAR_TARGETS:-test_gemm_dispatch test_linear test_model bench_generate} -j"$(nproc)" > "$OUT/build.log" 2>&1 ||
    { grep -E 'error' "$OUT/build.log" | head -30; exit 1; }
  rm -f "$OUT/configure.log" "$OUT/build.log"
fi

if [[ $STAGES == *,test,* ]]; then
  for t in test_gemm_dispatch test_core test_linear test_model; do
    [ -x "$BUILD/tests/$t" ] || continue
    log "$t"
    "$BUILD/tests/$t" --durations yes > "$OUT/test.log" 2>&1
    echo "$t: rc=$? $(tail -2 "$OUT/test.log" | tr '\n' ' ')"
    grep -E -B5 'FAILED' "$OUT/test.log" | head -40
  done
  rm -f "$OUT/test.log"
fi

bench() {  # bench NAME THREADS FILTER [ENV…]
  local name=$1 threads=$2 filter=$3
  shift 3
  env MVAR_THREADS="$threads" "$@" "$BUILD/bench/bench_generate" --benchmark_filter="$filter" \
    --benchmark_format=json --benchmark_out="$OUT/mvar_$name.json" --benchmark_out_format=json > /dev/null 2> "$OUT/mvar_$name.err"
  echo "mvar $name: rc=$? $(grep -c '"name"' "$OUT/mvar_$name.json") results"
  [ -s "$OUT/mvar_$name.err" ] && tail -3 "$OUT/mvar_$name.err"
  rm -f "$OUT/mvar_$name.err"
}
if [[ $STAGES == *,mvar,* ]]; then
  for T in 16 8 2; do
    log "mvar $T threads"
    bench "t$T" "$T" '^mvar_d16(_bf16|_int8)?/1/|^decode_d16/'
  done
  log "mvar batch 16, 16 threads"
  bench "t16_b16" 16 '^mvar_d16(_bf16|_int8)?/16/'
  log "mvar AVX-512 forms, 16 threads"
  bench "t16_avx512" 16 '^mvar_d16(_bf16|_int8)/1/' MVAR_ISA=avx512
fi

if [[ $STAGES == *,order,* ]]; then  # the GEMM's one-row-block loop order, A/B, interleaved
  for rep in 1 2; do
    for T in 16 2; do
      for ko in 0 1; do
        log "order: $T threads, k_outer $ko, rep $rep"
        bench "order_t${T}_k${ko}_r$rep" "$T" '^mvar_d16(_bf16)?/1/' MVAR_ISA=avx512 MVAR_BENCH_KOUTER=$ko
      done
    done
  done
fi

if [[ $STAGES == *,torch,* ]]; then
  for T in 16 8 2; do
    for mode in fp32 bf16; do
      log "torch $mode $T threads"
      extra=""
      [ "$mode" = bf16 ] && extra=--bf16
      python3 "$SRC/bench/torch_reference.py" --time --model mvar --batch 1 --threads "$T" --reps 2 $extra \
        > "$OUT/torch_${mode}_t$T.jsonl" 2> "$OUT/torch_${mode}_t$T.err"
      echo "torch $mode $T: rc=$? $(tail -1 "$OUT/torch_${mode}_t$T.jsonl" | cut -c1-200)"
      [ -s "$OUT/torch_${mode}_t$T.err" ] && tail -3 "$OUT/torch_${mode}_t$T.err"
      rm -f "$OUT/torch_${mode}_t$T.err"
    done
  done
fi

if [[ $STAGES == *,abbuild,* ]]; then
  # A copy of the tree with the "before" headers laid over include/ (an -I in the flags would not
  # do: CMake puts the target's own include directories first).
  log abbuild
  rm -rf /tmp/mvar_ab_src && mkdir -p /tmp/mvar_ab_src &&
    (cd "$SRC" && tar cf - --exclude=./.git --exclude=./tests/fixtures .) | tar xf - -C /tmp/mvar_ab_src &&
    cp -r "$MVAR_AB_INCLUDE"/. /tmp/mvar_ab_src/include/ || exit 1
  cmake -S /tmp/mvar_ab_src -B "$BUILD-ab" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$PFX/usr" \
    -DMVAR_BUILD_EXAMPLES=OFF -DMVAR_INSTALL=OFF > "$OUT/configure.log" 2>&1 ||
    { tail -30 "$OUT/configure.log"; exit 1; }
  cmake --build "$BUILD-ab" --target bench_generate -j"$(nproc)" > "$OUT/build.log" 2>&1 ||
    { grep -E 'error' "$OUT/build.log" | head -30; exit 1; }
  rm -f "$OUT/configure.log" "$OUT/build.log"
fi

if [[ $STAGES == *,spin,* ]]; then
  for rep in 1 2; do
    for T in 16 8; do
      log "spin: $T threads, rep $rep"
      BUILD=$BUILD-ab bench "spin_t${T}_before_r$rep" "$T" '^mvar_d16(_bf16|_int8)?/1/'  # for this call only
      for us in 20 1000; do
        bench "spin_t${T}_us${us}_r$rep" "$T" '^mvar_d16(_bf16|_int8)?/1/' MVAR_POOL_SPIN_US=$us
      done
    done
  done
fi

if [[ $STAGES == *,official,* ]]; then
  CK=/tmp/mvar_ck
  mkdir -p "$CK"
  [ -s "$CK/var_d16.pth" ] || python3 "$SRC/tools/make_var_checkpoint.py" --preset d16 --out "$CK/var_d16.pth" > /dev/null
  [ -s "$CK/vae.pth" ] || python3 "$SRC/tools/make_var_checkpoint.py" --vae --out "$CK/vae.pth" > /dev/null
  for T in 16 8 2; do
    for code in mvar var; do
      for mode in fp32 bf16; do
        log "official $code $mode $T threads"
        extra=""
        [ "$mode" = bf16 ] && extra=--bf16
        src=$MVAR_OFFICIAL_SRC/FoundationVision+VAR
        [ $code = mvar ] && src=$MVAR_OFFICIAL_SRC/CVL-UESTC+MVAR
        python3 "$SRC/bench/official_run.py" --code $code --src "$src" --transformer "$CK/var_d16.pth" \
          --vae "$CK/vae.pth" --depth 16 --threads "$T" --warmup 1 --reps 2 $extra \
          > "$OUT/official_${code}_${mode}_t$T.json" 2> "$OUT/official_${code}_${mode}_t$T.err"
        echo "official $code $mode $T: rc=$? $(tail -1 "$OUT/official_${code}_${mode}_t$T.json" | cut -c1-260)"
        [ -s "$OUT/official_${code}_${mode}_t$T.err" ] && grep -v '^\[' "$OUT/official_${code}_${mode}_t$T.err" | tail -3
        rm -f "$OUT/official_${code}_${mode}_t$T.err"
      done
    done
  done
fi

if [[ $STAGES == *,table,* ]]; then
  python3 "$SRC/bench/device_table.py" "$OUT"
fi
