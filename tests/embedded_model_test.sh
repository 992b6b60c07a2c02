#!/usr/bin/env bash
# The README's main command on the embedded Fashion-MNIST model: ilf_sample with the default config
# writes the 10-image grid (ILF, 11 steps, 142 block forwards), and the model's samples are
# recognisable: the project's classifier assigns at least 70% of 100 class-conditional samples to
# the requested class (the 5000-sample report measures 87%).
#   tests/embedded_model_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
BUILD=$1
SOURCE=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
cd "$SOURCE"

"$BUILD/ilf_sample" --config configs/fashion_mnist.json --out "$WORK/fashion_mnist.png" 2>&1 | tee "$WORK/sample.log"
[ -s "$WORK/fashion_mnist.png" ] || { echo "FAILED: no grid written"; exit 1; }
[ "$(head -c 8 "$WORK/fashion_mnist.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] ||
  { echo "FAILED: the grid is not a PNG file"; exit 1; }
grep -q "10 images, 142 block forwards" "$WORK/sample.log" || { echo "FAILED: expected 10 images at 142 block forwards"; exit 1; }

"$BUILD/ilf_eval" --config configs/fashion_mnist.json --num-samples 100 --batch 100 --out "$WORK/eval.json" >/dev/null 2>&1 ||
  { echo "FAILED: ilf_eval"; exit 1; }
accuracy=$(sed -n 's/^ *"class_accuracy": \([0-9.]*\).*/\1/p' "$WORK/eval.json")
echo "class accuracy of 100 samples: $accuracy"
awk -v a="$accuracy" 'BEGIN { exit !(a >= 0.7) }' || { echo "FAILED: class accuracy $accuracy < 0.7"; exit 1; }
echo "PASSED"
