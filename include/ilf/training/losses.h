// The training objectives as free functions of explicit inputs (models, schedule, data, noise), apart
// from the Trainer's loop so that each can be read, tested and reused on its own (an evaluation
// script, another trainer) without building a run:
// - the per-sample random draws (t, eps, condition dropout), a function of (seed, sample id) only,
//   so that a step's loss does not depend on how the global batch is split over ranks and
//   micro-batches, and a resumed run repeats an uninterrupted one exactly;
// - condition dropout (the null condition for the dropped samples);
// - the ILF distillation loss: student = inner_loop_forward(x_t, t, t_post) with feedback,
//   loss = w_rec * MSE(student, eps) + w_dist * MSE(student, teacher), with the teacher either the
//   frozen backbone at t' from the same x0 and eps (Fast Approximate Distillation) or after K DDIM
//   steps of the frozen backbone from x_t to t' (the multi-step ablation); optionally distilled after
//   classifier-free guidance (guidance-aware distillation, training.distill_guidance);
// - the pretraining noise-prediction loss MSE(backbone(x_t, t), eps).
// Every prediction is taken on the first in_channels output channels (learned-sigma channels get no
// loss) and compared in float32.
#pragma once
#include <torch/torch.h>

#include <cstdint>

#include "ilf/feedback/feedback.h"
#include "ilf/models/backbone.h"
#include "ilf/sampling/noise_schedule.h"
#include "ilf/training/datasets.h"
#include "ilf/training/options.h"

namespace ilf {

// The loss of one micro-batch.
struct LossTerms {
  torch::Tensor total, rec, dist;  // 0-d; `dist` undefined in pretrain mode
};

// The random draws of one micro-batch, on `device`.
struct TrainingNoise {
  torch::Tensor t;     // (B,) int64 in [0, T)
  torch::Tensor eps;   // (B, C, H, W) float32
  torch::Tensor drop;  // (B,) bool: the sample's condition is replaced by the null condition
};

// Draws t ~ U{0..T-1}, eps ~ N(0, I) and u ~ U[0, 1) (drop = u < cond_dropout), in this order, for
// each sample of `batch` from its own CPU stream seeded by (seed, the sample's id).
TrainingNoise draw_training_noise(const TrainingBatch& batch, uint64_t seed, int64_t num_train_timesteps, double cond_dropout,
                                  const torch::Device& device);

// Replaces the condition of the samples where drop (B,) is true by the backbone's null condition
// (class label, or caption and its mask). Throws ilf::Error when the null caption's shape does not
// match the data's captions.
ConditionInputs drop_condition(const Backbone& backbone, const ConditionInputs& condition, const torch::Tensor& drop);

// model(x, t, cond) on its first in_channels output channels, in float32: the eps prediction.
torch::Tensor predicted_eps(Backbone& model, const torch::Tensor& x, const torch::Tensor& t, const ConditionInputs& cond);

// The noise-prediction (reconstruction) term: MSE(prediction, eps).
torch::Tensor noise_prediction_loss(const torch::Tensor& prediction, const torch::Tensor& eps);

// The teacher time of each sample: t' = floor(t * t_ratio) (computed in float64).
torch::Tensor teacher_timesteps(const torch::Tensor& t, double t_ratio);

// Fast Approximate Distillation's teacher: the frozen backbone's eps at (x_t', t'), x_t' re-noised
// from the same x0 with the same eps. No gradient.
torch::Tensor fad_teacher(Backbone& backbone, const NoiseSchedule& schedule, const torch::Tensor& x0, const torch::Tensor& eps,
                          const torch::Tensor& t_teacher, const ConditionInputs& cond);

// The multi-step teacher: `steps` DDIM steps of the frozen backbone from (x_t, t) to t' at the
// per-sample integer times tau_k = round(t + (t' - t) k / K), then the backbone's eps there. No gradient.
torch::Tensor multistep_teacher(Backbone& backbone, const NoiseSchedule& schedule, const torch::Tensor& x_t,
                                const torch::Tensor& t, const torch::Tensor& t_teacher, const ConditionInputs& cond,
                                int64_t steps);

// The ILF loss (mode "ilf") for x0 (B, C, H, W) on the device, its draws t and eps, and the condition
// after dropout. `student` runs the inner loop with `feedback` (it may be the activation-checkpointing
// wrapper of `teacher`); `teacher` is the plain frozen backbone. Reads t_ratio, t_post_train, teacher,
// teacher_steps, w_rec, w_dist, distill_guidance and precision ("bf16": student and teacher under CUDA
// autocast) from `options`. With distill_guidance g != 1 (FAD teacher only), both models also predict
// for the null condition and dist = MSE of the guided predictions u + g (c - u) on the eps channels.
LossTerms fad_loss(Backbone& student, FeedbackModuleImpl& feedback, Backbone& teacher, const NoiseSchedule& schedule,
                   const torch::Tensor& x0, const torch::Tensor& eps, const torch::Tensor& t, const ConditionInputs& cond,
                   const TrainingOptions& options);

// The pretraining loss (mode "pretrain"): MSE(model(x_t, t), eps) on the eps channels, the forward
// under CUDA autocast when `autocast`. total = rec; dist stays undefined.
LossTerms pretraining_loss(Backbone& model, const NoiseSchedule& schedule, const torch::Tensor& x0, const torch::Tensor& eps,
                           const torch::Tensor& t, const ConditionInputs& cond, bool autocast);

}  // namespace ilf
