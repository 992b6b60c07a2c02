// The "training" section of a run config as a typed struct: what to train (the ILF feedback module
// or a whole backbone), the optimizer and schedule, the objective, and what the run writes. It lives
// apart from the Trainer so that tools that only validate or record settings (ilf_train before it
// builds the trainer, ilf_sweep's plan check) need not see the training loop. The config layer
// (config/run_config.h) reads it from JSON.
#pragma once
#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <string>

#include "ilf/io/config.h"

namespace ilf {

// kL2C trains a Learning-to-Cache router (training/l2c_router.h), not with the Trainer.
enum class TrainingMode { kIlf, kPretrain, kL2C };
enum class TeacherKind { kFad, kMultistep };
enum class TrainTPost { kNone, kTeacher };

// The "training" section.
struct TrainingOptions {
  TrainingMode mode = TrainingMode::kIlf;
  std::string device = "auto";  // "auto" (CUDA when available), "cpu", "cuda"
  // AdamW and the learning-rate schedule: linear warm-up from 0 over warmup_steps, then constant.
  double lr = 1e-4;
  std::array<double, 2> betas{0.9, 0.999};
  double weight_decay = 0.0;
  double adam_eps = 1e-8;
  int64_t warmup_steps = 0;
  double grad_clip = 0.0;  // max global gradient norm; 0 = no clipping (the norm is still logged)
  // Batch: global batch = batch_size (per rank) x ranks x grad_accum.
  int64_t batch_size = 8;
  int64_t grad_accum = 1;
  int64_t steps = 1000;  // optimizer steps in total
  double ema_decay = 0.999;
  // Objective.
  double t_ratio = 0.5;
  double w_rec = 1.0;
  double w_dist = 1.0;
  double cond_dropout = 0.1;
  // Guidance-aware distillation: with a scale g != 1 the student and the teacher also predict for the
  // null condition, and the distillation term compares their guided predictions u + g (c - u) (the
  // reconstruction term stays on the conditional one). 1 = plain FAD on the conditional predictions.
  double distill_guidance = 1.0;
  TeacherKind teacher = TeacherKind::kFad;
  int64_t teacher_steps = 8;
  TrainTPost t_post_train = TrainTPost::kNone;
  // Output.
  int64_t checkpoint_every = 500;  // 0: only at the end / on a stop request
  int64_t keep_checkpoints = 3;
  int64_t log_every = 10;
  int64_t sample_every = 0;  // sample grids (pixel-space data only); 0 = off
  int64_t sample_images = 16;
  int64_t sample_steps = 20;     // DPM-Solver++(2M) steps
  double sample_guidance = 1.0;  // classifier-free guidance scale of the sample grids
  uint64_t seed = 0;
  std::string precision = "float32";  // "float32", or "bf16" (autocast, CUDA only)
  bool activation_checkpointing = false;
  double collective_timeout_s = 600;  // rendezvous and collectives; a dead rank fails the others after this
};

// "ilf", "pretrain" or "l2c".
std::string training_mode_name(TrainingMode mode);

// The effective options as a "training" JSON section (every key, defaults included).
Json training_options_to_json(const TrainingOptions& options);

// The device training runs on: CUDA device `local_rank` for "cuda" (or "auto" with CUDA), else CPU.
torch::Device training_device(const TrainingOptions& options, int64_t local_rank);

// The learning rate of optimizer step `step` (0-based): lr * min(1, (step + 1) / warmup_steps).
double learning_rate_at(const TrainingOptions& options, int64_t step);

}  // namespace ilf
