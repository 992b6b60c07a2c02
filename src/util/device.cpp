// Device names of the tools (see include/ilf/util/device.h).
#include "ilf/util/device.h"

#include <spdlog/spdlog.h>

#include <mutex>

#include "ilf/error.h"

namespace ilf {

torch::Device resolve_device(const std::string& name, const std::string& what) {
  if (name == "auto") {
    static std::once_flag logged;  // one line per process, however often a tool resolves it
    const bool cuda = torch::cuda::is_available();
    // Said at info level when it picks CUDA (the output then depends on the GPU); the CPU choice, which
    // every CPU-only run makes, stays at debug level so that their output is what it was.
    std::call_once(logged, [&] {
      if (cuda)
        spdlog::info("{} auto: running on cuda (this build and machine have CUDA; --device cpu for the CPU)", what);
      else
        spdlog::debug("{} auto: running on cpu (no CUDA in this build or on this machine)", what);
    });
    return cuda ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  }
  torch::Device device(torch::kCPU);
  try {
    device = torch::Device(name);
  } catch (const c10::Error&) {
    throw Error(what + " is \"" + name + "\": expected auto, cpu, cuda or cuda:N");
  }
  if (device.is_cuda() && !torch::cuda::is_available())
    throw Error(what + " is \"" + name + "\" but no CUDA device is available (this build or machine has none)");
  return device;
}

}  // namespace ilf
