#!/usr/bin/env bash
# Checks that .ci/run cannot pass by accident (issue #23 item 4). Runs a copy of the script in a
# scratch folder with fake cmake / ctest / dpkg / clang++-14 first on PATH, each scenario making
# one thing go wrong, and requires the script's exit status and message:
#   1. the README line's configure fails               → status 1, "FAILED: step 1"   (the old script went on, exit 0)
#   2. a step would start with too little budget left  → status 1, "cannot run"        (old: SKIPPED, exit 0)
#   3. the ASan step runs out of budget                → status 1, "ran out of"        (old: STOPPED, exit 0)
#   4. CTest reports a skipped test                    → status 1, "skipped or not run"
#   5. the fuzz smoke runs fewer harnesses than listed → status 1, "fuzz smoke tests passed"
#   6. everything fine                                 → status 0, "all steps done"
#   7. a step left out by MVAR_CI_SANITIZE=0           → status 3, "INCOMPLETE"
# Usage: test_ci_run.sh <repo root>
set -uo pipefail
ROOT=$(cd "${1:?repo root}" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/repo/.ci" "$WORK/repo/tests/fuzz" "$WORK/repo/tools" "$WORK/bin"
cp "$ROOT/.ci/run" "$WORK/repo/.ci/run"
cp "$ROOT/tools/setup_debian.sh" "$WORK/repo/tools/setup_debian.sh"
cp "$ROOT/README.md" "$WORK/repo/README.md"
cp "$ROOT/tests/fuzz/CMakeLists.txt" "$WORK/repo/tests/fuzz/CMakeLists.txt"
harnesses=$(sed -n 's/^set(MVAR_FUZZ_HARNESSES \(.*\))/\1/p' "$ROOT/tests/fuzz/CMakeLists.txt")

# Fakes: behaviour chosen by FAKE_* variables of each scenario.
cat > "$WORK/bin/dpkg" <<'X'
#!/bin/sh
exit 0
X
cat > "$WORK/bin/clang++-14" <<'X'
#!/bin/sh
exit 0
X
cat > "$WORK/bin/cmake" <<'X'
#!/usr/bin/env bash
# configure of build/ fails when FAKE_FAIL_CONFIGURE=1
if [ "${FAKE_FAIL_CONFIGURE:-0}" = 1 ] && [[ " $* " == *" -B build "* ]]; then echo "fake cmake: configure error"; exit 1; fi
exit 0
X
cat > "$WORK/bin/ctest" <<X
#!/usr/bin/env bash
dir=""; args=" \$* "
for ((i = 1; i <= \$#; ++i)); do [ "\${!i}" = --test-dir ] && { j=\$((i + 1)); dir=\${!j}; }; done
if [ "\$dir" = build-asan ] && [ -n "\${FAKE_ASAN_SLEEP:-}" ]; then sleep "\$FAKE_ASAN_SLEEP"; fi
if [ "\$dir" = build-fuzz ]; then
  n=0
  for h in $harnesses; do
    n=\$((n + 1))
    [ "\$n" -gt "\${FAKE_FUZZ_COUNT:-99}" ] && break
    echo "\$n/9 Test #\$n: fuzz_smoke_\$h ..........   Passed    1.00 sec"
  done
  echo "100% tests passed, 0 tests failed out of \$n"; exit 0
fi
echo "1/2 Test #1: a ..........   Passed    1.00 sec"
if [ "\${FAKE_SKIP:-0}" = 1 ]; then echo "2/2 Test #2: b ..........***Skipped   0.00 sec"; else echo "2/2 Test #2: b ..........   Passed    1.00 sec"; fi
echo "100% tests passed, 0 tests failed out of 2"
exit 0
X
chmod +x "$WORK/bin/"*

failures=0
scenario() {  # scenario NAME EXPECTED_STATUS EXPECTED_TEXT ENV...
  local name=$1 want_rc=$2 want_text=$3
  shift 3
  local out rc
  out=$(cd "$WORK/repo" && env PATH="$WORK/bin:$PATH" "$@" bash .ci/run 2>&1)
  rc=$?
  if [ "$rc" -ne "$want_rc" ] || ! grep -qF -- "$want_text" <<<"$out"; then
    echo "FAIL: $name: status $rc (want $want_rc), output should contain '$want_text':"
    sed 's/^/    /' <<<"$out" | tail -15
    failures=$((failures + 1))
  else
    echo "ok: $name (status $rc)"
  fi
}
scenario "configure fails inside the README line" 1 "FAILED: step 1 (the README test command) failed" \
  FAKE_FAIL_CONFIGURE=1 MVAR_CI_SANITIZE=0 MVAR_CI_FUZZ=0
scenario "too little budget left for the ASan step" 1 "step 2 (ASan + UBSan) cannot run" MVAR_CI_BUDGET_S=100
scenario "the ASan step runs out of budget" 1 "step 2 (ASan + UBSan) ran out of the 3 s budget" \
  MVAR_CI_BUDGET_S=3 MVAR_CI_MIN_S_ASAN=1 FAKE_ASAN_SLEEP=10
scenario "a skipped test" 1 "the tests above were skipped or not run" FAKE_SKIP=1 MVAR_CI_SANITIZE=0 MVAR_CI_FUZZ=0
scenario "a fuzz harness missing from the smoke" 1 "fuzz smoke tests passed, the harness list has" \
  FAKE_FUZZ_COUNT=1 MVAR_CI_MIN_S_ASAN=1 MVAR_CI_MIN_S_FUZZ=1
scenario "everything passes" 0 "ci: all steps done" MVAR_CI_MIN_S_ASAN=1 MVAR_CI_MIN_S_FUZZ=1
scenario "a step left out locally" 3 "ci: INCOMPLETE: step(s) 2 not run" MVAR_CI_FUZZ=1 MVAR_CI_SANITIZE=0 MVAR_CI_MIN_S_FUZZ=1
[ "$failures" -eq 0 ] || { echo "$failures scenario(s) failed"; exit 1; }
echo "all CI scenarios behave"
