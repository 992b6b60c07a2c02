// safetensors reading and writing (F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL).
// The format: u64-LE header length, a JSON header {name: {dtype, shape, data_offsets}, __metadata__},
// then the raw little-endian row-major data. The reader validates the header, every offset and
// every size against the file length, so truncated or corrupt files give a clear ilf::Error. Reading is
// strict, as the format specifies: a header of at most kMaxSafetensorsHeaderBytes, no duplicate keys,
// each tensor's byte length equal to its shape times its dtype's size, and the tensors' data
// contiguous, non-overlapping and exactly filling the file after the header (no gaps, no trailing
// bytes). Errors name the file and the tensor key. The writer produces exactly such files.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>

namespace ilf {

// The largest JSON header accepted (the format's own limit).
constexpr uint64_t kMaxSafetensorsHeaderBytes = uint64_t{100} << 20;

// Tensors by name, ordered by name (the order safetensors writers use).
using TensorMap = std::map<std::string, torch::Tensor>;
using Metadata = std::map<std::string, std::string>;

struct SafetensorsFile {
  TensorMap tensors;
  Metadata metadata;
};

// Reads the whole file into CPU tensors. Throws ilf::Error naming the file and the problem.
SafetensorsFile read_safetensors(const std::string& path);

// Writes tensors (moved to CPU, made contiguous) atomically: a failure leaves no file behind.
void write_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata = {});

// Looks up `name` in `tensors` or throws an ilf::Error naming `source`, the key and what exists.
const torch::Tensor& require_tensor(const TensorMap& tensors, const std::string& name, const std::string& source);

// Throws ilf::Error "<source>: tensor "<name>": holds N NaN or Inf values ..." for the first tensor
// with a non-finite element (weights are checked at load: a single NaN gave black images at exit 0).
// Reads only; 0.13 s for 605M float32 parameters (2.4 GB, the largest preset's size) on a 2-core
// x86_64 CPU (HardeningNonFinite.DISABLED_FiniteCheckCostOnTheLargestPresetSize in tests/test_weights.cpp).
void require_finite_tensors(const TensorMap& tensors, const std::string& source);

}  // namespace ilf
