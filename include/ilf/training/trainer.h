// The trainer behind `ilf_train`: Fast Approximate Distillation of the ILF feedback module on a frozen
// backbone (docs/design.md, "The method"), and plain noise-prediction pretraining of a whole backbone, with
// AdamW, warm-up, gradient clipping and accumulation, EMA, bf16 autocast on CUDA, activation
// checkpointing, exact-resume checkpoints, JSONL metrics, sample grids and data parallelism.
//
// ILF objective (mode "ilf"): x0 from data, eps ~ N(0, I), t ~ U{0..999}, t' = floor(t * t_ratio);
// x_t and x_t' from the same x0 and eps. student = inner_loop_forward(x_t, t, t_post) with feedback;
// teacher = the frozen backbone at (x_t', t') without feedback, no gradient ("fad"), or at t' after
// teacher_steps DDIM steps of the frozen backbone from x_t ("multistep", the standard distillation
// ablation). loss = w_rec * MSE(student, eps) + w_dist * MSE(student, teacher) on the first
// in_channels output channels. Only F and the scales train; the backbone's parameters never change.
// The condition is replaced by the null condition with probability cond_dropout (per sample).
// t_post during training ("t_post_train"): "none" -> t_post = t (the default: the sampling-time
// t_post rules then shift the time only at inference); "teacher" -> t_post = t', the time whose
// teacher output the student learns to match.
//
// Pretraining (mode "pretrain"): every backbone parameter trains; loss = MSE(backbone(x_t, t), eps)
// on the eps channels (learned-sigma channels get no loss), with the same condition dropout.
//
// Randomness is a function of (seed, sample id): sample id = step * G + position in the global batch,
// so the loss of a step does not depend on how the global batch is split over ranks and micro-batches,
// and a resumed run repeats an uninterrupted one exactly (on CPU).
//
// This file and trainer.cpp hold the Trainer and its loop (set-up, optimizer step, run, checkpoints
// and resume); the pieces it is built from have their own files: options.h (the "training"
// section), losses.h (the objectives above and their random draws), activation_checkpointing.h,
// torch_compat.h (LibTorch 1.x / 2.x spellings), run_output.h (metrics.jsonl, sample grids) and
// ilf/util/stop_signal.h (the SIGTERM / SIGUSR1 stop request).
#pragma once
#include <torch/torch.h>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ilf/error.h"
#include "ilf/feedback/feedback.h"
#include "ilf/io/config.h"
#include "ilf/models/backbone.h"
#include "ilf/sampling/noise_schedule.h"
#include "ilf/training/checkpoint.h"
#include "ilf/training/datasets.h"
#include "ilf/training/distributed.h"
#include "ilf/training/ema.h"
#include "ilf/training/losses.h"
#include "ilf/training/options.h"
#include "ilf/training/run_output.h"
#include "ilf/util/stop_signal.h"  // run() stops on its request; kept here for the callers of trainer.h

