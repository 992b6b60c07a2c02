#!/usr/bin/env bash
# Installs the ILF build into a temporary prefix, builds tests/consumer against it with
# find_package(ilf), and runs it on solver references (ilf::ilf) and on a sweep helper
# (ilf::experiments). Usage: run_consumer_test.sh <build-dir> <data-dir>
set -euo pipefail
build=$1
data=$2
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" > /dev/null
cmake -S "$here" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$work/prefix" \
  ${CMAKE_CXX_COMPILER_LAUNCHER:+-DCMAKE_CXX_COMPILER_LAUNCHER=$CMAKE_CXX_COMPILER_LAUNCHER} > /dev/null
cmake --build "$work/build" > /dev/null
for n in 10 12 25; do "$work/build/solver_trajectory" dpmpp2m "$data/dpmpp2m_N$n.safetensors" "$n"; done
"$work/build/solver_trajectory" pixart_dpm "$data/pixart_dpms_N20.safetensors" 20
"$work/build/sweep_array_spec"
echo "consumer project built against the installed library and reproduced the references"
