// Reading, recording and interpreting the "training" options (see include/ilf/training/options.h).
#include "ilf/training/options.h"

#include <algorithm>
#include <vector>

#include "ilf/error.h"

namespace ilf {

TrainingOptions training_options_from_config(ConfigReader& c) {
  TrainingOptions o;
  o.mode = c.choice("training.mode", "ilf", {"ilf", "pretrain"}) == "ilf" ? TrainingMode::kIlf : TrainingMode::kPretrain;
  o.device = c.choice("training.device", o.device, {"auto", "cpu", "cuda"});
  o.lr = c.get<double>("training.lr", o.lr);
  if (!(o.lr > 0)) throw c.invalid("training.lr", "> 0");
  const auto betas = c.get<std::vector<double>>("training.betas", {o.betas[0], o.betas[1]});
  if (betas.size() != 2 || betas[0] < 0 || betas[0] >= 1 || betas[1] < 0 || betas[1] >= 1)
    throw c.invalid("training.betas", "two numbers in [0, 1), e.g. [0.9, 0.999]");
  o.betas = {betas[0], betas[1]};
  o.weight_decay = c.get<double>("training.weight_decay", o.weight_decay);
  if (o.weight_decay < 0) throw c.invalid("training.weight_decay", ">= 0");
  o.adam_eps = c.get<double>("training.adam_eps", o.adam_eps);
  if (!(o.adam_eps > 0)) throw c.invalid("training.adam_eps", "> 0");
  o.warmup_steps = c.get<int64_t>("training.warmup_steps", o.warmup_steps);
  if (o.warmup_steps < 0) throw c.invalid("training.warmup_steps", ">= 0");
  o.grad_clip = c.get<double>("training.grad_clip", o.grad_clip);
  if (o.grad_clip < 0) throw c.invalid("training.grad_clip", ">= 0 (0 = no clipping)");
  o.batch_size = c.get<int64_t>("training.batch_size", o.batch_size);
  if (o.batch_size < 1) throw c.invalid("training.batch_size", ">= 1 (the per-rank micro-batch)");
  o.grad_accum = c.get<int64_t>("training.grad_accum", o.grad_accum);
  if (o.grad_accum < 1) throw c.invalid("training.grad_accum", ">= 1");
  o.steps = c.get<int64_t>("training.steps", o.steps);
  if (o.steps < 1) throw c.invalid("training.steps", ">= 1");
  o.ema_decay = c.get<double>("training.ema_decay", o.ema_decay);
  if (o.ema_decay < 0 || o.ema_decay >= 1) throw c.invalid("training.ema_decay", "in [0, 1) (0 = no averaging)");
  o.t_ratio = c.get<double>("training.t_ratio", o.t_ratio);
  if (o.t_ratio < 0 || o.t_ratio > 1) throw c.invalid("training.t_ratio", "in [0, 1]");
  o.w_rec = c.get<double>("training.w_rec", o.w_rec);
  o.w_dist = c.get<double>("training.w_dist", o.w_dist);
  if (o.w_rec < 0 || o.w_dist < 0 || o.w_rec + o.w_dist == 0)
    throw c.invalid("training.w_rec", ">= 0, with w_dist >= 0 and not both 0");
  o.cond_dropout = c.get<double>("training.cond_dropout", o.cond_dropout);
  if (o.cond_dropout < 0 || o.cond_dropout > 1) throw c.invalid("training.cond_dropout", "in [0, 1]");
  o.teacher = c.choice("training.teacher", "fad", {"fad", "multistep"}) == "fad" ? TeacherKind::kFad : TeacherKind::kMultistep;
  o.teacher_steps = c.get<int64_t>("training.teacher_steps", o.teacher_steps);
  if (o.teacher_steps < 1) throw c.invalid("training.teacher_steps", ">= 1");
  o.t_post_train = c.choice("training.t_post_train", "none", {"none", "teacher"}) == "none" ? TrainTPost::kNone
                                                                                             : TrainTPost::kTeacher;
  o.checkpoint_every = c.get<int64_t>("training.checkpoint_every", o.checkpoint_every);
  if (o.checkpoint_every < 0) throw c.invalid("training.checkpoint_every", ">= 0 (0 = only at the end)");
  o.keep_checkpoints = c.get<int64_t>("training.keep_checkpoints", o.keep_checkpoints);
  if (o.keep_checkpoints < 1) throw c.invalid("training.keep_checkpoints", ">= 1");
  o.log_every = c.get<int64_t>("training.log_every", o.log_every);
  if (o.log_every < 1) throw c.invalid("training.log_every", ">= 1");
  o.sample_every = c.get<int64_t>("training.sample_every", o.sample_every);
  if (o.sample_every < 0) throw c.invalid("training.sample_every", ">= 0 (0 = no sample grids)");
  o.sample_images = c.get<int64_t>("training.sample_images", o.sample_images);
  if (o.sample_images < 1) throw c.invalid("training.sample_images", ">= 1");
  o.sample_steps = c.get<int64_t>("training.sample_steps", o.sample_steps);
  if (o.sample_steps < 1) throw c.invalid("training.sample_steps", ">= 1");
  o.sample_guidance = c.get<double>("training.sample_guidance", o.sample_guidance);
  const int64_t seed = c.get<int64_t>("training.seed", 0);
  if (seed < 0) throw c.invalid("training.seed", ">= 0");
  o.seed = static_cast<uint64_t>(seed);
  o.precision = c.choice("training.precision", o.precision, {"float32", "bf16"});
  o.activation_checkpointing = c.get<bool>("training.activation_checkpointing", o.activation_checkpointing);
  o.collective_timeout_s = c.get<double>("training.collective_timeout_s", o.collective_timeout_s);
  if (!(o.collective_timeout_s > 0)) throw c.invalid("training.collective_timeout_s", "> 0");
  return o;
}

Json training_options_to_json(const TrainingOptions& o) {
  return Json{{"mode", o.mode == TrainingMode::kIlf ? "ilf" : "pretrain"},
              {"device", o.device},
              {"lr", o.lr},
              {"betas", {o.betas[0], o.betas[1]}},
              {"weight_decay", o.weight_decay},
              {"adam_eps", o.adam_eps},
              {"warmup_steps", o.warmup_steps},
              {"grad_clip", o.grad_clip},
              {"batch_size", o.batch_size},
              {"grad_accum", o.grad_accum},
              {"steps", o.steps},
              {"ema_decay", o.ema_decay},
              {"t_ratio", o.t_ratio},
              {"w_rec", o.w_rec},
              {"w_dist", o.w_dist},
              {"cond_dropout", o.cond_dropout},
              {"teacher", o.teacher == TeacherKind::kFad ? "fad" : "multistep"},
              {"teacher_steps", o.teacher_steps},
              {"t_post_train", o.t_post_train == TrainTPost::kNone ? "none" : "teacher"},
              {"checkpoint_every", o.checkpoint_every},
              {"keep_checkpoints", o.keep_checkpoints},
              {"log_every", o.log_every},
              {"sample_every", o.sample_every},
              {"sample_images", o.sample_images},
              {"sample_steps", o.sample_steps},
              {"sample_guidance", o.sample_guidance},
              {"seed", static_cast<int64_t>(o.seed)},
              {"precision", o.precision},
              {"activation_checkpointing", o.activation_checkpointing},
              {"collective_timeout_s", o.collective_timeout_s}};
}

torch::Device training_device(const TrainingOptions& options, int64_t local_rank) {
  if (options.device == "cuda" || (options.device == "auto" && torch::cuda::is_available())) {
    if (!torch::cuda::is_available()) throw Error("training.device is \"cuda\" but no CUDA device is available");
    return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
  }
  return torch::Device(torch::kCPU);
}

double learning_rate_at(const TrainingOptions& options, int64_t step) {
  if (options.warmup_steps <= 0) return options.lr;
  return options.lr * std::min(1.0, static_cast<double>(step + 1) / static_cast<double>(options.warmup_steps));
}

}  // namespace ilf
