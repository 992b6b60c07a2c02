// ilf_train: trains the Inner Loop Feedback module on a frozen backbone (Fast Approximate
// Distillation) or pretrains a small backbone, on one process or many (torchrun / Slurm over c10d).
//
//   ilf_train --config configs/train/tiny_cpu.json --out runs/tiny [--set training.steps=200 ...]
//   ilf_train --out runs/tiny --resume            (continues from runs/tiny/checkpoints, config.json)
//
// SIGTERM or SIGUSR1 writes a checkpoint and exits with status 0; a NaN/Inf loss exits with status 3
// and leaves the last checkpoint as it was; other errors exit with status 1.
#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <filesystem>
#include <iostream>

#include "ilf/error.h"
#include "ilf/io/atomic_file.h"
#include "ilf/io/run_config.h"
#include "ilf/training/distributed.h"
#include "ilf/training/options.h"
#include "ilf/training/trainer.h"
#include "ilf/util/stop_signal.h"

using namespace ilf;
namespace fs = std::filesystem;

namespace {

int train(const std::string& config_path, const std::vector<std::string>& overrides, const std::string& out, bool resume) {
  const ProcessTopology topology = topology_from_environment();
  if (topology.rank != 0) spdlog::set_level(spdlog::level::warn);

  // The config: the given file, or (resuming without --config) the resolved config the run saved.
  std::string source = config_path;
  if (source.empty()) {
    source = (fs::path(out) / "config.json").string();
    if (!resume || !fs::exists(source))
      throw Error("--config is required (or --resume with an --out folder that holds config.json)");
  }
  Json config = load_run_config(source, overrides);
  ConfigReader reader(config, source);

  const TrainingOptions options = training_options_from_config(reader);
  // What checkpoints and OUT/config.json record: every training setting, and absolute file paths so
  // that `--resume` without --config finds the same files.
  Json resolved = config;
  resolved["training"] = training_options_to_json(options);
  if (config.contains("weights") && config["weights"].is_string() && !config["weights"].get<std::string>().empty())
    resolved["weights"] = fs::absolute(resolve_config_path(reader, config["weights"].get<std::string>())).string();
  if (config.contains("data") && config["data"].is_object() && config["data"].contains("path") &&
      config["data"]["path"].is_string())
    resolved["data"]["path"] = fs::absolute(resolve_config_path(reader, config["data"]["path"].get<std::string>())).string();

  const torch::Device device = training_device(options, topology.local_rank);
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(options.collective_timeout_s * 1000));
  Distributed distributed(topology, device, timeout);
  Trainer trainer(reader, resolved, out, resume, distributed);

  // Keys of "ilf" that only the sampler reads, and the sections of other tools.
  for (const char* key : {"ilf.t_post", "ilf.feedback_steps", "ilf.feedback_weights"})
    if (reader.has(key)) reader.mark_used(key);
  finish_run_config(reader, {"cache", "sampling", "solver", "vae", "text", "eval", "output"});

  const bool finished = trainer.run();
  if (distributed.is_main()) {
    // For job scripts: whether the run reached training.steps or stopped early (signal).
    const Json status = {{"finished", finished}, {"step", trainer.step()}, {"steps", options.steps},
                         {"weights", trainer.weights_output_path()}};
    write_file_atomically((fs::path(out) / "status.json").string(), [&](std::ostream& s) { s << status.dump(1) << "\n"; });
    spdlog::info("{} at step {}; feedback/backbone weights: {}", finished ? "finished" : "stopped", trainer.step(),
                 trainer.weights_output_path());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Train the ILF feedback module (or pretrain a backbone)"};
  std::string config_path, out;
  std::vector<std::string> overrides;
  bool resume = false;
  app.add_option("--config", config_path, "run config (JSON)");
  app.add_option("--set", overrides, "override a config key, key=value (repeatable)");
  app.add_flag("--resume", resume, "continue from the newest checkpoint in OUT/checkpoints");
  app.add_option("--out", out, "output folder (checkpoints, metrics.jsonl, feedback.safetensors, samples/)")->required();
  CLI11_PARSE(app, argc, argv);

  install_stop_signal_handlers();
  try {
    return train(config_path, overrides, out, resume);
  } catch (const NonFiniteLossError& e) {
    std::cerr << "ilf_train: " << e.what() << std::endl;
    return 3;
  } catch (const std::exception& e) {
    std::cerr << "ilf_train: error: " << e.what() << std::endl;
    return 1;
  }
}
