// One benchmark run as `ilf_bench` asks for it: every model (presets and run configs) in every dtype
// and batch, eager and with CUDA graphs, as a Markdown table and a JSON report; the float32 parity
// of reference cases; and what this build supports. The timing of one model is in bench.h; this file
// is the loop over the request and the report around it, so the tool is flag parsing only.
#pragma once
#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "ilf/models/vae.h"

namespace ilf {

struct BenchRequest {
  std::vector<std::string> presets, configs;  // models: bench_preset_names() and run configs with "weights"
  std::vector<std::string> overrides;         // key.path=value, applied to every config
  std::vector<std::string> dtypes = {"float32"};
  std::vector<std::string> methods;    // <baseline|cache|ilf>-<steps>; empty = default_bench_methods()
  std::vector<int64_t> batches = {2};  // backbone forward batch (with guidance: 2 x images)
  std::string device = "auto";         // "auto": CUDA when the build and machine have it (util/device.h)
  std::string vae;                     // TorchScript VAE decoder: adds the "+ VAE" column ("" = none)
  double vae_scale = kSdVaeLatentScale;
  std::string dump_forward;  // PREFIX of PREFIX<model>.safetensors forward dumps ("" = none)
  bool cuda_graph = false, no_eager = false, tf32 = false, numerics = false;
  int64_t warmup = 1, repeats = 3;
  uint64_t seed = 0;
};

struct BenchReport {
  std::string markdown;  // the table(s) to print
  nlohmann::json json;   // everything, for --json
  bool ok = true;        // parity: every case within 1e-5
};

// Validates the whole request before any model is built (errors name the flag), then times it.
BenchReport run_benchmarks(const BenchRequest& request);

// Our float32 forward of each (weights, io) reference case on `device` against its "out" (tests/data
// layout); ok when every max relative error is below 1e-5.
BenchReport run_parity_cases(const std::vector<std::string>& weights_io_pairs, const std::vector<std::string>& overrides,
                             const std::string& device, bool tf32);

// What this build and machine support: CUDA events / graphs compiled, CUDA available, the NCCL and Gloo
// process groups, scaled_dot_product_attention, the LibTorch version.
nlohmann::json bench_capabilities();

}  // namespace ilf
