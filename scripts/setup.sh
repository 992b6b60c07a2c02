#!/usr/bin/env bash
# One-step set-up: installs the Debian packages ILF needs (when run as root with apt-get available)
# and builds the library, tools and tests into build/. Safe to run again; rebuilds incrementally.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(build-essential cmake ninja-build ccache pkg-config
  libtorch-dev libgloo-dev libcli11-dev nlohmann-json3-dev libspdlog-dev libfmt-dev libstb-dev
  libopenblas0-pthread libgtest-dev googletest sentencepiece dataset-fashion-mnist libboost-dev
  python3-torch python3-numpy python3-matplotlib slurm-wlm munge curl)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    echo "setup: missing Debian packages: ${missing[*]} (run as root or install them)" >&2
    exit 1
  fi
fi

export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
export CCACHE_BASEDIR="$PWD"  # relative paths in the cache keys: fresh clones reuse the cache
JOBS="${JOBS:-$(nproc)}"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release ${ILF_CMAKE_ARGS:-}
cmake --build build -j "$JOBS"
