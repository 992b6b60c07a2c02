#!/usr/bin/env bash
# Fuzzes the parsers (see tests/fuzz/): builds the sanitizer build, then runs each target for the given
# time, growing its corpus in a scratch folder, and merges the new inputs that add coverage into
# tests/fuzz/corpus/<target>/ (commit them). Findings are written as crash-* / leak-* files in the
# current folder by libFuzzer; each is a bug to fix and to add to the corpus once fixed.
#   bash scripts/fuzz.sh [seconds per target, default 600] [targets...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(safetensors run_config idx checkpoint tokenizer model_json)
BUILD=${ILF_ASAN_BUILD_DIR:-build-asan}
CC=${CLANG_C:-clang} CXX=${CLANG_CXX:-clang++} cmake -S tests/fuzz -B "$BUILD" -G Ninja > /dev/null
cmake --build "$BUILD"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0}
for t in "${targets[@]}"; do
  work=$BUILD/corpus-work/$t
  mkdir -p "$work"
  "$BUILD/fuzz_$t" -max_total_time="$seconds" -rss_limit_mb=4096 -print_final_stats=1 "$work" "tests/fuzz/corpus/$t" \
    2>&1 | tee "$BUILD/fuzz_$t.log" | grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::average_exec_per_sec)|ERROR|SUMMARY' || true
  "$BUILD/fuzz_$t" -merge=1 "tests/fuzz/corpus/$t" "$work" > /dev/null 2>&1
  echo "fuzz: $t: corpus now $(find "tests/fuzz/corpus/$t" -type f | wc -l) files"
  # The tokenizer also from the real model (its normalization charsmap), in a scratch folder only: every
  # input it finds is about as large as the model (240 KB), too large to commit.
  if [ "$t" = tokenizer ] && [ -f models/fashion_mnist_t2i/spiece.model ]; then
    mkdir -p "$BUILD/corpus-work/tokenizer-real"
    cp models/fashion_mnist_t2i/spiece.model "$BUILD/corpus-work/tokenizer-real/seed-spiece.model"
    "$BUILD/fuzz_$t" -max_total_time="$seconds" -rss_limit_mb=4096 -print_final_stats=1 "$BUILD/corpus-work/tokenizer-real" \
      2>&1 | tee "$BUILD/fuzz_tokenizer-real.log" | grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::average_exec_per_sec)|ERROR|SUMMARY' || true
  fi
done
