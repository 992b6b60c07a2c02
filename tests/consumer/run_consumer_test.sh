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
# The prefixes the library was configured with (LibTorch, dependencies) when it was given any, e.g. by
# scripts/build_with_pip_torch.sh; the Debian build has none.
prefix_path="$work/prefix"
configured=$(sed -n 's/^CMAKE_PREFIX_PATH:[A-Z]*=//p' "$build/CMakeCache.txt")
[ -n "$configured" ] && prefix_path="$prefix_path;$configured"
cmake -S "$here" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix_path" \
  ${CMAKE_CXX_COMPILER_LAUNCHER:+-DCMAKE_CXX_COMPILER_LAUNCHER=$CMAKE_CXX_COMPILER_LAUNCHER} > /dev/null
cmake --build "$work/build" > /dev/null
for n in 10 12 25; do "$work/build/solver_trajectory" dpmpp2m "$data/dpmpp2m_N$n.safetensors" "$n"; done
"$work/build/solver_trajectory" pixart_dpm "$data/pixart_dpms_N20.safetensors" 20
"$work/build/sweep_array_spec"
echo "consumer project built against the installed library and reproduced the references"
