// DDIM (eta = 0) as diffusers' DDIMScheduler computes it (see include/ilf/sampling/ddim.h): integer
// timesteps from numpy-style spacing, float32 alphas_cumprod, coefficients rounded to float32 in the
// reference's order.
#include "ilf/sampling/ddim.h"

#include <cmath>

#include "ilf/error.h"
#include "solver_checks.h"

namespace ilf {
namespace {

// diffusers' DDIM timesteps for `n` steps over `num_train` training timesteps, decreasing.
std::vector<int64_t> ddim_timesteps(TimestepSpacing spacing, int64_t n, int64_t num_train, int64_t steps_offset) {
  std::vector<int64_t> timesteps(n);
  switch (spacing) {
    case TimestepSpacing::kLinspace: {
      // round(linspace(0, T - 1, n))[::-1]: n points (unlike DPM-Solver's n + 1), end point exact.
      const double stop = static_cast<double>(num_train - 1);
      const double step = n > 1 ? stop / static_cast<double>(n - 1) : 0.0;
      for (int64_t k = 0; k < n; ++k) {
        const int64_t i = n - 1 - k;  // index into the ascending linspace
        timesteps[k] =
            (n > 1 && i == n - 1) ? static_cast<int64_t>(stop) : detail::round_half_even(static_cast<double>(i) * step);
      }
      break;
    }
    case TimestepSpacing::kLeading: {
      // arange(0, n) * (T // n), reversed, plus steps_offset.
      const int64_t ratio = num_train / n;
      for (int64_t k = 0; k < n; ++k) timesteps[k] = (n - 1 - k) * ratio + steps_offset;
      break;
    }
    case TimestepSpacing::kTrailing: {
      // round(arange(T, 0, -T / n)) - 1 with numpy's arange fill start + i * ((start + step) - start);
      // exactly n steps (numpy's float arange adds a timestep -1 for some n, e.g. 61).
      const double start = static_cast<double>(num_train);
      const double delta = (start - start / static_cast<double>(n)) - start;
      for (int64_t k = 0; k < n; ++k) timesteps[k] = detail::round_half_even(start + static_cast<double>(k) * delta) - 1;
      break;
    }
  }
  return timesteps;
}

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
  const int64_t num_train = schedule_.num_train_timesteps();
  if (num_steps < 1) throw Error("ddim: the number of steps must be >= 1 (got " + std::to_string(num_steps) + ")");
  if (num_steps > num_train)
    throw Error("ddim: the number of steps (" + std::to_string(num_steps) + ") cannot exceed the training timesteps (" +
                std::to_string(num_train) + ")");
  std::vector<int64_t> timesteps = ddim_timesteps(options_.timestep_spacing, num_steps, num_train, options_.steps_offset);
  for (size_t k = 0; k < timesteps.size(); ++k) {
    if (timesteps[k] < 0 || timesteps[k] >= num_train)
      throw Error("ddim: timestep " + std::to_string(timesteps[k]) + " (steps_offset " + std::to_string(options_.steps_offset) +
                  ") lies outside the training range [0, " + std::to_string(num_train) + ")");
    if (k > 0 && timesteps[k] >= timesteps[k - 1])
      throw Error("ddim: " + std::to_string(num_steps) + " steps with timestep_spacing " + to_string(options_.timestep_spacing) +
                  " give repeated timesteps; use fewer steps");
  }
  timesteps_ = std::move(timesteps);

  // Per step: sqrt(1 - abar_t), sqrt(abar_t), sqrt(abar_prev), sqrt(1 - abar_prev), in float32.
  std::vector<float> rows, timestep_values;
  for (int64_t k = 0; k < num_steps; ++k) {
    const float alpha_t = alphas_cumprod_[timesteps_[k]];
    const float alpha_prev = prev_alpha_cumprod(k);
    const float beta_t = 1.0f - alpha_t;
    rows.insert(rows.end(), {std::sqrt(beta_t), std::sqrt(alpha_t), std::sqrt(alpha_prev), std::sqrt(1.0f - alpha_prev)});
    timestep_values.push_back(static_cast<float>(timesteps_[k]));  // integers, exact in float32
  }
  coefficients_ = torch::tensor(rows, torch::kFloat32).view({num_steps, 4});
  timestep_table_ = torch::tensor(timestep_values, torch::kFloat32);
  x0_ = torch::Tensor();
  step_index_ = 0;
}

std::vector<double> DDIMSolver::timesteps() const { return {timesteps_.begin(), timesteps_.end()}; }

float DDIMSolver::prev_alpha_cumprod(int64_t k) const {
  // diffusers steps to t - T // N whatever the spacing.
  const int64_t prev = timesteps_[k] - schedule_.num_train_timesteps() / num_steps();
  return prev >= 0 ? alphas_cumprod_[prev] : final_alpha_cumprod_;
}

std::vector<double> DDIMSolver::sigmas() const {
  std::vector<double> sigmas;
  for (const int64_t t : timesteps_) sigmas.push_back(sigma_of(alphas_cumprod_[t]));
  if (!timesteps_.empty()) sigmas.push_back(sigma_of(prev_alpha_cumprod(num_steps() - 1)));
  return sigmas;
}

SolverStep DDIMSolver::step_tensors(int64_t k, const torch::Device& device) const {
  detail::check_step_index("ddim", k, num_steps());
  return {k, 0, timestep_table_[k].to(device), coefficients_[k].to(device)};
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

torch::Tensor DDIMSolver::step(const torch::Tensor& model_output, const torch::Tensor& sample) {
  detail::check_step_arguments("ddim", !timesteps_.empty(), step_index_, num_steps(), model_output, sample);
  const SolverUpdate next = update(step_tensors(step_index_, sample.device()), model_output, sample, x0_);
  x0_ = next.x0;
  ++step_index_;
  return next.sample.to(sample.scalar_type());
}

}  // namespace ilf
