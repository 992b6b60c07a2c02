#!/usr/bin/env bash
# Runs one exporter check of tests/exporters/ with the Python that has the real libraries, or skips it
# (exit 77, which ctest reports as skipped) when there is none. The Python is, first found: the
# environment variable ILF_TEST_PYTHON, the CMake cache variable of the same name (first argument),
# python3. The check itself skips when that Python cannot import the libraries it needs.
#   run_check.sh CONFIGURED_PYTHON BUILD_DIR CHECK_SCRIPT [ARGS...]
set -uo pipefail
python=${ILF_TEST_PYTHON:-$1}
build=$2
script=$3
shift 3
if [ -z "$python" ]; then python=python3; fi
if ! command -v "$python" > /dev/null 2>&1; then
  echo "SKIPPED: no Python to run $(basename "$script") (set ILF_TEST_PYTHON)"
  exit 77
fi
# Two cores are shared with builds: one thread each for torch and BLAS (also keeps the runs repeatable).
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
# No network: the tiny models are built here, nothing is downloaded.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_DISABLE_PROGRESS_BARS=1
export DIFFUSERS_VERBOSITY=error TRANSFORMERS_VERBOSITY=error
exec "$python" "$script" --build "$build" "$@"
