// The training losses (see include/ilf/training/losses.h). The order of the random draws and of the
// floating-point operations is part of the contract: recorded runs and the resume tests rely on the
// losses of a step being bit-identical from one build to the next.
#include "ilf/training/losses.h"

#include <vector>

#include "ilf/error.h"
#include "ilf/feedback/inner_loop.h"
#include "ilf/sampling/guidance.h"
#include "ilf/sampling/sampler.h"
#include "ilf/training/torch_compat.h"

namespace ilf {
namespace {

// The seed of the per-sample stream of t, eps and condition dropout (mixed with the run's seed and
// the sample id).
constexpr uint64_t kNoiseStream = 0x6e6f697365ull;

}  // namespace

TrainingNoise draw_training_noise(const TrainingBatch& batch, uint64_t seed, int64_t num_train_timesteps, double cond_dropout,
                                  const torch::Device& device) {
  const int64_t B = batch.x0.size(0);
  const auto sample_shape = batch.x0.sizes().slice(1).vec();
  const int64_t T = num_train_timesteps;
  // Per-sample t, eps and dropout from the sample's own stream: independent of the rank layout.
  std::vector<torch::Tensor> eps_list, t_list, u_list;
  for (int64_t i = 0; i < B; ++i) {
    auto generator = make_cpu_generator(mix_seed(mix_seed(seed, kNoiseStream), static_cast<uint64_t>(batch.sample_ids[i])));
    t_list.push_back(torch::randint(0, T, {1}, generator, torch::kLong));
    eps_list.push_back(torch::randn(sample_shape, generator, torch::kFloat32));
    u_list.push_back(torch::rand({1}, generator, torch::kFloat64));
  }
  TrainingNoise noise;
  noise.t = torch::cat(t_list).to(device);                      // (B,) int64 in [0, T)
  noise.eps = torch::stack(eps_list).to(device);                // (B, C, H, W)
  noise.drop = (torch::cat(u_list) < cond_dropout).to(device);  // (B,) bool
  return noise;
}

ConditionInputs drop_condition(const Backbone& backbone, const ConditionInputs& c, const torch::Tensor& drop) {
  const ConditionInputs null = backbone.null_condition(c);
  ConditionInputs out = c;
  if (c.class_labels.defined()) out.class_labels = torch::where(drop, null.class_labels, c.class_labels);
  if (c.caption.defined()) {
    if (null.caption.sizes() != c.caption.sizes())
      throw Error("condition dropout: the null caption has shape " + c10::str(null.caption.sizes()) +
                  " but the data's captions have shape " + c10::str(c.caption.sizes()));
    std::vector<int64_t> shape(static_cast<size_t>(c.caption.dim()), 1);
    shape[0] = -1;
    out.caption = torch::where(drop.view(shape), null.caption.to(c.caption.dtype()), c.caption);
    const torch::Tensor data_mask = c.caption_mask.defined()
                                        ? c.caption_mask.to(torch::kLong)
                                        : torch::ones(c.caption.sizes().slice(0, 2), drop.options().dtype(torch::kLong));
    // A learned null caption (PixArt-alpha's y_embedding) keeps each sample's own caption mask, as the
    // official training and inference do; a null caption of its own (T5 of "") brings its mask.
    if (!backbone.has_learned_null_condition()) {
      const torch::Tensor null_mask =
          null.caption_mask.defined() ? null.caption_mask.to(torch::kLong).expand_as(data_mask) : torch::ones_like(data_mask);
      out.caption_mask = torch::where(drop.view({-1, 1}), null_mask, data_mask);
    } else {
      out.caption_mask = data_mask;
    }
  }
  return out;
}

torch::Tensor predicted_eps(Backbone& model, const torch::Tensor& x, const torch::Tensor& t, const ConditionInputs& cond) {
  return model.forward(x, t, cond).narrow(1, 0, model.in_channels()).to(torch::kFloat32);
}

torch::Tensor noise_prediction_loss(const torch::Tensor& prediction, const torch::Tensor& eps) {
  return torch::mse_loss(prediction, eps);
}

torch::Tensor teacher_timesteps(const torch::Tensor& t, double t_ratio) {
  return (t.to(torch::kFloat64) * t_ratio).floor().to(torch::kLong);
}

torch::Tensor fad_teacher(Backbone& backbone, const NoiseSchedule& schedule, const torch::Tensor& x0, const torch::Tensor& eps,
                          const torch::Tensor& t_teacher, const ConditionInputs& cond) {
  torch::NoGradGuard no_grad;
  // Re-noise the same x0 with the same eps at t'.
  return predicted_eps(backbone, schedule.add_noise(x0, eps, t_teacher), t_teacher, cond);
}

torch::Tensor multistep_teacher(Backbone& backbone, const NoiseSchedule& schedule, const torch::Tensor& x_t,
                                const torch::Tensor& t, const torch::Tensor& t_teacher, const ConditionInputs& cond,
                                int64_t steps) {
  torch::NoGradGuard no_grad;
  const torch::Tensor abar = schedule.alphas_cumprod.to(x_t.device());  // (T,) float32
  const int64_t K = steps;
  torch::Tensor x = x_t;
  auto time_at = [&](int64_t k) {
    return (t.to(torch::kFloat64) + (t_teacher - t).to(torch::kFloat64) * (static_cast<double>(k) / K)).round().to(torch::kLong);
  };
  for (int64_t k = 0; k < K; ++k) {
    const torch::Tensor tau = time_at(k), tau_next = time_at(k + 1);
    const torch::Tensor e = predicted_eps(backbone, x, tau, cond);
    const torch::Tensor a = abar.index_select(0, tau).view({-1, 1, 1, 1});
    const torch::Tensor a_next = abar.index_select(0, tau_next).view({-1, 1, 1, 1});
    const torch::Tensor x0_pred = (x - (1 - a).sqrt() * e) / a.sqrt();
    x = a_next.sqrt() * x0_pred + (1 - a_next).sqrt() * e;
  }
  return predicted_eps(backbone, x, t_teacher, cond);
}

LossTerms fad_loss(Backbone& student, FeedbackModuleImpl& feedback, Backbone& teacher, const NoiseSchedule& schedule,
                   const torch::Tensor& x0, const torch::Tensor& eps, const torch::Tensor& t, const ConditionInputs& cond,
                   const TrainingOptions& options) {
  const torch::Tensor x_t = schedule.add_noise(x0, eps, t);
  const torch::Tensor t_teacher = teacher_timesteps(t, options.t_ratio);  // (B,)
  const torch::Tensor t_post = options.t_post_train == TrainTPost::kNone ? t : t_teacher;
  // Guidance-aware distillation runs student and teacher on [cond; null] (2B rows) in one batch.
  const bool guided = options.distill_guidance != 1.0;
  if (guided && options.teacher != TeacherKind::kFad)  // the config refuses it too; callers building options directly
    throw Error("training.distill_guidance != 1 needs the FAD teacher (training.teacher = fad), not the multistep one");
  const int64_t B = x0.size(0), C = teacher.in_channels();
  const auto rows = [&](const torch::Tensor& x) { return guided ? torch::cat({x, x}, 0) : x; };
  const ConditionInputs inputs = guided ? concat_conditions(cond, teacher.null_condition(cond)) : cond;
  torch::Tensor student_eps, teacher_eps;  // (B or 2B, C, H, W) float32
  {
    AutocastScope scope(options.precision == "bf16");
    BlockRunner runner(student);  // training reports no cost: the count is not read
    student_eps =
        inner_loop_forward(runner, feedback, rows(x_t), rows(t), rows(t_post), inputs).narrow(1, 0, C).to(torch::kFloat32);
    if (options.teacher == TeacherKind::kFad) {
      // Fast Approximate Distillation: the frozen backbone at t' from the same x0 and eps.
      teacher_eps = fad_teacher(teacher, schedule, rows(x0), rows(eps), rows(t_teacher), inputs);
    } else {
      // Standard distillation: teacher_steps DDIM steps of the frozen backbone from (x_t, t) to t'.
      teacher_eps = multistep_teacher(teacher, schedule, x_t, t, t_teacher, cond, options.teacher_steps);
    }
  }
  LossTerms terms;
  terms.rec = noise_prediction_loss(student_eps.narrow(0, 0, B), eps);  // the conditional prediction
  if (guided) {
    // The guided predictions (the sampler's classifier_free_guidance, first half of its output).
    const torch::Tensor student_guided = classifier_free_guidance(student_eps, options.distill_guidance, C).narrow(0, 0, B);
    const torch::Tensor teacher_guided = classifier_free_guidance(teacher_eps, options.distill_guidance, C).narrow(0, 0, B);
    terms.dist = torch::mse_loss(student_guided, teacher_guided);
  } else {
    terms.dist = torch::mse_loss(student_eps, teacher_eps);
  }
  terms.total = options.w_rec * terms.rec + options.w_dist * terms.dist;
  return terms;
}

LossTerms pretraining_loss(Backbone& model, const NoiseSchedule& schedule, const torch::Tensor& x0, const torch::Tensor& eps,
                           const torch::Tensor& t, const ConditionInputs& cond, bool autocast) {
  const torch::Tensor x_t = schedule.add_noise(x0, eps, t);
  torch::Tensor prediction;
  {
    AutocastScope scope(autocast);
    prediction = predicted_eps(model, x_t, t, cond);
  }
  LossTerms terms;
  terms.rec = noise_prediction_loss(prediction, eps);
  terms.total = terms.rec;
  return terms;
}

}  // namespace ilf