namespace ilf {

// One step's numbers (averaged over ranks and micro-batches).
struct StepMetrics {
  int64_t step = 0;  // 1-based: the number of optimizer steps done after this one
  double loss = 0, loss_rec = 0, loss_dist = 0;
  double lr = 0, grad_norm = 0;
};

// Thrown when a loss or gradient is NaN or Inf: the step is not applied and nothing is written.
class NonFiniteLossError : public Error {
 public:
  using Error::Error;
};

// What a training run is made of (pipelines/training.h builds it from a run config).
struct TrainerSetup {
  TrainingOptions options;
  std::string config_source = "config";  // the run config, for messages
  // The backbone: loaded weights, or freshly initialised for pretraining. Built right after
  // torch::manual_seed(options.seed), so that a run's initialisation (backbone, then feedback block)
  // is a function of the seed.
  BackbonePtr backbone;
  std::optional<FeedbackOptions> feedback;  // the inner loop and F's initialisation; required in mode ilf
  DatasetPtr dataset;
  int64_t read_ahead = 4;  // DataLoader read-ahead (micro-batches)
  Json resolved_config;    // what OUT/config.json and the checkpoints record
  std::string out_dir;
  bool resume = false;
  // With resume: when no usable checkpoint is left (all were found corrupt, now or by an earlier
  // resume), start over from step 0 instead of refusing (ilf_train --start-over).
  bool start_over = false;
  // With resume: load a checkpoint without its "checksum" (with a warning) instead of refusing it
  // (ilf_train --allow-unchecked-checkpoint).
  bool allow_unchecked_checkpoint = false;
};

class Trainer {
 public:
  // Writes under setup.out_dir (rank 0 only): config.json, metrics.jsonl, checkpoints/,
  // feedback.safetensors (ilf) or backbone.safetensors (pretrain), samples/. With setup.resume,
  // continues from the newest checkpoint in out_dir/checkpoints.
  Trainer(const TrainerSetup& setup, Distributed& distributed);
  ~Trainer();

  // Trains until training.steps, or until SIGTERM / SIGUSR1 reached any rank (checked after every
  // step; all ranks stop at the same step and a checkpoint is written). Returns true when all steps
  // are done. Throws NonFiniteLossError on a NaN/Inf loss or gradient (the last checkpoint stays as it is).
  bool run();

  // One optimizer step (all micro-batches); exposed for tests.
  StepMetrics train_step();
  // The loss of one micro-batch (the losses of losses.h on this run's models, options and noise
  // streams); exposed for tests.
  LossTerms compute_loss(const TrainingBatch& batch);

  // Writes the checkpoint and the feedback / backbone file for the current step (rank 0).
  void save();

  int64_t step() const { return step_; }
  const TrainingOptions& options() const { return options_; }
  Backbone& backbone() { return *backbone_; }
  FeedbackModuleImpl* feedback() { return feedback_ ? feedback_.get() : nullptr; }
  // The trainable parameters by name (F and scales in ilf mode; every backbone parameter in pretrain).
  const std::vector<std::pair<std::string, torch::Tensor>>& trainable() const { return trainable_; }
  const ParameterEma& ema() const { return *ema_; }
  std::string checkpoint_folder() const;
  std::string weights_output_path() const;  // out/feedback.safetensors or out/backbone.safetensors

 private:
  // Resumes from the newest checkpoint that loads (checksum, metadata) and fits this run; a bad
  // newest checkpoint is renamed *.corrupt with a warning and the previous one is used.
  // Resumes from the newest usable checkpoint; false when none is usable and setup.start_over allows
  // starting from step 0 (otherwise an error).
  bool resume_from_newest_usable();
  void resume_from(const TrainingCheckpoint& checkpoint, const std::string& path);
  void restore_optimizer_state(const std::map<std::string, AdamState>& state, const std::string& source);
  void write_metrics(const StepMetrics& metrics, double seconds_per_step);
  void write_sample_grid();

  TrainingOptions options_;
  Json resolved_config_;
  std::string out_dir_;
  bool start_over_ = false;
  bool allow_unchecked_checkpoint_ = false;
  RunOutput output_;  // metrics.jsonl and sample grids under out_dir_
  Distributed& dist_;
  torch::Device device_;
  BackbonePtr backbone_;          // the model itself (names = official keys)
  BackbonePtr compute_backbone_;  // backbone_ or its activation-checkpointing wrapper
  FeedbackModule feedback_{nullptr};
  NoiseSchedule schedule_;
  DatasetPtr dataset_;
  std::unique_ptr<DataLoader> loader_;
  std::vector<std::pair<std::string, torch::Tensor>> trainable_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::unique_ptr<ParameterEma> ema_;
  int64_t step_ = 0;
  std::chrono::steady_clock::time_point start_time_;
  int64_t start_step_ = 0;
};

}  // namespace ilf
