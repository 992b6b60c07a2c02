// DDIM (eta = 0) as diffusers' DDIMScheduler computes it (see include/ilf/sampling/ddim.h): integer
// timesteps from numpy-style spacing, float32 alphas_cumprod, coefficients rounded to float32 in the
// reference's order.
#include "ilf/sampling/ddim.h"

#include <cmath>

#include "ilf/error.h"

namespace ilf {
namespace {

double sigma_of(float alpha_cumprod) { return static_cast<double>(std::sqrt((1.0f - alpha_cumprod) / alpha_cumprod)); }

}  // namespace

void DDIMOptions::validate() const {
  schedule.validate();
  if (steps_offset < 0) throw Error("ddim: steps_offset must be >= 0 (got " + std::to_string(steps_offset) + ")");
  if (!(clip_sample_range > 0))
    throw Error("ddim: clip_sample_range must be > 0 (got " + std::to_string(clip_sample_range) + ")");
}

DDIMSolver::DDIMSolver() : DDIMSolver(DDIMOptions{}) {}

DDIMSolver::DDIMSolver(const DDIMOptions& options) : options_(options) {
  options_.validate();
  schedule_ = NoiseSchedule::create(options_.schedule);
  const torch::Tensor acp = schedule_.alphas_cumprod.contiguous();
  alphas_cumprod_.assign(acp.data_ptr<float>(), acp.data_ptr<float>() + acp.numel());
  final_alpha_cumprod_ = options_.set_alpha_to_one ? 1.0f : alphas_cumprod_[0];
}

void DDIMSolver::set_timesteps(int64_t num_steps) {
  timesteps_ =
      schedule_.spaced_timesteps("ddim", options_.timestep_spacing, SpacingGrid::kOnePerStep, num_steps, options_.steps_offset);
  // Per step: sqrt(1 - abar_t), sqrt(abar_t), sqrt(abar_prev), sqrt(1 - abar_prev), in float32.
  std::vector<float> rows, timestep_values;
  for (int64_t k = 0; k < num_steps; ++k) {
    const float alpha_t = alphas_cumprod_[timesteps_[k]];
    const float alpha_prev = prev_alpha_cumprod(k);
    const float beta_t = 1.0f - alpha_t;
    rows.insert(rows.end(), {std::sqrt(beta_t), std::sqrt(alpha_t), std::sqrt(alpha_prev), std::sqrt(1.0f - alpha_prev)});
    timestep_values.push_back(static_cast<float>(timesteps_[k]));  // integers, exact in float32
  }
  set_step_table(std::vector<int64_t>(num_steps, 0), std::move(timestep_values),
                 torch::tensor(rows, torch::kFloat32).view({num_steps, 4}));
}

float DDIMSolver::prev_alpha_cumprod(int64_t k) const {
  // diffusers steps to t - T // N whatever the spacing.
  const int64_t prev = timesteps_[k] - schedule_.num_train_timesteps() / static_cast<int64_t>(timesteps_.size());
  return prev >= 0 ? alphas_cumprod_[prev] : final_alpha_cumprod_;
}

std::vector<double> DDIMSolver::sigmas() const {
  std::vector<double> sigmas;
  for (const int64_t t : timesteps_) sigmas.push_back(sigma_of(alphas_cumprod_[t]));
  if (!timesteps_.empty()) sigmas.push_back(sigma_of(prev_alpha_cumprod(num_steps() - 1)));
  return sigmas;
}

SolverUpdate DDIMSolver::update(const SolverStep& step, const torch::Tensor& model_output, const torch::Tensor& sample,
                                const torch::Tensor& /*previous_x0*/) const {
  const torch::Tensor& c = step.coefficients;          // (4,)
  const torch::Tensor x = sample.to(torch::kFloat32);  // (B, C, H, W)
  const torch::Tensor eps = model_output.to(torch::kFloat32);
  SolverUpdate out;
  out.x0 = (x - eps * c[0]) / c[1];
  if (options_.clip_sample) out.x0 = out.x0.clamp(-options_.clip_sample_range, options_.clip_sample_range);
  // eta = 0: no noise term, and the direction uses the raw model eps (use_clipped_model_output=False).
  out.sample = out.x0 * c[2] + eps * c[3];
  return out;
}

}  // namespace ilf
