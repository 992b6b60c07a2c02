#!/usr/bin/env bash
# Fault tests of training runs, as a user meets them: the process killed (SIGKILL) at random moments,
# also while checkpoints are written; the disk full while a checkpoint is written; the run folder
# read-only. Each must lose nothing already saved: the run resumes and ends with the weights an
# uninterrupted run has, bit for bit.
#   tests/fault_test.sh BUILD_DIR SOURCE_DIR [kills, default 12]
# The full disk is a file size limit (ulimit -f, SIGXFSZ ignored, so writes fail with EFBIG as they
# would with ENOSPC), which needs no root; read-only folders are skipped as root (root writes anyway).
set -euo pipefail
BUILD=$1
SOURCE=$2
KILLS=${3:-12}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
STEPS=60
args() {  # args OUT [more ilf_train arguments...] -> ARGS
  local out=$1
  shift
  ARGS=(--config "$SOURCE/configs/train/tiny_cpu.json" --out "$out" --set training.steps=$STEPS
        --set training.checkpoint_every=1 --set training.keep_checkpoints=2 --set training.log_every=100 "$@")
}
train() { args "$@"; "$BUILD/ilf_train" "${ARGS[@]}"; }
fail() { echo "FAILED: $*"; exit 1; }
finished() { grep -q '"finished": *true' "$1/status.json" 2> /dev/null; }

train "$WORK/reference" > "$WORK/reference.log" 2>&1 || { cat "$WORK/reference.log"; fail "the reference run"; }
[ -s "$WORK/reference/feedback.safetensors" ] || fail "the reference run wrote no feedback.safetensors"
# A second uninterrupted run, timed (the first may pay one-time costs): the same weights, and the
# duration the kill moments are drawn from.
start=$(date +%s.%N)
train "$WORK/again" > "$WORK/again.log" 2>&1 || { cat "$WORK/again.log"; fail "the second uninterrupted run"; }
reference_seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.3f", b - a }')
cmp -s "$WORK/reference/feedback.safetensors" "$WORK/again/feedback.safetensors" || fail "two uninterrupted runs differ"

# 1. Killed at random moments (many fall inside a checkpoint write: one per step), resumed each time,
#    until $KILLS kills have landed. The moments are drawn from the reference run's duration (start-up
#    included), so the test means the same on a fast machine as on a slow one. When a resumed run
#    finishes before its kill, its weights must equal the reference's and the run starts over.
out=$WORK/killed
kills=0 runs=0 completions=0
while [ $kills -lt "$KILLS" ]; do
  runs=$((runs + 1))
  [ $runs -le $((4 * KILLS)) ] || fail "only $kills of $KILLS kills landed in $runs starts: the test proves nothing"
  args "$out" --resume
  "$BUILD/ilf_train" "${ARGS[@]}" > "$WORK/killed.$runs.log" 2>&1 &  # $! is ilf_train itself
  pid=$!
  sleep "$(awk -v s="$RANDOM" -v t="$reference_seconds" 'BEGIN { srand(s); printf "%.3f", 0.05 + rand() * 0.9 * t }')"
  kill -9 $pid 2> /dev/null || true  # succeeds on a run that already exited too: its status tells
  status=0
  wait $pid 2> /dev/null || status=$?
  if [ $status -eq 137 ]; then kills=$((kills + 1)); fi
  if [ $status -ne 137 ] && [ $status -ne 0 ]; then cat "$WORK/killed.$runs.log"; fail "a resumed run exited with $status"; fi
  if [ $status -eq 0 ] && finished "$out"; then
    cmp -s "$WORK/reference/feedback.safetensors" "$out/feedback.safetensors" ||
      fail "after $kills kills the trained weights differ from the uninterrupted run's"
    completions=$((completions + 1))
    rm -rf "$out"
  fi
done
while ! finished "$out"; do  # the last killed run, resumed to the end
  runs=$((runs + 1))
  [ $runs -le $((4 * KILLS + 3)) ] || fail "the killed run did not finish after $runs starts"
  args "$out" --resume
  "$BUILD/ilf_train" "${ARGS[@]}" > "$WORK/killed.$runs.log" 2>&1 || true
done
cmp -s "$WORK/reference/feedback.safetensors" "$out/feedback.safetensors" ||
  fail "after $kills kills the trained weights differ from the uninterrupted run's"
completions=$((completions + 1))
leftovers=$(find "$out" -name '*.tmp.*' | wc -l)
echo "killed: $kills kills (SIGKILL at random moments within the reference run's ${reference_seconds} s), $runs starts," \
     "$completions completed runs, each with weights bit-identical to the reference; $leftovers temporary files left"
[ "$leftovers" -eq 0 ] || fail "temporary files left: $(find "$out" -name '*.tmp.*')"

# 2. Disk full while a checkpoint is written: the run stops with an error naming the file, the
#    checkpoints already written stay intact, and a resume with space finishes like the reference.
out=$WORK/full
train "$out" --set training.steps=4 > "$WORK/full.0.log" 2>&1 || fail "the first part of the full-disk run"
checkpoint_kb=$(( $(stat -c %s "$(ls "$out"/checkpoints/*.safetensors | tail -1)") / 1024 ))
set +e
args "$out" --resume
( ulimit -f $((checkpoint_kb / 2)); trap '' XFSZ; exec "$BUILD/ilf_train" "${ARGS[@]}" ) > "$WORK/full.1.log" 2>&1
status=$?
set -e
[ $status -ne 0 ] && [ $status -lt 128 ] || { cat "$WORK/full.1.log"; fail "a full disk gave exit status $status"; }
grep -q 'checkpoint-0000000' "$WORK/full.1.log" || { cat "$WORK/full.1.log"; fail "the full-disk error names no checkpoint file"; }
echo "full disk: exit $status, $(grep -c . "$WORK/full.1.log") log lines, last: $(tail -1 "$WORK/full.1.log" | cut -c1-160)"
train "$out" --resume > "$WORK/full.2.log" 2>&1 || { cat "$WORK/full.2.log"; fail "resuming after the full disk"; }
cmp -s "$WORK/reference/feedback.safetensors" "$out/feedback.safetensors" ||
  fail "after a full disk the trained weights differ from the uninterrupted run's"
echo "full disk: resumed from the intact checkpoint, weights bit-identical to the reference"

# 3. A read-only run folder: a clear error, nothing lost (skipped as root: permissions do not apply).
if [ "$(id -u)" = 0 ]; then
  echo "read-only folder: SKIPPED (running as root, who may write anyway)"
else
  out=$WORK/readonly
  train "$out" --set training.steps=4 > "$WORK/ro.0.log" 2>&1 || fail "the first part of the read-only run"
  before=$(cd "$out" && find . -type f -exec md5sum {} + | sort)
  chmod -R a-w "$out"
  set +e
  train "$out" --resume > "$WORK/ro.1.log" 2>&1
  status=$?
  set -e
  chmod -R u+w "$out"
  [ $status -ne 0 ] && [ $status -lt 128 ] || { cat "$WORK/ro.1.log"; fail "a read-only folder gave exit status $status"; }
  [ "$(cd "$out" && find . -type f -exec md5sum {} + | sort)" = "$before" ] || fail "the read-only run folder changed"
  echo "read-only folder: exit $status, nothing changed: $(tail -1 "$WORK/ro.1.log" | cut -c1-160)"
fi
echo "fault tests passed"
