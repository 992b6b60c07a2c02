// ilf_bench: sampling speed of baseline, caching and ILF settings, as a Markdown table of ms per
// backbone forward, seconds per image (backbone; + VAE decode when --vae is given), block forwards,
// speedup against the 20-step baseline and the ratio of that speedup to the block-forward ratio.
//   GPU: ilf_bench --preset dit-xl-2-256 --preset pixart-xl-2-512 --device cuda --dtype bf16 --batch 2 --cuda-graph
//   CPU: ilf_bench --config configs/fashion_mnist.json --batch 2
// Also: --numerics (bf16 / fp16 against float32 on the same weights: forward error, same-seed sample
// PSNR) and --dump-forward (weights, inputs and our forward for scripts/bench_pytorch_reference.py).
#include <CLI/CLI.hpp>
#include <iostream>

#include "ilf/experiments/bench/bench_run.h"
#include "ilf/io/atomic_file.h"
#include "ilf/models/vae.h"
#include "ilf/sampling/sampler.h"
#include "tool_common.h"

using namespace ilf;

namespace {

struct Args {
  BenchRequest request;
  std::vector<std::string> parity;  // WEIGHTS IO [WEIGHTS IO ...]: reference cases (tests/data/*.safetensors)
  std::string out, json_out;
  bool capabilities = false;
};

int run(const Args& args) {
  if (args.capabilities && args.parity.empty()) {
    std::cout << bench_capabilities().dump() << std::endl;
    return 0;
  }
  const BenchRequest& r = args.request;
  const BenchReport report =
      args.parity.empty() ? run_benchmarks(r) : run_parity_cases(args.parity, r.overrides, r.device, r.tf32);
  if (!args.out.empty()) write_file_atomically(args.out, [&](std::ostream& o) { o << report.markdown; });
  if (!args.json_out.empty()) write_file_atomically(args.json_out, [&](std::ostream& o) { o << report.json.dump(2) << "\n"; });
  std::cout << report.markdown << std::flush;
  return report.ok ? 0 : 2;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ilf_bench: speed of baseline, caching and ILF sampling (Markdown table)"};
  Args args;
  BenchRequest& request = args.request;
  app.add_option("--preset", request.presets,
                 "dit-xl-2-256, pixart-xl-2-512, pixart-xl-2-1024 (random weights); dit-tiny, pixart-tiny, pixart-tiny-ms, "
                 "pixart-sigma-tiny (test size); repeatable");
  app.add_option("--config", request.configs, "a run config with \"weights\" (e.g. configs/fashion_mnist.json); repeatable");
  app.add_option("--set", request.overrides, "override a config value: key.path=value (repeatable)");
  app.add_option("--batch", request.batches, "backbone forward batch (with guidance: 2 x images); repeatable")
      ->capture_default_str()
      ->transform(cli::CountUpTo(kMaxBatch));
  app.add_option("--dtype", request.dtypes, "float32, bfloat16 / bf16, float16 / fp16 (the last two on CUDA); repeatable")
      ->capture_default_str();
  app.add_option("--method", request.methods,
                 "<baseline|cache|ilf>-<steps>; default baseline-20 baseline-12 cache-20 ilf-10 ilf-12");
  app.add_option("--device", request.device, "auto (CUDA when the build and machine have it), cpu or cuda[:i]")
      ->capture_default_str();
  app.add_flag("--cuda-graph", request.cuda_graph, "also time with CUDA graphs (one per denoising step, replayed)");
  app.add_flag("--no-eager", request.no_eager, "with --cuda-graph: skip the eager rows");
  app.add_flag("--tf32", request.tf32, "allow TF32 for float32 matmuls / convolutions on CUDA");
  app.add_option("--warmup", request.warmup, "untimed runs before timing")->capture_default_str();
  app.add_option("--repeats", request.repeats, "timed runs (the median is reported)")
      ->capture_default_str()
      ->transform(cli::Count);
  app.add_option("--seed", request.seed, "seed of the random weights, inputs and noise")
      ->capture_default_str()
      ->transform(cli::Seed);
  app.add_option("--vae", request.vae, "TorchScript VAE decoder: adds seconds per image with decoding");
  app.add_option("--vae-scale", request.vae_scale, "latent scale factor of the VAE")
      ->capture_default_str()
      ->check(cli::NumberInRange(kMinLatentScale, kMaxLatentScale));
  app.add_option("--out", args.out, "also write the Markdown table here (atomically)")->check(cli::NonEmpty);
  app.add_option("--json", args.json_out, "write all results as JSON here (atomically)");
  app.add_flag("--numerics", request.numerics,
               "compare each non-float32 dtype with float32 (forward error, same-seed sample PSNR)");
  app.add_option("--dump-forward", request.dump_forward,
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
