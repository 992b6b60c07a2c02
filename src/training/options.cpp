// Recording and interpreting the "training" options (see include/ilf/training/options.h).
#include "ilf/training/options.h"

#include <algorithm>
#include <vector>

#include "ilf/error.h"
#include "ilf/util/device.h"

namespace ilf {

std::string training_mode_name(TrainingMode mode) {
  switch (mode) {
    case TrainingMode::kIlf: return "ilf";
    case TrainingMode::kPretrain: return "pretrain";
    case TrainingMode::kL2C: return "l2c";
  }
  return "ilf";
}

Json training_options_to_json(const TrainingOptions& o) {
  return Json{{"mode", training_mode_name(o.mode)},
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
              {"distill_guidance", o.distill_guidance},
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
  // The tools' resolution (util/device.h), on this rank's CUDA device.
  const torch::Device device = resolve_device(options.device, "training.device");
  if (device.is_cuda()) return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
  return device;
}

double learning_rate_at(const TrainingOptions& options, int64_t step) {
  if (options.warmup_steps <= 0) return options.lr;
  return options.lr * std::min(1.0, static_cast<double>(step + 1) / static_cast<double>(options.warmup_steps));
}

}  // namespace ilf
