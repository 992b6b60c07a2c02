// Training from a run config, what ilf_train runs: the config as the checkpoints record it (every
// training setting, absolute file paths), the backbone (loaded weights, or a fresh one for
// pretraining), the data (and, for caption models without a learned null caption, the null caption
// stored beside the shards), the process group and the Trainer.
#pragma once
#include <string>

#include "ilf/config/run_config.h"
#include "ilf/training/distributed.h"
#include "ilf/training/trainer.h"

namespace ilf {

// The trainer's setup for `config`; `json` is the config as given (recorded with its training section
// completed and its paths made absolute, so that `--resume` without --config finds the same files).
// How a resume may go where it cannot simply continue (TrainerSetup::start_over, allow_unchecked_checkpoint).
struct ResumePolicy {
  bool start_over = false;
  bool allow_unchecked_checkpoint = false;
};

TrainerSetup make_trainer_setup(const RunConfig& config, const std::string& out_dir, bool resume,
                                const ResumePolicy& policy = {});

struct TrainingOutcome {
  bool finished = false;  // reached training.steps (false: stopped by a signal)
  int64_t step = 0;
  std::string weights;  // the feedback or backbone file written
};

// Trains `config` into `out_dir` on this process's rank (torchrun / Slurm variables; one rank
// otherwise), and writes out_dir/status.json on rank 0.
TrainingOutcome run_training(const RunConfig& config, const std::string& out_dir, bool resume, const ResumePolicy& policy = {});

// The config a training run uses: `config_path`, or without it (resuming) the out_dir/config.json the
// run saved; with `overrides` applied.
RunConfig load_training_config(const std::string& config_path, const std::vector<std::string>& overrides,
                               const std::string& out_dir, bool resume);

}  // namespace ilf
