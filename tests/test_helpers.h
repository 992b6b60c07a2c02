// Shared helpers for the test suite: paths to test data, scratch folders, the parity metric and the
// message of an expected error.
#pragma once
#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <string>

#include "ilf/error.h"

namespace ilf::test {

// The message of the ilf::Error that `f` throws, "" when it throws none (other exceptions propagate
// and fail the test).
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

inline std::string data_path(const std::string& name) { return std::string(ILF_TEST_DATA_DIR) + "/" + name; }

// A fresh empty scratch folder for one test (under the build tree, removed and recreated).
inline std::string scratch_dir(const std::string& name) {
  const std::filesystem::path dir = std::filesystem::path(ILF_BINARY_DIR) / "test_scratch" / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

// The reference metric: max|ours - ref| / max|ref|.
inline double relative_error(const torch::Tensor& ours, const torch::Tensor& ref) {
  auto a = ours.detach().to(torch::kCPU, torch::kFloat64);
  auto b = ref.detach().to(torch::kCPU, torch::kFloat64);
  const double denom = b.abs().max().item<double>();
  const double num = (a - b).abs().max().item<double>();
  return denom == 0 ? num : num / denom;
}

}  // namespace ilf::test

#include <nlohmann/json.hpp>

#include "ilf/config/run_config.h"

namespace ilf::test {

// The "model" section of a run config {"model": <model_json>} as the config layer parses it.
inline ModelSpec model_spec(const std::string& model_json, const std::string& source = "test.json") {
  return parse_run_config(nlohmann::json::parse(R"({"model": )" + model_json + "}"), source).model;
}

}  // namespace ilf::test
