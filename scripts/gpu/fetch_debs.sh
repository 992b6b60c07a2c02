#!/usr/bin/env bash
# Downloads (here, on the Debian build machine) the .deb packages that the GPU machine lacks and cannot
# download itself: CLI11, nlohmann_json, spdlog + fmt, GoogleTest, stb, zlib headers. They go into the
# git-ignored folder third_party/debs (pass it in the device run's `carry`); scripts/gpu/run_gpu_checks.sh
# unpacks them there with dpkg -x. (The GPU machine has no package manager access; see docs/results/gpu.md.)
set -euo pipefail
cd "$(dirname "$0")/../.."
DEST=${1:-third_party/debs}
mkdir -p "$DEST"
cd "$DEST"
PACKAGES=(libcli11-dev nlohmann-json3-dev libspdlog-dev libspdlog1.10 libfmt-dev libfmt9
          libgtest-dev libgmock-dev googletest libstb-dev libstb0 zlib1g-dev zlib1g)
apt-get download "${PACKAGES[@]}"
ls -l
