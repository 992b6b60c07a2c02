// Fuzz target: the idx reader (ilf::read_idx_file), plain or gzip-compressed, which reads the
// Fashion-MNIST images and labels. Its size checks must refuse a header that promises more than the
// data holds, and a gzip stream must not be inflated past the declared size.
#include <torch/torch.h>

#include "fuzz_input.h"
#include "ilf/training/datasets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = ilf::fuzz::write_input("images-idx3-ubyte.gz", data, size);
  ilf::fuzz::expect_clean([&] { ilf::read_idx_file(path).to(torch::kInt64).sum(); });
  return 0;
}
