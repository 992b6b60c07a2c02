#!/usr/bin/env bash
# The text-to-image report (docs/results/fashion-mnist-t2i.md): ilf_eval rows of the embedded
# text-to-image model on the held-out captions, the same seeds in every row, then the report script.
#   bash scripts/fashion_t2i/report.sh [--samples 1000] [--build build]
set -euo pipefail
SAMPLES=1000
BUILD=build
while [ $# -gt 0 ]; do
  case $1 in
    --samples) SAMPLES=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
OUT=runs/fashion_mnist_t2i/eval
mkdir -p "$OUT"
eval_row() {  # name, then --set overrides
  local name=$1; shift
  [ -s "$OUT/$name.json" ] && return 0
  local ref=()
  [ "$name" != base20 ] && ref=(--reference-samples "$OUT/base20.safetensors")
  "$BUILD/ilf_eval" --config configs/fashion_mnist_t2i.json --model-folder models/fashion_mnist_t2i \
    --prompts-file models/fashion_mnist_t2i/captions_eval.txt --num-samples "$SAMPLES" --batch 100 \
    --label "$name" --write-samples "$OUT/$name.safetensors" "${ref[@]}" --out "$OUT/$name.json" "$@" > /dev/null
  echo "$name done"
}
eval_row base20 --set sampling.method=baseline --set sampling.steps=20
eval_row base12 --set sampling.method=baseline --set sampling.steps=12
eval_row base10 --set sampling.method=baseline --set sampling.steps=10
eval_row ilf10 --set sampling.method=ilf --set sampling.steps=10
eval_row cache20 --set sampling.method=cache --set sampling.steps=20
/usr/bin/python3 scripts/fashion_t2i/report.py --evals "$OUT" --rows base20,base12,base10,cache20,ilf10 \
  --machine "${ILF_MACHINE:-$(nproc --all)-core $(uname -m) CPU}, one thread" --command "bash scripts/fashion_t2i/report.sh --samples $SAMPLES"
