#!/usr/bin/env bash
# CI: the sanitizer build (tests/fuzz/CMakeLists.txt: the parsers compiled with clang, ASan + UBSan and
# libFuzzer instrumentation, the rest of the library from build/libilf.a), then
#   1. every fuzz target replays its committed corpus (tests/fuzz/corpus/<target>/) once: no input may
#      crash, trip a sanitizer, or escape with an exception other than ilf::Error;
#   2. the parsers' unit tests (suites Safetensors*, Config*) and the hardening regression tests
#      (suites Hardening*, in the test files of their subjects) run sanitized.
# Needs build/ (scripts/setup.sh) and clang with libFuzzer (Debian: clang, libclang-rt-14-dev).
# Prints the number of inputs replayed per target and the test count.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${ILF_ASAN_BUILD_DIR:-build-asan}
for p in clang libclang-rt-14-dev; do
  if ! dpkg-query -W -f='${Status}' "$p" 2> /dev/null | grep -q "install ok installed"; then
    [ "$(id -u)" -eq 0 ] || { echo "sanitizers: install clang and libclang-rt-14-dev (libFuzzer)" >&2; exit 1; }
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev
    break
  fi
done
CLANG_CXX=${CLANG_CXX:-$(command -v clang++ || command -v clang++-14)}
CLANG_C=${CLANG_C:-$(command -v clang || command -v clang-14)}
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_BASEDIR="$PWD"
CC=$CLANG_C CXX=$CLANG_CXX cmake -S tests/fuzz -B "$BUILD" -G Ninja -DILF_BUILD_DIR="$PWD/build" > /dev/null
cmake --build "$BUILD" -j "${JOBS:-2}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for t in safetensors run_config idx checkpoint tokenizer model_json; do
  corpus=tests/fuzz/corpus/$t
  n=$(find "$corpus" -type f | wc -l)
  start=$SECONDS
  # -runs=0 with files/folders: execute every input once, then exit (non-zero on any finding).
  "$BUILD/fuzz_$t" -runs=0 -rss_limit_mb=4096 "$corpus" > "$BUILD/replay_$t.log" 2>&1 ||
    { tail -40 "$BUILD/replay_$t.log"; echo "sanitizers: fuzz_$t failed on its corpus" >&2; exit 1; }
  echo "sanitizers: fuzz_$t replayed $n inputs clean in $((SECONDS - start)) s"
done
"$BUILD/ilf_parser_tests_sanitized" --gtest_filter='Safetensors*:Config*:Hardening*' --gtest_brief=1 2>&1 | tail -5
