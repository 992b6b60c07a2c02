// ilf_train: trains the Inner Loop Feedback module on a frozen backbone (Fast Approximate
// Distillation) or pretrains a small backbone, on one process or many (torchrun / Slurm over c10d).
//
//   ilf_train --config configs/train/tiny_cpu.json --out runs/tiny [--set training.steps=200 ...]
//   ilf_train --out runs/tiny --resume            (continues from runs/tiny/checkpoints, config.json)
//
// SIGTERM or SIGUSR1 writes a checkpoint and exits with status 0; a NaN/Inf loss exits with status 3
// and leaves the last checkpoint as it was; other errors exit with status 1.
#include <CLI/CLI.hpp>

#include <iostream>

#include "ilf/pipelines/training.h"
#include "ilf/util/stop_signal.h"
#include "tool_common.h"

using namespace ilf;

int main(int argc, char** argv) {
  CLI::App app{"Train the ILF feedback module (or pretrain a backbone)"};
  std::string config_path, out;
  std::vector<std::string> overrides;
  bool resume = false;
  app.add_option("--config", config_path, "run config (JSON)");
  app.add_option("--set", overrides, "override a config key, key=value (repeatable)");
  app.add_flag("--resume", resume, "continue from the newest checkpoint in OUT/checkpoints");
  app.add_option("--out", out, "output folder (checkpoints, metrics.jsonl, feedback.safetensors, samples/)")->required();
  if (const int code = cli::parse(app, argc, argv, "ilf_train"); code >= 0) return code;

  install_stop_signal_handlers();
  try {
    run_training(load_training_config(config_path, overrides, out, resume), out, resume);
    return 0;
  } catch (const NonFiniteLossError& e) {
    std::cerr << "ilf_train: " << e.what() << std::endl;
    return 3;
  } catch (...) {
    return cli::report_error("ilf_train");
  }
}
