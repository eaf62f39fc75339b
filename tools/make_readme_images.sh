#!/usr/bin/env bash
# Re-makes the pictures the README and docs embed, from a built tree (default: build/).
#   tools/make_readme_images.sh [build-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
G="$B/examples/generate"
[ -x "$G" ] || { echo "build $G first (cmake --build $B --target generate)" >&2; exit 1; }
mkdir -p docs/images
# The default model's grid: one image per class, seed 0, its recommended settings.
"$G" --quiet --seed 0 --output docs/images/default_grid.png
echo "wrote docs/images/default_grid.png"
