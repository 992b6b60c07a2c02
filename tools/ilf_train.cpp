// ilf_train: trains the Inner Loop Feedback module on a frozen backbone (Fast Approximate
// Distillation) or pretrains a small backbone, on one process or many (torchrun / Slurm over c10d).
//
//   ilf_train --config configs/train/tiny_cpu.json --out runs/tiny [--set training.steps=200 ...]
//   ilf_train --out runs/tiny --resume            (continues from runs/tiny/checkpoints, config.json)
//   [--start-over] [--allow-unchecked-checkpoint] (see --help: when the checkpoints cannot be used)
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
  ResumePolicy policy;
  auto* resume_flag = app.add_flag("--resume", resume, "continue from the newest checkpoint in OUT/checkpoints");
  app.add_flag("--start-over", policy.start_over,
               "with --resume: when no usable checkpoint is left (all found corrupt and renamed *.corrupt), start over "
               "from step 0 instead of refusing")
      ->needs(resume_flag);
  app.add_flag("--allow-unchecked-checkpoint", policy.allow_unchecked_checkpoint,
               "with --resume: resume from a checkpoint without a checksum (written before ILF recorded them), with a "
               "warning, instead of refusing it")
      ->needs(resume_flag);
  app.add_option("--out", out, "output folder (checkpoints, metrics.jsonl, feedback.safetensors, samples/)")
      ->required()
      ->check(cli::NonEmpty);
  if (const int code = cli::parse(app, argc, argv, "ilf_train"); code >= 0) return code;

  install_stop_signal_handlers();
  try {
    run_training(load_training_config(config_path, overrides, out, resume), out, resume, policy);
    return 0;
  } catch (const NonFiniteLossError& e) {
    std::cerr << "ilf_train: " << e.what() << std::endl;
    return 3;
  } catch (...) {
    return cli::report_error("ilf_train");
  }
}
