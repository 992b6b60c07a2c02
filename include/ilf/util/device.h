// The device a tool runs on, from its --device text: "cpu", "cuda", "cuda:N" or "auto" (CUDA when this
// build and machine have it, else the CPU; the choice is logged). One resolution for every tool: the
// trainer's training.device and the --device of the tools that sample or evaluate.
#pragma once
#include <torch/torch.h>

#include <string>

namespace ilf {

// `name` ("auto", "cpu", "cuda", "cuda:N") -> the device. "auto" picks CUDA device 0 when
// torch::cuda::is_available() (the build has CUDA and the machine a GPU), else the CPU; choosing CUDA is
// logged once per process at info level ("--device auto: running on cuda"), the CPU at debug level. Throws ilf::Error naming
// `what` (e.g. "--device") for an unparsable name, or for "cuda" without a CUDA device.
torch::Device resolve_device(const std::string& name, const std::string& what = "--device");

}  // namespace ilf
