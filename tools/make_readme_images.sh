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
# An edit with the default model: the shirt of tests/cli/data, its top 45 % regenerated as "Pullover"
# (four seeds' worth in one batch), beside the input's own reconstruction through the tokenizer.
"$G" --quiet --reconstruct tests/cli/data/shirt.png --output docs/images/edit_input_reconstruction.png
"$G" --quiet --edit tests/cli/data/shirt.png --box 0,0,0.45,1 --class Pullover --batch 4 --columns 4 --seed 0 \
     --output docs/images/edit_pullover.png
echo "wrote docs/images/edit_input_reconstruction.png docs/images/edit_pullover.png"
