#!/usr/bin/env bash
# Reproduces the Fashion-MNIST report (docs/results/fashion-mnist.md): evaluates every sampling
# setting of the report with ilf_eval on the embedded models (or trains them again with --retrain),
# then writes the table, the same-seed image grid and the quality-vs-cost plot.
#
#   scripts/reproduce_fashion_mnist.sh [--build DIR] [--samples N] [--jobs J] [--out DIR]
#                                      [--report FILE.md] [--retrain]
#
#   --samples N   samples per row (default 5000; FID is computed against the 10000 test images)
#   --jobs J      rows evaluated at once (default 1; each uses one thread)
#   --out DIR     where the metrics and samples go (default runs/reproduce_fashion_mnist); rows whose
#                 metrics file exists there are not evaluated again (delete it to redo a row)
#   --retrain     train the backbone, the feedback modules and the classifier again (about 1.5 hours
#                 on a 2-core CPU) into DIR/models and evaluate those instead of models/fashion_mnist
#
# Needs the built tools (scripts/setup.sh) and /usr/bin/python3 with numpy and matplotlib (Debian
# python3-numpy python3-matplotlib; python3-torch for --retrain's classifier).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

BUILD=build
SAMPLES=5000
JOBS=1
OUT=runs/reproduce_fashion_mnist
REPORT=docs/results/fashion-mnist.md
RETRAIN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build) BUILD=$2; shift 2 ;;
    --samples) SAMPLES=$2; shift 2 ;;
    --jobs) JOBS=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --report) REPORT=$2; shift 2 ;;
    --retrain) RETRAIN=1; shift ;;
    *) echo "usage: $0 [--build DIR] [--samples N] [--jobs J] [--out DIR] [--report FILE.md] [--retrain]" >&2; exit 2 ;;
  esac
done
PYTHON=${PYTHON:-/usr/bin/python3}
for tool in ilf_train ilf_eval; do
  [ -x "$BUILD/$tool" ] || { echo "$BUILD/$tool is not built (run scripts/setup.sh)" >&2; exit 1; }
done
mkdir -p "$OUT/metrics" "$OUT/samples"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1  # much faster than the default threading on small CPUs
CONFIG=configs/fashion_mnist.json

# --- the models ---------------------------------------------------------------------------------
MODELS=models/fashion_mnist
if [ $RETRAIN -eq 1 ]; then
  MODELS=$OUT/models
  mkdir -p "$MODELS"
  [ -f "$MODELS/backbone.safetensors" ] || {
    "$BUILD/ilf_train" --config $CONFIG --out "$OUT/train/pretrain" --resume --set weights=null
    cp "$OUT/train/pretrain/backbone.safetensors" "$MODELS/backbone.safetensors"
  }
  # The embedded feedback module: 3000 FAD steps; the 1000-step one of the training-length row.
  for steps in 1000 3000; do
    name=feedback.safetensors; [ $steps -eq 3000 ] || name=feedback_${steps}_steps.safetensors
    [ -f "$MODELS/$name" ] || {
      "$BUILD/ilf_train" --config $CONFIG --out "$OUT/train/ilf" --resume --set training.mode=ilf \
        --set weights="$REPO/$MODELS/backbone.safetensors" --set training.steps=$steps \
        --set training.ema_decay=0.99 --set training.warmup_steps=50
      cp "$OUT/train/ilf/feedback.safetensors" "$MODELS/$name"
    }
  done
  [ -f "$MODELS/classifier.pt" ] || "$PYTHON" scripts/train_fashion_classifier.py --out "$MODELS/classifier.pt"
fi
MODEL_SETS=(--set "weights=$REPO/$MODELS/backbone.safetensors" --set "eval.feature_extractor=$REPO/$MODELS/classifier.pt")
FEEDBACK=$REPO/$MODELS/feedback.safetensors
FEEDBACK_1000=$REPO/$MODELS/feedback_1000_steps.safetensors

