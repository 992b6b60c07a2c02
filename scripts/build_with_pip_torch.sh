#!/usr/bin/env bash
# Builds ILF against the LibTorch inside a pip (or conda) torch install, without root: for clusters
# and GPU machines where Debian's libtorch-dev is not the LibTorch you want. scripts/setup.sh (Debian's
# LibTorch into build/) stays the main build; this one writes build-pip/ and does not touch build/.
#
#   bash scripts/build_with_pip_torch.sh [extra cmake -D arguments...]
#
# Settings (environment variables, all optional):
#   TORCH_PYTHON      the Python whose torch to use (default python3); its
#                     torch.utils.cmake_prefix_path is LibTorch's CMake prefix. Also the Python of the
#                     exporter checks (tests/exporters/, CMake's ILF_TEST_PYTHON): with diffusers,
#                     transformers, safetensors and sentencepiece installed there they run, else ctest
#                     shows them skipped
#   TORCH_PREFIX      that CMake prefix directly (skips Python)
#   CUDA_HOME         CUDA toolkit (default /usr/local/cuda when it has bin/nvcc); needed when the
#                     wheel is CUDA-enabled (the default PyPI wheel is); nothing CUDA runs at build time
#   TORCH_CUDA_ARCH_LIST  GPU architectures for torch's CMake (default 9.0: H100 / H200)
#   BUILD_DIR         build folder (default build-pip)
#   DEPS_DEBS         folder of .deb files that provide CLI11, nlohmann_json, spdlog + fmt, GoogleTest,
#                     stb and zlib headers where the system lacks them (default third_party/debs;
#                     scripts/gpu/fetch_debs.sh downloads them on a Debian machine); unpacked with
#                     dpkg -x (or ar + tar) into BUILD_DIR/_deps and put first on CMAKE_PREFIX_PATH
#   FETCH_DEBS=1      run scripts/gpu/fetch_debs.sh first when DEPS_DEBS holds no .deb (needs apt-get)
#   DEPS_PREFIX       further prefixes (';'-separated) searched before the system, e.g. a conda env
#   JOBS              parallel compile jobs (default: number of cores)
#   TARGETS           what to build (default: everything; e.g. TARGETS=ilf_bench)
#   ILF_CMAKE_ARGS    extra CMake arguments (as with scripts/setup.sh)
#
# The one known clash: torch >= 2.x wheels ship fmt 12 headers in torch/include/fmt, and a system
# spdlog built for an external fmt (Debian's 1.10 with fmt 9) then fails to compile against them. The
# project's CMake puts spdlog's include folder before torch's, which works when that folder is not
# /usr/include (the compiler always searches /usr/include last). So on a machine whose spdlog sits in
# /usr/include (Debian, Ubuntu) take spdlog + fmt from the unpacked .debs: FETCH_DEBS=1 does that.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD_DIR=${BUILD_DIR:-build-pip}
DEPS_DEBS=${DEPS_DEBS:-third_party/debs}
abs() { case $1 in /*) echo "$1" ;; *) echo "$ROOT/$1" ;; esac; }
JOBS=${JOBS:-$(nproc)}
say() { echo "build_with_pip_torch: $*"; }
die() { echo "build_with_pip_torch: error: $*" >&2; exit 1; }

# LibTorch.
test_python=()
if [ -z "${TORCH_PREFIX:-}" ]; then
  TORCH_PYTHON=${TORCH_PYTHON:-python3}
  info=$("$TORCH_PYTHON" -c 'import torch; print(torch.utils.cmake_prefix_path); print(torch.__version__, "cuda", torch.version.cuda); import sys; print(sys.executable)' 2>/dev/null) ||
    die "$TORCH_PYTHON cannot import torch: pip install torch (or set TORCH_PYTHON / TORCH_PREFIX)"
  TORCH_PREFIX=$(echo "$info" | sed -n 1p)
  say "torch $(echo "$info" | sed -n 2p) from $TORCH_PREFIX"
  test_python=(-DILF_TEST_PYTHON="$(echo "$info" | sed -n 3p)")
fi
[ -f "$TORCH_PREFIX/Torch/TorchConfig.cmake" ] || die "no Torch/TorchConfig.cmake under $TORCH_PREFIX"
# torch's own folder (site-packages/torch: lib/, include/) goes on CMAKE_PREFIX_PATH too: TorchConfig's
# find_library(torch) otherwise prefers a system libtorch.so (Debian's 1.13) over the wheel's.
TORCH_ROOT=$(cd "$TORCH_PREFIX/../.." && pwd)

# CUDA toolkit (torch's CMake looks for nvcc and the CUDA libraries when the wheel is CUDA-enabled).
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then CUDA_HOME=/usr/local/cuda; fi
cuda_args=()
if [ -n "${CUDA_HOME:-}" ]; then
  export CUDA_HOME CUDAToolkit_ROOT=$CUDA_HOME CUDACXX=${CUDACXX:-$CUDA_HOME/bin/nvcc}
  export PATH=$CUDA_HOME/bin:$PATH
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
  cuda_args=(-DCMAKE_CUDA_COMPILER="$CUDACXX")
  say "CUDA toolkit $CUDA_HOME, TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"
fi

# Libraries the system may lack: unpack the .debs of DEPS_DEBS (the recipe for machines without a
# package manager or network; see docs/results/gpu.md).
if [ "${FETCH_DEBS:-0}" = 1 ] && ! ls "$DEPS_DEBS"/*.deb > /dev/null 2>&1; then
  bash scripts/gpu/fetch_debs.sh "$DEPS_DEBS"
fi
prefixes=("$TORCH_PREFIX" "$TORCH_ROOT")
if ls "$DEPS_DEBS"/*.deb > /dev/null 2>&1; then
  deps_root=$(abs "$BUILD_DIR")/_deps/debs
  stamp=$(cd "$DEPS_DEBS" && ls -l ./*.deb | md5sum | cut -c1-32)
  if [ "$(cat "$deps_root.stamp" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$deps_root" && mkdir -p "$deps_root"
    for f in "$DEPS_DEBS"/*.deb; do
      if command -v dpkg > /dev/null; then
        dpkg -x "$f" "$deps_root"
      else  # a .deb is an ar archive holding data.tar.*
        (tmp=$(mktemp -d) && cd "$tmp" && ar x "$(abs "$f")" && tar -xf data.tar.* -C "$deps_root" && rm -rf "$tmp")
      fi
    done
    echo "$stamp" > "$deps_root.stamp"
  fi
  say "dependencies from $(ls "$DEPS_DEBS"/*.deb | wc -l) .debs of $DEPS_DEBS, unpacked in $deps_root"
  prefixes=("$deps_root/usr" "${prefixes[@]}")
  export LD_LIBRARY_PATH=$deps_root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
elif [ -f /usr/include/spdlog/spdlog.h ] && [ -d "$TORCH_PREFIX/../../include/fmt" ]; then
  say "warning: spdlog from /usr/include and torch's bundled fmt clash (see the top of this script);" \
      "if the build fails in spdlog / fmt, run again with FETCH_DEBS=1"
fi
if [ -n "${DEPS_PREFIX:-}" ]; then
  IFS=';' read -r -a extra <<< "$DEPS_PREFIX"
  prefixes=("${extra[@]}" "${prefixes[@]}")
fi
prefix_path=$(IFS=';'; echo "${prefixes[*]}")

export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_BASEDIR="$ROOT"
generator=()
command -v ninja > /dev/null && generator=(-G Ninja)
# shellcheck disable=SC2086
cmake -S . -B "$BUILD_DIR" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix_path" \
      "${cuda_args[@]}" "${test_python[@]}" ${ILF_CMAKE_ARGS:-} "$@"
targets=()
for t in ${TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$BUILD_DIR" -j "$JOBS" "${targets[@]}"
say "done: $BUILD_DIR (ctest --test-dir $BUILD_DIR -j $JOBS; $BUILD_DIR/ilf_bench --capabilities)"
