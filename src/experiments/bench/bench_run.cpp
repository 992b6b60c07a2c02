// One benchmark run over a request (see include/ilf/experiments/bench/bench_run.h).
#include "ilf/experiments/bench/bench_run.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <sstream>

#include "ilf/error.h"
#include "ilf/experiments/bench/bench.h"
#include "ilf/experiments/bench/cuda_support.h"
#include "ilf/models/weights.h"
#include "ilf/util/device.h"

namespace ilf {
namespace {

// A model to time: ("preset", name) or ("config", path).
struct ModelChoice {
  bool preset;
  std::string name;
};

BenchModel build_model(const ModelChoice& spec, const BenchRequest& request, const torch::Device& device, torch::Dtype dtype) {
  return spec.preset ? make_preset_model(spec.name, device, dtype, request.seed)
                     : load_config_model(spec.name, request.overrides, device, dtype);
}

std::string sanitise(const std::string& name) {
  std::string s;
  for (char c : name) s += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') ? c : '_';
  return s;
}

}  // namespace

BenchReport run_parity_cases(const std::vector<std::string>& pairs, const std::vector<std::string>& overrides,
                             const std::string& device_name, bool tf32) {
  if (pairs.size() % 2 != 0) throw Error("--parity takes pairs: WEIGHTS IO");
  const torch::Device device = resolve_device(device_name);
  set_tf32(tf32);
  BenchReport report;
  report.json = nlohmann::json::array();
  report.markdown = "| weights | device | float32 TF32 | max abs diff / max abs ref | within 1e-5 |\n|---|---|---|---|---|\n";
  for (size_t i = 0; i < pairs.size(); i += 2) {
    const double error = reference_parity(pairs[i], pairs[i + 1], overrides, device);
    report.ok = report.ok && error < 1e-5;
    report.json.push_back({{"weights", pairs[i]}, {"device", device.str()}, {"tf32", tf32}, {"max_relative_error", error}});
    report.markdown += "| " + pairs[i] + " | " + device.str() + " | " + (tf32 ? "on" : "off") + " | " + c10::str(error) + " | " +
                       (error < 1e-5 ? "yes" : "NO") + " |\n";
  }
  return report;
}

nlohmann::json bench_capabilities() {
#ifdef ILF_HAVE_NCCL
  const bool nccl = true;
#else
  const bool nccl = false;
#endif
#ifdef ILF_HAVE_GLOO
  const bool gloo = true;
#else
  const bool gloo = false;
#endif
  // Attention: at::scaled_dot_product_attention from LibTorch 2.0 on, a plain softmax before.
  return {{"cuda_support_compiled", cuda_support_compiled()},
          {"cuda_available", torch::cuda::is_available()},
          {"nccl_process_group_compiled", nccl},
          {"gloo_process_group_compiled", gloo},
          {"scaled_dot_product_attention", TORCH_VERSION_MAJOR >= 2},
          {"torch_version", TORCH_VERSION}};
}

BenchReport run_benchmarks(const BenchRequest& request) {
  std::vector<ModelChoice> specs;
  for (const auto& p : request.presets) specs.push_back({true, p});
  for (const auto& c : request.configs) specs.push_back({false, c});
  if (specs.empty()) throw Error("give at least one --preset or --config");
  if (request.warmup < 0) throw Error("--warmup must be >= 0");
  if (request.repeats < 1) throw Error("--repeats must be >= 1");
  for (int64_t b : request.batches)
    if (b < 1) throw Error("--batch values must be >= 1 (got " + std::to_string(b) + ")");
  // Validate everything the user typed before any model is built.
  for (const auto& p : request.presets) {
    const auto& names = bench_preset_names();
    if (std::find(names.begin(), names.end(), p) == names.end()) make_preset_model(p, torch::kCPU, torch::kFloat32);  // throws
  }
  std::vector<BenchMethod> methods;
  for (const auto& m : request.methods.empty() ? default_bench_methods() : request.methods)
    methods.push_back(parse_bench_method(m));
  std::vector<torch::Dtype> dtypes;
  for (const auto& d : request.dtypes) dtypes.push_back(parse_dtype(d));
  const torch::Device device = resolve_device(request.device);
  if (device.is_cuda() && !torch::cuda::is_available()) throw Error("--device " + request.device + ": CUDA is not available");
  if (request.cuda_graph && !device.is_cuda()) throw Error("--cuda-graph needs --device cuda");
  if (request.cuda_graph && !cuda_support_compiled())
    throw Error("--cuda-graph: this build has no CUDA graph support (CUDA headers were not found at build time)");
  set_tf32(request.tf32);
  spdlog::info("ilf_bench: device {}, timing with {}, TF32 {}", device.str(),
               device.is_cuda() ? (cuda_support_compiled() ? "CUDA events" : "device sync + steady clock") : "steady clock",
               request.tf32 ? "on" : "off");

  DecodeFunction decode;
  std::shared_ptr<TorchScriptVae> vae;
  if (!request.vae.empty()) {
    vae = std::make_shared<TorchScriptVae>(request.vae, "", request.vae_scale, device);
    decode = [vae](const torch::Tensor& latents) { return vae->decode(latents); };
  }

  BenchReport report;
  report.json = {{"device", device.str()},
                 {"tf32", request.tf32},
                 {"torch_version", TORCH_VERSION},
                 {"warmup", request.warmup},
                 {"repeats", request.repeats}};
  std::vector<BenchRow> rows;
  nlohmann::json graph_errors = nlohmann::json::array(), numerics = nlohmann::json::array();
  std::ostringstream numerics_table;
  for (const ModelChoice& spec : specs) {
    for (size_t d = 0; d < dtypes.size(); ++d) {
      BenchModel model = build_model(spec, request, device, dtypes[d]);
      if (spec.preset || model.feedback_is_random)
        spdlog::info("{}: ILF rows use a feedback block copied from the loop end (not trained): timing only", model.name);
      if (!request.dump_forward.empty() && d == 0) {
        const std::string path = request.dump_forward + sanitise(spec.name) + ".safetensors";
        write_forward_dump(model, request.batches.front() / (model.sampling().guidance_scale != 1.0 ? 2 : 1), request.seed, path);
        spdlog::info("wrote {}", path);
      }
      for (int64_t batch : request.batches) {
        for (int graph = 0; graph < 2; ++graph) {
          if ((graph == 0 && request.no_eager) || (graph == 1 && !request.cuda_graph)) continue;
          BenchSettings settings;
          settings.methods = methods;
          settings.batch = batch;
          settings.cuda_graph = graph == 1;
          settings.warmup = request.warmup;
          settings.repeats = request.repeats;
          settings.seed = request.seed;
          settings.dtype_name = request.dtypes[d];
          settings.decode = decode;
          BenchResult result = benchmark_model(model, settings);
          if (result.graph_error >= 0) {
            graph_errors.push_back({{"model", model.name},
                                    {"dtype", request.dtypes[d]},
                                    {"batch", batch},
                                    {"replay_vs_eager_max_relative_error", result.graph_error}});
            spdlog::info("{} {} batch {}: CUDA-graph replay vs eager samples, max relative error {:.3g}", model.name,
                         request.dtypes[d], batch, result.graph_error);
          }
          rows.insert(rows.end(), result.rows.begin(), result.rows.end());
        }
      }
      if (request.numerics && dtypes[d] != torch::kFloat32) {
        BenchModel reference = build_model(spec, request, device, torch::kFloat32);
        const BenchMethod method = methods.front();
        const int64_t images = std::max<int64_t>(1, request.batches.front() / (model.sampling().guidance_scale != 1.0 ? 2 : 1));
        const PrecisionComparison c = compare_precision(reference, model, method, images, request.seed, decode);
        numerics.push_back({{"model", c.model},
                            {"dtype", request.dtypes[d]},
                            {"method", c.method},
                            {"forward_max_relative_error", c.forward_error},
                            {"sample_max_relative_error", c.sample_error},
                            {"sample_psnr_db", c.sample_psnr},
                            {"psnr_space", c.psnr_space}});
        numerics_table << "| " << c.model << " | " << request.dtypes[d] << " vs float32 | " << c.forward_error << " | "
                       << c.method << " | " << c.sample_error << " | " << c.sample_psnr << " dB (" << c.psnr_space << ") |\n";
      }
    }
  }
  fill_ratios(rows);
  report.markdown = format_bench_table(rows);
  if (!numerics.empty())
    report.markdown +=
        "\n| model | precision | forward max rel. error | method | sample max rel. error | same-seed PSNR |\n"
        "|---|---|---|---|---|---|\n" +
        numerics_table.str();
  report.json["rows"] = bench_rows_to_json(rows);
  report.json["cuda_graph_checks"] = graph_errors;
  report.json["numerics"] = numerics;
  return report;
}

}  // namespace ilf
