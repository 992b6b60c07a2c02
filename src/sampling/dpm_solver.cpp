// DPM-Solver++(2M) as diffusers' DPMSolverMultistepScheduler computes it (see
// include/ilf/sampling/dpm_solver.h). Timesteps follow numpy's linspace/arange + round-half-even in
// float64, sigmas are float32 table entries, and every coefficient is rounded to float32 in the same
// order as the reference's 0-dim float32 tensors.
#include "ilf/sampling/dpm_solver.h"

#include <cmath>

#include "float32_math.h"
#include "ilf/error.h"
#include "solver_checks.h"

namespace ilf {
namespace {

// diffusers' integer timesteps for `n` steps over `num_train` training timesteps, decreasing.
std::vector<int64_t> dpm_timesteps(TimestepSpacing spacing, int64_t n, int64_t num_train, int64_t steps_offset) {
  std::vector<int64_t> timesteps(n);
  switch (spacing) {
    case TimestepSpacing::kLinspace: {
      // round(linspace(0, T - 1, n + 1))[::-1][:-1]; numpy's linspace is i * step with the end point exact.
      const double stop = static_cast<double>(num_train - 1);
      const double step = stop / static_cast<double>(n);
      for (int64_t k = 0; k < n; ++k) {
        const int64_t i = n - k;  // index into the ascending linspace
        timesteps[k] = detail::round_half_even(i == n ? stop : static_cast<double>(i) * step);
      }
      break;
    }
    case TimestepSpacing::kLeading: {
      // arange(0, n + 1) * (T // (n + 1)), reversed, without the final 0, plus steps_offset.
      const int64_t ratio = num_train / (n + 1);
      for (int64_t k = 0; k < n; ++k) timesteps[k] = (n - k) * ratio + steps_offset;
      break;
    }
    case TimestepSpacing::kTrailing: {
      // round(arange(T, 0, -T / n)) - 1. numpy fills arange as start + i * ((start + step) - start).
      // For some n (61, 103, ...) numpy's float arange yields an extra element that becomes timestep
      // -1; we keep exactly n steps instead.
      const double start = static_cast<double>(num_train);
      const double delta = (start - start / static_cast<double>(n)) - start;
      for (int64_t k = 0; k < n; ++k) timesteps[k] = detail::round_half_even(start + static_cast<double>(k) * delta) - 1;
      break;
    }
  }
  return timesteps;
}

}  // namespace

void DPMSolverOptions::validate() const {
  schedule.validate();
  if (solver_order != 1 && solver_order != 2)
    throw Error("dpmpp2m: solver_order must be 1 or 2 (got " + std::to_string(solver_order) + ")");
  if (final_sigmas_type != "zero" && final_sigmas_type != "sigma_min")
    throw Error("dpmpp2m: final_sigmas_type must be one of zero, sigma_min (got \"" + final_sigmas_type + "\")");
  if (steps_offset < 0) throw Error("dpmpp2m: steps_offset must be >= 0 (got " + std::to_string(steps_offset) + ")");
}

DPMSolverMultistep::DPMSolverMultistep() : DPMSolverMultistep(DPMSolverOptions{}) {}

DPMSolverMultistep::DPMSolverMultistep(const DPMSolverOptions& options) : options_(options) {
  options_.validate();
  schedule_ = NoiseSchedule::create(options_.schedule);
}

void DPMSolverMultistep::set_timesteps(int64_t num_steps) {
  const int64_t num_train = schedule_.num_train_timesteps();
  if (num_steps < 1) throw Error("dpmpp2m: the number of steps must be >= 1 (got " + std::to_string(num_steps) + ")");
  if (num_steps > num_train)
    throw Error("dpmpp2m: the number of steps (" + std::to_string(num_steps) +
                ") cannot exceed the training timesteps (" + std::to_string(num_train) + ")");
  std::vector<int64_t> timesteps = dpm_timesteps(options_.timestep_spacing, num_steps, num_train, options_.steps_offset);
  for (size_t k = 0; k < timesteps.size(); ++k) {
    if (timesteps[k] < 0 || timesteps[k] >= num_train)
      throw Error("dpmpp2m: timestep " + std::to_string(timesteps[k]) + " (steps_offset " +
                  std::to_string(options_.steps_offset) + ") lies outside the training range [0, " +
                  std::to_string(num_train) + ")");
    if (k > 0 && timesteps[k] >= timesteps[k - 1])
      throw Error("dpmpp2m: " + std::to_string(num_steps) + " steps with timestep_spacing " +
                  to_string(options_.timestep_spacing) + " give repeated timesteps (" +
                  std::to_string(timesteps[k - 1]) + ", " + std::to_string(timesteps[k]) + "); use fewer steps");
  }

  // Sigmas: the float32 table at the integer timesteps (np.interp at integers returns the table
  // entries exactly), then the final sigma.
  const torch::Tensor table = schedule_.sigmas().contiguous();  // (T,) float32
  const float* table_data = table.data_ptr<float>();
  std::vector<float> sigmas;
  for (const int64_t t : timesteps) sigmas.push_back(table_data[t]);
  sigmas.push_back(options_.final_sigmas_type == "zero" ? 0.0f : table_data[0]);

  // alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma * alpha_t, lambda = log(alpha_t) - log(sigma_t).
  const size_t boundaries = sigmas.size();
  std::vector<float> alpha(boundaries), sigma_t(boundaries);
  for (size_t i = 0; i < boundaries; ++i) {
    alpha[i] = 1.0f / std::sqrt(sigmas[i] * sigmas[i] + 1.0f);
    sigma_t[i] = sigmas[i] * alpha[i];
  }
  const std::vector<float> log_alpha = detail::float32_log(alpha);
  const std::vector<float> log_sigma = detail::float32_log(sigma_t);  // -inf where sigma = 0
  std::vector<float> lambda(boundaries);
  for (size_t i = 0; i < boundaries; ++i) lambda[i] = log_alpha[i] - log_sigma[i];  // +inf where sigma = 0
  std::vector<float> neg_h(num_steps);
  for (int64_t k = 0; k < num_steps; ++k) neg_h[k] = -(lambda[k + 1] - lambda[k]);
  std::vector<float> exp_neg_h = detail::float32_exp(neg_h);
  for (float& v : exp_neg_h) v = v - 1.0f;

  timesteps_ = std::move(timesteps);
  sigmas_ = std::move(sigmas);
  alpha_ = std::move(alpha);
  sigma_t_ = std::move(sigma_t);
  lambda_ = std::move(lambda);
  exp_neg_h_minus_1_ = std::move(exp_neg_h);
  x0_history_[0] = torch::Tensor();
  x0_history_[1] = torch::Tensor();
  lower_order_nums_ = 0;
  step_index_ = 0;
}

std::vector<double> DPMSolverMultistep::timesteps() const { return {timesteps_.begin(), timesteps_.end()}; }

std::vector<double> DPMSolverMultistep::sigmas() const { return {sigmas_.begin(), sigmas_.end()}; }

int64_t DPMSolverMultistep::next_step_order() const {
  const int64_t n = num_steps();
  const bool last = step_index_ == n - 1;
  // diffusers: the final step is first order with euler_at_final, with lower_order_final below 15
  // steps, and always when the final sigma is zero (lambda = +inf there).
  const bool lower_order_final = last && (options_.euler_at_final || (options_.lower_order_final && n < 15) ||
                                          options_.final_sigmas_type == "zero");
  if (options_.solver_order == 1 || lower_order_nums_ < 1 || lower_order_final) return 1;
  return 2;
}

torch::Tensor DPMSolverMultistep::step(const torch::Tensor& model_output, const torch::Tensor& sample) {
  detail::check_step_arguments("dpmpp2m", !timesteps_.empty(), step_index_, num_steps(), model_output, sample);
  const int64_t k = step_index_;
  const int64_t order = next_step_order();
  const torch::Tensor x = sample.to(torch::kFloat32);    // (B, C, H, W)
  const torch::Tensor eps = model_output.to(torch::kFloat32);

  // Data prediction at the current boundary: x0 = (x - sigma_t eps) / alpha_t.
  x0_history_[0] = x0_history_[1];
  x0_history_[1] = (x - eps * sigma_t_[k]) / alpha_[k];
  const torch::Tensor& m0 = x0_history_[1];

  const float sigma_ratio = sigma_t_[k + 1] / sigma_t_[k];
  const float c0 = alpha_[k + 1] * exp_neg_h_minus_1_[k];  // alpha_t (e^-h - 1)
  torch::Tensor prev;
  if (order == 1) {
    prev = x * sigma_ratio - m0 * c0;
  } else {
    // 2M midpoint: r0 = h_0 / h, D1 = (m0 - m1) / r0.
    const torch::Tensor& m1 = x0_history_[0];
    const float h = lambda_[k + 1] - lambda_[k];
    const float h_0 = lambda_[k] - lambda_[k - 1];
    const float r0 = h_0 / h;
    const torch::Tensor d1 = (m0 - m1) * (1.0f / r0);
    prev = x * sigma_ratio - m0 * c0 - d1 * (0.5f * c0);
  }
  if (lower_order_nums_ < options_.solver_order) ++lower_order_nums_;
  ++step_index_;
  return prev.to(sample.scalar_type());
}

}  // namespace ilf
