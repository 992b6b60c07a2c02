// CUDA events and CUDA-graph capture for the fast path (see include/ilf/experiments/bench/cuda_support.h).
// The CUDA code is compiled only when the LibTorch we link was built with CUDA (CMake defines
// ILF_HAVE_CUDA from Torch's own configuration). Header presence is not enough: a CUDA toolkit next
// to a CPU-only LibTorch (Debian's) has the CUDA runtime headers but not LibTorch's CUDA headers.
#include "ilf/experiments/bench/cuda_support.h"

#include <exception>
#include <vector>

#include "ilf/error.h"

#ifdef ILF_HAVE_CUDA
#define ILF_CUDA_SUPPORT 1
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#if __has_include(<c10/cuda/CUDAEvent.h>)  // torch >= 2.8 keeps the event class in c10::cuda
#include <c10/cuda/CUDAEvent.h>
namespace ilf::detail {
using TimingEvent = c10::cuda::CUDAEvent;
}
#else
namespace ilf::detail {
using TimingEvent = at::cuda::CUDAEvent;
}
#endif
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#endif

namespace ilf {

#ifdef ILF_CUDA_SUPPORT

bool cuda_support_compiled() { return true; }

double cuda_event_milliseconds(const std::function<void()>& fn) {
  detail::TimingEvent start(cudaEventDefault), end(cudaEventDefault);
  start.record();
  fn();
  end.record();
  end.synchronize();
  return static_cast<double>(start.elapsed_time(end));
}

struct CudaGraphRecorder::State {
  std::vector<std::unique_ptr<at::cuda::CUDAGraph>> graphs;
};

CudaGraphRecorder::CudaGraphRecorder() : state_(std::make_unique<State>()) {}
CudaGraphRecorder::~CudaGraphRecorder() = default;

void CudaGraphRecorder::capture(const std::function<void(const std::function<void()>& cut)>& fn) {
  if (!torch::cuda::is_available()) throw Error("CUDA graph capture: CUDA is not available");
  state_->graphs.clear();
  // Capture must run on a side stream; the warm-up runs there too so that per-stream resources
  // (cuBLAS workspaces) exist before capture starts.
  const c10::cuda::CUDAStream capture_stream = c10::cuda::getStreamFromPool();
  const c10::cuda::CUDAStream caller_stream = c10::cuda::getCurrentCUDAStream();
  capture_stream.synchronize();
  caller_stream.synchronize();
  {
    c10::cuda::CUDAStreamGuard guard(capture_stream);
    fn([] {});  // eager warm-up
    capture_stream.synchronize();

    auto& graphs = state_->graphs;
    graphs.push_back(std::make_unique<at::cuda::CUDAGraph>());
    graphs.back()->capture_begin();
    const auto pool = graphs.back()->pool();  // shared by every graph of the sequence
    bool capturing = true;
    auto cut = [&] {
      graphs.back()->capture_end();
      capturing = false;
      graphs.push_back(std::make_unique<at::cuda::CUDAGraph>());
      graphs.back()->capture_begin(pool);
      capturing = true;
    };
    try {
      fn(cut);
      graphs.back()->capture_end();
      capturing = false;
    } catch (const std::exception& e) {
      if (capturing) {
        try {
          graphs.back()->capture_end();
        } catch (...) {
        }
      }
      graphs.clear();
      throw Error(std::string("CUDA graph capture failed (a host synchronisation or allocation outside the pool in the "
                              "captured code?): ") +
                  e.what());
    }
    capture_stream.synchronize();
  }
}

void CudaGraphRecorder::replay() {
  if (state_->graphs.empty()) throw Error("CudaGraphRecorder::replay: nothing was captured");
  for (auto& graph : state_->graphs) graph->replay();
}

int64_t CudaGraphRecorder::num_graphs() const { return static_cast<int64_t>(state_->graphs.size()); }

#else  // no CUDA headers: the CPU-only build

bool cuda_support_compiled() { return false; }

double cuda_event_milliseconds(const std::function<void()>&) {
  throw Error("CUDA events are not compiled into this build (no CUDA headers at build time)");
}

struct CudaGraphRecorder::State {};

CudaGraphRecorder::CudaGraphRecorder() : state_(std::make_unique<State>()) {}
CudaGraphRecorder::~CudaGraphRecorder() = default;

void CudaGraphRecorder::capture(const std::function<void(const std::function<void()>& cut)>&) {
  throw Error(
      "--cuda-graph: CUDA graphs are not compiled into this build (build against a CUDA LibTorch with the CUDA "
      "runtime headers)");
}

void CudaGraphRecorder::replay() { throw Error("CudaGraphRecorder::replay: CUDA graphs are not compiled into this build"); }

int64_t CudaGraphRecorder::num_graphs() const { return 0; }

#endif

}  // namespace ilf