# --- the rows: name | label | overrides -----------------------------------------------------------
# The first row is the reference of the fidelity columns (same seeds, same batches). The "(outer 2)"
# rows use the paper's schedule (configs/fashion_mnist_paper.json), the default's until ilf_search.
PAPER="ilf.feedback_steps.mode=outer ilf.feedback_steps.count=2 ilf.strength=1"
ROWS=(
  "base20|Baseline, 20 steps|sampling.method=baseline sampling.steps=20"
  "base12|Baseline, 12 steps|sampling.method=baseline sampling.steps=12"
  "base10|Baseline, 10 steps|sampling.method=baseline sampling.steps=10"
  "cache20|Caching, 20 steps (inner 8 blocks, every 3rd step)|sampling.method=cache sampling.steps=20"
  "ilf11|ILF, 11 steps, feedback on steps 2 and -2, strength 0.25 (the default)|sampling.method=ilf sampling.steps=11 ilf.t_post=anneal ilf.feedback_steps.mode=list ilf.feedback_steps.steps=[2,-2] ilf.strength=0.25"
  "ilf10|ILF, 10 steps (outer 2), t_post anneal|sampling.method=ilf sampling.steps=10 ilf.t_post=anneal $PAPER"
  "ilf12|ILF, 12 steps (outer 2), t_post anneal|sampling.method=ilf sampling.steps=12 ilf.t_post=anneal $PAPER"
  "ilf10_none|ILF, 10 steps (outer 2), t_post none|sampling.method=ilf sampling.steps=10 ilf.t_post=none $PAPER"
  "ilf10_uniform|ILF, 10 steps (outer 2), t_post uniform|sampling.method=ilf sampling.steps=10 ilf.t_post=uniform $PAPER"
  "ilf10_rescale|ILF, 10 steps (outer 2), t_post rescale|sampling.method=ilf sampling.steps=10 ilf.t_post=rescale $PAPER"
  "ilf10_fb1000|ILF, 10 steps (outer 2), anneal, feedback trained 1000 steps|sampling.method=ilf sampling.steps=10 ilf.t_post=anneal ilf.feedback_weights=$FEEDBACK_1000 $PAPER"
  "base6|Baseline, 6 steps|sampling.method=baseline sampling.steps=6"
  "base8|Baseline, 8 steps|sampling.method=baseline sampling.steps=8"
  "ilf6|ILF, 6 steps (outer 2), t_post anneal|sampling.method=ilf sampling.steps=6 ilf.t_post=anneal $PAPER"
)

evaluate_row() {  # evaluate_row "name|label|overrides"
  local name label overrides
  IFS='|' read -r name label overrides <<<"$1"
  local metrics=$OUT/metrics/$name.json
  [ -f "$metrics" ] && { echo "$name: done already ($metrics)"; return 0; }
  local sets=("${MODEL_SETS[@]}" --set "ilf.feedback_weights=$FEEDBACK")
  local kv
  for kv in $overrides; do sets+=(--set "$kv"); done
  local fidelity=(--reference-samples "$OUT/samples/base20.safetensors")
  [ "$name" = base20 ] && fidelity=()
  echo "$name: evaluating $label ($SAMPLES samples)"
  "$BUILD/ilf_eval" --config $CONFIG "${sets[@]}" --num-samples "$SAMPLES" --batch 250 --seed 0 \
    --label "$label" --write-samples "$OUT/samples/$name.safetensors" "${fidelity[@]}" \
    --out "$metrics.tmp" >"$OUT/metrics/$name.log" 2>&1 ||
    { echo "$name: ilf_eval failed, see $OUT/metrics/$name.log" >&2; return 1; }
  mv "$metrics.tmp" "$metrics"
  echo "$name: $(tr -d '\n' <"$metrics" | sed 's/  */ /g' | cut -c1-160)"
}
export -f evaluate_row
export BUILD CONFIG OUT SAMPLES FEEDBACK
export MODEL_SETS_STRING="${MODEL_SETS[*]}"

# The reference row first (the others compare against its samples), then the rest, J at a time.
evaluate_row "${ROWS[0]}"
if [ "$JOBS" -le 1 ]; then
  for row in "${ROWS[@]:1}"; do evaluate_row "$row"; done
else
  # Each parallel job re-creates MODEL_SETS from the exported string (arrays do not export).
  printf '%s\0' "${ROWS[@]:1}" |
    xargs -0 -P "$JOBS" -I{} bash -c 'MODEL_SETS=($MODEL_SETS_STRING); evaluate_row "$1"' _ {}
fi

# --- the report -----------------------------------------------------------------------------------
MACHINE="$(nproc --all)-core $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1), one thread per row, $JOBS row(s) at a time"
"$PYTHON" scripts/fashion_mnist_report.py --metrics "$OUT/metrics" --samples "$OUT/samples" \
  --rows "$(printf '%s\n' "${ROWS[@]}" | cut -d'|' -f1 | paste -sd,)" --machine "$MACHINE" \
  --command "scripts/reproduce_fashion_mnist.sh --samples $SAMPLES$([ $RETRAIN -eq 1 ] && echo ' --retrain')" \
  --report "$REPORT"
