// CUDA-only pieces of the fast path, behind an interface without CUDA types so that the project still
// builds where no CUDA headers exist (the Debian CPU LibTorch). src/experiments/bench/cuda_support.cpp compiles
// them when <cuda_runtime_api.h> and <ATen/cuda/CUDAGraph.h> are both visible (a CUDA LibTorch);
// elsewhere cuda_support_compiled() is false and the functions throw ilf::Error.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>

namespace ilf {

// Whether this build has the CUDA events / CUDA graph code.
bool cuda_support_compiled();

// Runs fn once between two CUDA events recorded on the current stream and returns the elapsed
// milliseconds (waits for the end event only).
double cuda_event_milliseconds(const std::function<void()>& fn);

// Records the CUDA work of a function into a sequence of CUDA graphs that share one memory pool and
// replays them in order. The function receives `cut`: calling it ends the current graph and starts
// the next one. Used to capture every denoising step of a sampling run as its own graph (cut from the
// sampler's progress callback; the solver's per-step coefficients are host constants, so each step
// is a distinct graph), or one backbone forward as one graph.
// Rules of capture: every tensor the captured work reads (inputs, weights) must stay alive at the same
// address, new inputs are copied into those tensors before replay(), and outputs are read from the
// tensors the function produced (overwritten by each replay). No host synchronisation may happen in fn.
class CudaGraphRecorder {
 public:
  CudaGraphRecorder();
  ~CudaGraphRecorder();
  CudaGraphRecorder(const CudaGraphRecorder&) = delete;
  CudaGraphRecorder& operator=(const CudaGraphRecorder&) = delete;

  // Runs fn once eagerly on a side stream (warm-up: cuBLAS workspaces, cached embeddings), then once
  // under capture. Throws ilf::Error without CUDA support; a failing capture is ended and rethrown.
  void capture(const std::function<void(const std::function<void()>& cut)>& fn);
  // Launches the graphs in capture order on the current stream.
  void replay();
  int64_t num_graphs() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace ilf
