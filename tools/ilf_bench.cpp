// ilf_bench: sampling speed of baseline, caching and ILF settings, as a Markdown table of ms per
// backbone forward, seconds per image (backbone; + VAE decode when --vae is given), block forwards,
// speedup against the 20-step baseline and the ratio of that speedup to the block-forward ratio.
//   GPU: ilf_bench --preset dit-xl-2-256 --preset pixart-xl-2-512 --device cuda --dtype bf16 --batch 2 --cuda-graph
//   CPU: ilf_bench --config configs/fashion_mnist.json --batch 2
// Also: --numerics (bf16 / fp16 against float32 on the same weights: forward error, same-seed sample
// PSNR) and --dump-forward (weights, inputs and our forward for scripts/bench_pytorch_reference.py).
#include <spdlog/spdlog.h>
#include <torch/script.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <iostream>
#include <sstream>

#include "ilf/experiments/bench/bench.h"
#include "ilf/experiments/bench/cuda_support.h"
#include "ilf/error.h"
#include "ilf/io/atomic_file.h"
#include "ilf/models/weights.h"
#include "tool_common.h"

using namespace ilf;

namespace {

struct Args {
  std::vector<std::string> presets, configs, overrides, dtypes = {"float32"}, methods;
  std::vector<int64_t> batches = {2};
  std::string device = "cpu", out, json_out, vae, dump_forward;
  std::vector<std::string> parity;  // WEIGHTS IO [WEIGHTS IO ...]: reference cases (tests/data/*.safetensors)
  double vae_scale = 0.18215;
  bool cuda_graph = false, no_eager = false, tf32 = false, numerics = false, capabilities = false;
  int64_t warmup = 1, repeats = 3;
  uint64_t seed = 0;
};

// A model to time: ("preset", name) or ("config", path).
struct ModelChoice {
  bool preset;
  std::string name;
};

BenchModel build_model(const ModelChoice& spec, const Args& args, const torch::Device& device, torch::Dtype dtype) {
  return spec.preset ? make_preset_model(spec.name, device, dtype, args.seed)
                     : load_config_model(spec.name, args.overrides, device, dtype);
}

std::string sanitise(const std::string& name) {
  std::string s;
  for (char c : name) s += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') ? c : '_';
  return s;
}

int run(const Args& args) {
  if (!args.parity.empty()) {
    if (args.parity.size() % 2 != 0) throw Error("--parity takes pairs: WEIGHTS IO");
    const torch::Device device(args.device);
    set_tf32(args.tf32);
    nlohmann::json cases = nlohmann::json::array();
    bool ok = true;
    std::string text = "| weights | device | float32 TF32 | max abs diff / max abs ref | within 1e-5 |\n|---|---|---|---|---|\n";
    for (size_t i = 0; i < args.parity.size(); i += 2) {
      const double error = reference_parity(args.parity[i], args.parity[i + 1], args.overrides, device);
      ok = ok && error < 1e-5;
      cases.push_back({{"weights", args.parity[i]}, {"device", device.str()}, {"tf32", args.tf32}, {"max_relative_error", error}});
      text += "| " + args.parity[i] + " | " + device.str() + " | " + (args.tf32 ? "on" : "off") + " | " +
              c10::str(error) + " | " + (error < 1e-5 ? "yes" : "NO") + " |\n";
    }
    if (!args.out.empty()) write_file_atomically(args.out, [&](std::ostream& o) { o << text; });
    if (!args.json_out.empty()) write_file_atomically(args.json_out, [&](std::ostream& o) { o << cases.dump(2) << "\n"; });
    std::cout << text << std::flush;
    return ok ? 0 : 2;
  }
  if (args.capabilities) {
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
    std::cout << nlohmann::json({{"cuda_support_compiled", cuda_support_compiled()},
                                 {"cuda_available", torch::cuda::is_available()},
                                 {"nccl_process_group_compiled", nccl},
                                 {"gloo_process_group_compiled", gloo},
                                 {"scaled_dot_product_attention", TORCH_VERSION_MAJOR >= 2},
                                 {"torch_version", TORCH_VERSION}})
                     .dump()
              << std::endl;
    return 0;
  }
  std::vector<ModelChoice> specs;
  for (const auto& p : args.presets) specs.push_back({true, p});
  for (const auto& c : args.configs) specs.push_back({false, c});
  if (specs.empty()) throw Error("give at least one --preset or --config");
  if (args.warmup < 0) throw Error("--warmup must be >= 0");
  if (args.repeats < 1) throw Error("--repeats must be >= 1");
  for (int64_t b : args.batches)
    if (b < 1) throw Error("--batch values must be >= 1 (got " + std::to_string(b) + ")");
  // Validate everything the user typed before any model is built.
  for (const auto& p : args.presets) {
    const auto& names = bench_preset_names();
    if (std::find(names.begin(), names.end(), p) == names.end()) make_preset_model(p, torch::kCPU, torch::kFloat32);  // throws
  }
  std::vector<BenchMethod> methods;
  for (const auto& m : args.methods.empty() ? default_bench_methods() : args.methods) methods.push_back(parse_bench_method(m));
  std::vector<torch::Dtype> dtypes;
  for (const auto& d : args.dtypes) dtypes.push_back(parse_dtype(d));
  const torch::Device device(args.device);
  if (device.is_cuda() && !torch::cuda::is_available()) throw Error("--device " + args.device + ": CUDA is not available");
  if (args.cuda_graph && !device.is_cuda()) throw Error("--cuda-graph needs --device cuda");
  if (args.cuda_graph && !cuda_support_compiled())
    throw Error("--cuda-graph: this build has no CUDA graph support (CUDA headers were not found at build time)");
  set_tf32(args.tf32);
  spdlog::info("ilf_bench: device {}, timing with {}, TF32 {}", device.str(),
               device.is_cuda() ? (cuda_support_compiled() ? "CUDA events" : "device sync + steady clock") : "steady clock",
               args.tf32 ? "on" : "off");

  DecodeFunction decode;
  torch::jit::script::Module vae;
  if (!args.vae.empty()) {
    try {
      vae = torch::jit::load(args.vae, device);
    } catch (const c10::Error& e) {
      throw Error(args.vae + ": cannot load the TorchScript VAE decoder (" + e.what_without_backtrace() + ")");
    }
    vae.eval();
    decode = [&](const torch::Tensor& latents) {
      torch::NoGradGuard no_grad;
      return vae.forward({latents / args.vae_scale}).toTensor();
    };
  }

  nlohmann::json report = {{"device", device.str()}, {"tf32", args.tf32}, {"torch_version", TORCH_VERSION},
                           {"warmup", args.warmup}, {"repeats", args.repeats}};
  std::vector<BenchRow> rows;
  nlohmann::json graph_errors = nlohmann::json::array(), numerics = nlohmann::json::array();
  std::ostringstream numerics_table;
  for (const ModelChoice& spec : specs) {
    for (size_t d = 0; d < dtypes.size(); ++d) {
      BenchModel model = build_model(spec, args, device, dtypes[d]);
      if (spec.preset || model.feedback_is_random)
        spdlog::info("{}: ILF rows use a feedback block copied from the loop end (not trained): timing only", model.name);
      if (!args.dump_forward.empty() && d == 0) {
        const std::string path = args.dump_forward + sanitise(spec.name) + ".safetensors";
        write_forward_dump(model, args.batches.front() / (model.sampling().guidance_scale != 1.0 ? 2 : 1), args.seed, path);
        spdlog::info("wrote {}", path);
      }
      for (int64_t batch : args.batches) {
        for (int graph = 0; graph < 2; ++graph) {
          if ((graph == 0 && args.no_eager) || (graph == 1 && !args.cuda_graph)) continue;
          BenchSettings settings;
          settings.methods = methods;
          settings.batch = batch;
          settings.cuda_graph = graph == 1;
          settings.warmup = args.warmup;
          settings.repeats = args.repeats;
          settings.seed = args.seed;
          settings.dtype_name = args.dtypes[d];
          settings.decode = decode;
          BenchResult result = benchmark_model(model, settings);
          if (result.graph_error >= 0) {
            graph_errors.push_back({{"model", model.name}, {"dtype", args.dtypes[d]}, {"batch", batch},
                                    {"replay_vs_eager_max_relative_error", result.graph_error}});
            spdlog::info("{} {} batch {}: CUDA-graph replay vs eager samples, max relative error {:.3g}", model.name,
                         args.dtypes[d], batch, result.graph_error);
          }
          rows.insert(rows.end(), result.rows.begin(), result.rows.end());
        }
      }
      if (args.numerics && dtypes[d] != torch::kFloat32) {
        BenchModel reference = build_model(spec, args, device, torch::kFloat32);
        const BenchMethod method = methods.front();
        const int64_t images = std::max<int64_t>(1, args.batches.front() / (model.sampling().guidance_scale != 1.0 ? 2 : 1));
        const PrecisionComparison c = compare_precision(reference, model, method, images, args.seed, decode);
        numerics.push_back({{"model", c.model}, {"dtype", args.dtypes[d]}, {"method", c.method},
                            {"forward_max_relative_error", c.forward_error}, {"sample_max_relative_error", c.sample_error},
                            {"sample_psnr_db", c.sample_psnr}, {"psnr_space", c.psnr_space}});
        numerics_table << "| " << c.model << " | " << args.dtypes[d] << " vs float32 | " << c.forward_error << " | "
                       << c.method << " | " << c.sample_error << " | " << c.sample_psnr << " dB (" << c.psnr_space << ") |\n";
      }
    }
  }
  fill_ratios(rows);
  std::string text = format_bench_table(rows);
  if (!numerics.empty())
    text += "\n| model | precision | forward max rel. error | method | sample max rel. error | same-seed PSNR |\n"
            "|---|---|---|---|---|---|\n" +
            numerics_table.str();
  report["rows"] = bench_rows_to_json(rows);
  report["cuda_graph_checks"] = graph_errors;
  report["numerics"] = numerics;
  if (!args.out.empty()) write_file_atomically(args.out, [&](std::ostream& o) { o << text; });
  if (!args.json_out.empty()) write_file_atomically(args.json_out, [&](std::ostream& o) { o << report.dump(2) << "\n"; });
  std::cout << text << std::flush;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ilf_bench: speed of baseline, caching and ILF sampling (Markdown table)"};
  Args args;
  app.add_option("--preset", args.presets, "dit-xl-2-256, pixart-xl-2-512, pixart-xl-2-1024 (random weights); dit-tiny, pixart-tiny, pixart-tiny-ms, pixart-sigma-tiny (test size); repeatable");
  app.add_option("--config", args.configs, "a run config with \"weights\" (e.g. configs/fashion_mnist.json); repeatable");
  app.add_option("--set", args.overrides, "override a config value: key.path=value (repeatable)");
  app.add_option("--batch", args.batches, "backbone forward batch (with guidance: 2 x images); repeatable")->capture_default_str()->transform(cli::Count);
  app.add_option("--dtype", args.dtypes, "float32, bfloat16 / bf16, float16 / fp16 (the last two on CUDA); repeatable")->capture_default_str();
  app.add_option("--method", args.methods, "<baseline|cache|ilf>-<steps>; default baseline-20 baseline-12 cache-20 ilf-10 ilf-12");
  app.add_option("--device", args.device, "cpu or cuda[:i]")->capture_default_str();
  app.add_flag("--cuda-graph", args.cuda_graph, "also time with CUDA graphs (one per denoising step, replayed)");
  app.add_flag("--no-eager", args.no_eager, "with --cuda-graph: skip the eager rows");
  app.add_flag("--tf32", args.tf32, "allow TF32 for float32 matmuls / convolutions on CUDA");
  app.add_option("--warmup", args.warmup, "untimed runs before timing")->capture_default_str();
  app.add_option("--repeats", args.repeats, "timed runs (the median is reported)")->capture_default_str()->transform(cli::Count);
  app.add_option("--seed", args.seed, "seed of the random weights, inputs and noise")->capture_default_str()->transform(cli::Seed);
  app.add_option("--vae", args.vae, "TorchScript VAE decoder: adds seconds per image with decoding");
  app.add_option("--vae-scale", args.vae_scale, "latent scale factor of the VAE")->capture_default_str();
  app.add_option("--out", args.out, "also write the Markdown table here (atomically)");
  app.add_option("--json", args.json_out, "write all results as JSON here (atomically)");
  app.add_flag("--numerics", args.numerics, "compare each non-float32 dtype with float32 (forward error, same-seed sample PSNR)");
  app.add_option("--dump-forward", args.dump_forward,
                 "write PREFIX<model>.safetensors (weights, inputs, our forward) for scripts/bench_pytorch_reference.py --check");
  app.add_option("--parity", args.parity,
                 "WEIGHTS IO pairs of reference cases (e.g. tests/data/dit_tiny.{weights,io}.safetensors with --set "
                 "model.num_heads=4): our float32 forward on --device against the reference \"out\"; exit 2 above 1e-5");
  app.add_flag("--capabilities", args.capabilities, "print whether CUDA events / graphs are compiled in, and exit");
  if (const int code = cli::parse(app, argc, argv, "ilf_bench"); code >= 0) return code;
  try {
    return run(args);
  } catch (...) {
    return cli::report_error("ilf_bench");
  }
}
