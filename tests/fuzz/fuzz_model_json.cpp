// Fuzz target: a text-to-image model folder's model.json (ilf::read_model_folder), the first file
// ilf_sample reads from --model-folder; every key, type and named file is checked before loading.
#include <filesystem>

#include "fuzz_input.h"
#include "ilf/pipelines/model_folder.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string folder = ilf::fuzz::scratch_folder() + "/model";
  std::filesystem::create_directories(folder);
  ilf::fuzz::write_input("model/model.json", data, size);
  ilf::fuzz::expect_clean([&] { ilf::read_model_folder(folder); });
  return 0;
}
