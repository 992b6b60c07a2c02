#!/usr/bin/env bash
# Issue "close ILF's class-accuracy gap": trains feedback-module variants on the embedded Fashion-MNIST
# backbone and evaluates each with the same schedules and seeds, so that only the training differs.
# Each variant: `ilf_train --set training.mode=ilf` for STEPS steps (the embedded module's settings:
# configs/fashion_mnist.json's training section, EMA 0.99, 50 warm-up steps) plus its own overrides;
# then `ilf_eval` of every schedule below on SAMPLES samples of the held-out seed set of
# docs/results/schedule-search.md (seed 1000000, batch 100). Results: OUT/<variant>/<schedule>.json and
# a Markdown table on stdout. Resumable: finished trainings and evaluations are skipped.
#   scripts/search/training_variants.sh [--build DIR] [--out DIR] [--steps N] [--samples N] VARIANT...
# VARIANT is NAME or NAME=key=value,key=value (training overrides), e.g.
#   plain  guided2=training.distill_guidance=2  dropout0.2=training.cond_dropout=0.2
# The variants "embedded" and "embedded1000" evaluate the shipped modules without training:
# models/fashion_mnist/feedback.safetensors (3000 plain FAD steps) and feedback_1000_steps.safetensors.
set -euo pipefail
cd "$(dirname "$0")/../.."
REPO=$PWD
BUILD=build OUT=runs/variants STEPS=1000 SAMPLES=2000
variants=()
while [ $# -gt 0 ]; do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --steps) STEPS=$2; shift 2 ;;
    --samples) SAMPLES=$2; shift 2 ;;
    -*) echo "usage: $0 [--build DIR] [--out DIR] [--steps N] [--samples N] VARIANT..." >&2; exit 2 ;;
    *) variants+=("$1"); shift ;;
  esac
done
[ ${#variants[@]} -gt 0 ] || { echo "$0: name at least one variant" >&2; exit 2; }
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
CONFIG=configs/fashion_mnist.json
# The schedules every variant is evaluated with, at full feedback strength: the paper's
# (configs/fashion_mnist_paper.json) and the best of the budget-144 search (the default's, there at a
# quarter strength).
schedules=(
  "ilf10_outer2|sampling.steps=10 ilf.feedback_steps.mode=outer ilf.feedback_steps.count=2 ilf.strength=1"
  "ilf11_fb2_9|sampling.steps=11 ilf.feedback_steps.mode=list ilf.feedback_steps.steps=[2,9] ilf.strength=1"
)
mkdir -p "$OUT"
for variant in "${variants[@]}"; do
  name=${variant%%=*}
  overrides=(); [ "$name" = "$variant" ] || IFS=, read -r -a overrides <<< "${variant#*=}"
  dir=$OUT/$name
  mkdir -p "$dir"
  if [ "$name" = embedded ]; then
    feedback=$REPO/models/fashion_mnist/feedback.safetensors
  elif [ "$name" = embedded1000 ]; then
    feedback=$REPO/models/fashion_mnist/feedback_1000_steps.safetensors
  else
    feedback=$dir/train/feedback.safetensors
    if [ ! -f "$dir/train.done" ]; then
      sets=(); for o in "${overrides[@]}"; do sets+=(--set "$o"); done
      "$BUILD/ilf_train" --config $CONFIG --out "$dir/train" --resume --set training.mode=ilf \
        --set weights="$REPO/models/fashion_mnist/backbone.safetensors" --set training.steps="$STEPS" \
        --set training.ema_decay=0.99 --set training.warmup_steps=50 "${sets[@]}" > "$dir/train.log" 2>&1
      touch "$dir/train.done"
    fi
  fi
  for s in "${schedules[@]}"; do
    label=${s%%|*}
    read -r -a schedule_sets <<< "${s#*|}"
    sets=(); for o in "${schedule_sets[@]}"; do sets+=(--set "$o"); done
    [ -f "$dir/$label.json" ] || "$BUILD/ilf_eval" --config $CONFIG --set ilf.feedback_weights="$feedback" "${sets[@]}" \
        --num-samples "$SAMPLES" --batch 100 --seed 1000000 --label "$name $label" --out "$dir/$label.json" \
        > "$dir/$label.log" 2>&1
  done
done
echo "| variant | training overrides | schedule | block forwards | FID | class accuracy |"
echo "|---|---|---|---:|---:|---:|"
for variant in "${variants[@]}"; do
  name=${variant%%=*}
  extra=-; [ "$name" = "$variant" ] || extra=${variant#*=}
  for s in "${schedules[@]}"; do
    label=${s%%|*}
    python3 - "$OUT/$name/$label.json" "$name" "$extra" "$label" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
print(f"| {sys.argv[2]} | {sys.argv[3]} | {sys.argv[4]} | {m['block_forwards']} | {m['fid']:.2f} | {100 * m['class_accuracy']:.1f}% |")
PY
  done
done
