// Fuzz target: the safetensors reader (ilf::read_safetensors), which loads every weight, feedback
// module, dataset shard and checkpoint. A file it accepts must be fully valid: every tensor is read
// back (summed) so that a tensor pointing outside the data would show up under ASan.
#include <torch/torch.h>

#include "fuzz_input.h"
#include "ilf/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = ilf::fuzz::write_input("input.safetensors", data, size);
  ilf::fuzz::expect_clean([&] {
    const ilf::SafetensorsFile file = ilf::read_safetensors(path);
    for (const auto& [name, tensor] : file.tensors) {
      if (tensor.is_floating_point())
        tensor.to(torch::kFloat64).sum();
      else
        tensor.to(torch::kInt64).sum();
    }
  });
  return 0;
}
