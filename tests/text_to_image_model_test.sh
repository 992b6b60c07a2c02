#!/usr/bin/env bash
# The README's text-to-image command on the embedded Fashion-MNIST text-to-image model: ilf_sample with a
# prompt writes a PNG (ILF, 10 steps, 140 block forwards per image), and the model draws what it is asked
# for: the project's Fashion-MNIST classifier assigns at least 70% of 100 samples of held-out captions
# (models/fashion_mnist_t2i/captions_eval.txt, never seen in training) to the caption's class.
#   tests/text_to_image_model_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
BUILD=$1
SOURCE=$2
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
cd "$SOURCE"

"$BUILD/ilf_sample" --config configs/fashion_mnist_t2i.json --model-folder models/fashion_mnist_t2i \
  --prompt "an ankle boot" --batch 4 --out "$WORK/boot.png" 2>&1 | tee "$WORK/sample.log"
[ "$(head -c 8 "$WORK/boot.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] ||
  { echo "FAILED: no PNG written"; exit 1; }
grep -q "140 block forwards" "$WORK/sample.log" || { echo "FAILED: expected 140 block forwards per image"; exit 1; }

"$BUILD/ilf_eval" --config configs/fashion_mnist_t2i.json --model-folder models/fashion_mnist_t2i \
  --prompts-file models/fashion_mnist_t2i/captions_eval.txt --num-samples 100 --batch 50 --out "$WORK/eval.json" \
  >/dev/null 2>"$WORK/eval.log" || { cat "$WORK/eval.log"; echo "FAILED: ilf_eval"; exit 1; }
accuracy=$(sed -n 's/^ *"class_accuracy": \([0-9.]*\).*/\1/p' "$WORK/eval.json")
echo "class accuracy of 100 samples of held-out captions: $accuracy"
awk -v a="$accuracy" 'BEGIN { exit !(a >= 0.7) }' || { echo "FAILED: class accuracy $accuracy < 0.7"; exit 1; }
echo "PASSED"
