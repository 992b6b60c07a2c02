// Fuzz target: the training checkpoint loader (ilf::load_checkpoint), which ilf_train --resume trusts:
// its metadata (step, epoch, checksums, optimizer state) must be validated before the run uses it.
#include "fuzz_input.h"
#include "ilf/training/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = ilf::fuzz::write_input("checkpoint-00000002.safetensors", data, size);
  ilf::fuzz::expect_clean([&] { ilf::load_checkpoint(path); });
  return 0;
}
