#!/usr/bin/env bash
# CI: shows that a build against a CUDA-enabled LibTorch has its CUDA code compiled and linked, without
# a GPU: ilf_bench --capabilities (CUDA events / graphs, NCCL process group, SDPA compiled in), the CUDA
# libraries the binaries link, and the CUDA symbols of the two CUDA sources in the libraries.
# Usage: check_cuda_build.sh [build-dir]   (default build-pip)
set -euo pipefail
build=${1:-build-pip}
caps=$("$build/ilf_bench" --capabilities)
echo "ilf_bench --capabilities: $caps"
ok=1
for key in cuda_support_compiled nccl_process_group_compiled scaled_dot_product_attention; do
  echo "$caps" | grep -q "\"$key\":true" || { echo "check_cuda_build: $key is not true" >&2; ok=0; }
done
echo "CUDA libraries linked by ilf_bench:"
ldd "$build/ilf_bench" | grep -E 'libtorch_cuda|libc10_cuda|libcudart|libnccl|libcublas|libcudnn' | sed 's/^/  /' || true
ldd "$build/ilf_bench" | grep -q libtorch_cuda || { echo "check_cuda_build: ilf_bench does not link libtorch_cuda" >&2; ok=0; }
# The libraries, not single objects: in a unity build (ILF_UNITY_BUILD) the two CUDA sources are parts of
# batch objects (Unity/unity_N_cxx.cxx.o).
for pair in "libilf_experiments.a:at::cuda::CUDAGraph::capture_begin" "libilf.a:c10d::ProcessGroupNCCL::ProcessGroupNCCL"; do
  lib=$build/${pair%%:*}
  n=$(nm -C "$lib" 2>/dev/null | grep -c "${pair#*:}" || true)
  echo "  $(basename "$lib"): $n references to ${pair#*:}"
  [ "$n" -gt 0 ] || ok=0
done
if [ "$ok" != 1 ]; then echo "check_cuda_build: FAILED" >&2; exit 1; fi
echo "check_cuda_build: CUDA code compiled and linked"
