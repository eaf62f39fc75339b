#!/usr/bin/env bash
# Installs the Debian 12 packages mvar's build, examples and tests need (once; a no-op when they
# are all there). Both set-up commands of the README start with it, and so does CI (.ci/run).
#   tools/setup_debian.sh            # everything: build, examples, tests, benchmarks
#   MVAR_SETUP_EXTRA="clang-14" tools/setup_debian.sh
set -euo pipefail
PKGS="cmake g++ make libeigen3-dev libxsimd-dev xtl-dev nlohmann-json3-dev libpng-dev libjpeg62-turbo-dev
      catch2 libbenchmark-dev librandom123-dev python3 python3-numpy python3-torch openmpi-bin libopenmpi-dev
      ${MVAR_SETUP_EXTRA:-}"
missing=""
for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
[ -z "$missing" ] && exit 0
echo "setup: installing:$missing"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install:$missing" >&2; exit 1; }
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends $missing
