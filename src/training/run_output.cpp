// metrics.jsonl and sample grids of a training run (see include/ilf/training/run_output.h).
#include "ilf/training/run_output.h"

#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <vector>

#include "ilf/accel/baseline.h"
#include "ilf/accel/ilf.h"
#include "ilf/io/atomic_file.h"
#include "ilf/io/image.h"
#include "ilf/sampling/dpm_solver.h"
#include "ilf/sampling/sampler.h"

#ifdef ILF_HAVE_NCCL
#include <c10/cuda/CUDACachingAllocator.h>
#endif

namespace ilf {
namespace fs = std::filesystem;
namespace {

// The seed of the sample grids' fixed noise (mixed with the run's seed).
constexpr uint64_t kSampleStream = 0x73616d706cull;

}  // namespace

RunOutput::RunOutput(std::string out_dir) : out_dir_(std::move(out_dir)) {}

std::string RunOutput::metrics_path() const { return (fs::path(out_dir_) / "metrics.jsonl").string(); }

void RunOutput::append_metrics(const Json& line) const {
  std::ofstream out(metrics_path(), std::ios::app);
  out << line.dump() << "\n";
  out.flush();
}

void RunOutput::truncate_metrics(int64_t last_step) const {
  const std::string path = metrics_path();
  if (!fs::exists(path)) return;
  std::vector<std::string> kept;
  {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      try {
        if (Json::parse(line).at("step").get<int64_t>() <= last_step) kept.push_back(line);
      } catch (const std::exception&) {
        // A line cut short by a kill: drop it.
      }
    }
  }
  write_file_atomically(path, [&](std::ostream& out) {
    for (const auto& line : kept) out << line << "\n";
  });
}

void RunOutput::write_sample_grid(int64_t step, Backbone& backbone, FeedbackModuleImpl* feedback, ParameterEma& ema,
                                  Dataset& dataset, const SampleGridOptions& options, const torch::Device& device) const {
  const int64_t channels = backbone.in_channels();
  if (channels != 1 && channels != 3) {
    static bool warned = false;
    if (!warned) spdlog::info("sample grids need pixel-space data (1 or 3 channels); skipping them for latents");
    warned = true;
    return;
  }
  torch::NoGradGuard no_grad;
  const int64_t n = std::min(options.images, dataset.size());
  std::vector<int64_t> indices(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) indices[i] = i;
  const TrainingBatch reference = dataset.load(indices);  // the conditions of the first n samples
  const ConditionInputs inputs = condition_to(reference.condition, device);
  auto generator = make_cpu_generator(mix_seed(options.seed, kSampleStream));
  auto shape = reference.x0.sizes().vec();
  const torch::Tensor x_T = torch::randn(shape, generator, torch::kFloat32).to(device);

  SamplingOptions sampling;
  sampling.steps = options.steps;
  sampling.guidance_scale = options.guidance;
  // ILF runs feedback on every step with t_post = t (the training-time reading); pretraining the plain sampler.
  std::unique_ptr<AccelerationMethod> method;
  if (feedback)
    method = std::make_unique<IlfMethod>(IlfSettings{}, feedback->loop_begin(), feedback->loop_end(), feedback);
  else
    method = std::make_unique<BaselineMethod>();
  const DPMSolverOptions solver_options;
  DPMSolverMultistep solver(solver_options);
  ParameterEma::Swap swap(ema);
  const bool was_training = backbone.is_training();
  backbone.eval();
  const SamplingResult result = sample(backbone, *method, solver, sampling, x_T, inputs, backbone.null_condition(inputs));
  if (was_training) backbone.train();
  fs::create_directories(fs::path(out_dir_) / "samples");
  char name[64];
  std::snprintf(name, sizeof(name), "step-%08lld.png", static_cast<long long>(step));
  write_png((fs::path(out_dir_) / "samples" / name).string(), make_image_grid(result.samples.clamp(-1, 1).cpu()),
            {{"step", std::to_string(step)}, {"sampler", "dpmpp2m"}, {"steps", std::to_string(options.steps)}});
}

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  char text[32];
  std::snprintf(text, sizeof(text), "%lld:%02lld:%02lld", static_cast<long long>(s / 3600), static_cast<long long>((s / 60) % 60),
                static_cast<long long>(s % 60));
  return text;
}

double peak_memory_mb(const torch::Device& device) {
#ifdef ILF_HAVE_NCCL
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    return static_cast<double>(stats.allocated_bytes[0].peak) / (1024.0 * 1024.0);
  }
#endif
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

}  // namespace ilf
