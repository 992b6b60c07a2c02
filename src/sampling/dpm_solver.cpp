// DPM-Solver++(2M) as diffusers' DPMSolverMultistepScheduler computes it (see
// include/ilf/sampling/dpm_solver.h). Timesteps follow numpy's linspace/arange + round-half-even in
// float64, sigmas are float32 table entries, and every coefficient is rounded to float32 in the same
// order as the reference's 0-dim float32 tensors.
#include "ilf/sampling/dpm_solver.h"

#include <cmath>

#include "dpm_update.h"
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
    throw Error("dpmpp2m: the number of steps (" + std::to_string(num_steps) + ") cannot exceed the training timesteps (" +
                std::to_string(num_train) + ")");
  std::vector<int64_t> timesteps = dpm_timesteps(options_.timestep_spacing, num_steps, num_train, options_.steps_offset);
  for (size_t k = 0; k < timesteps.size(); ++k) {
    if (timesteps[k] < 0 || timesteps[k] >= num_train)
      throw Error("dpmpp2m: timestep " + std::to_string(timesteps[k]) + " (steps_offset " +
                  std::to_string(options_.steps_offset) + ") lies outside the training range [0, " + std::to_string(num_train) +
                  ")");
    if (k > 0 && timesteps[k] >= timesteps[k - 1])
      throw Error("dpmpp2m: " + std::to_string(num_steps) + " steps with timestep_spacing " +
                  to_string(options_.timestep_spacing) + " give repeated timesteps (" + std::to_string(timesteps[k - 1]) + ", " +
                  std::to_string(timesteps[k]) + "); use fewer steps");
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

  // diffusers: the first step is first order (no history); so is the final step with euler_at_final,
  // with lower_order_final below 15 steps, and always when the final sigma is zero (lambda = +inf).
  std::vector<int64_t> orders(num_steps, options_.solver_order);
  orders[0] = 1;
  if (options_.euler_at_final || (options_.lower_order_final && num_steps < 15) || options_.final_sigmas_type == "zero")
    orders[num_steps - 1] = 1;

  std::vector<float> timestep_values(timesteps.begin(), timesteps.end());  // integers, exact in float32
  timestep_table_ = detail::to_float_tensor(timestep_values);
  coefficients_ = detail::dpm_coefficient_table(orders, sigma_t, alpha, lambda, exp_neg_h);
  timesteps_ = std::move(timesteps);
  sigmas_ = std::move(sigmas);
  orders_ = std::move(orders);
  x0_history_[0] = torch::Tensor();
  x0_history_[1] = torch::Tensor();
  step_index_ = 0;
}

std::vector<double> DPMSolverMultistep::timesteps() const { return {timesteps_.begin(), timesteps_.end()}; }

std::vector<double> DPMSolverMultistep::sigmas() const { return {sigmas_.begin(), sigmas_.end()}; }

SolverStep DPMSolverMultistep::step_tensors(int64_t k, const torch::Device& device) const {
  detail::check_step_index("dpmpp2m", k, num_steps());
  return {k, orders_[k], timestep_table_[k].to(device), coefficients_[k].to(device)};
}

SolverUpdate DPMSolverMultistep::update(const SolverStep& step, const torch::Tensor& model_output, const torch::Tensor& sample,
                                        const torch::Tensor& previous_x0) const {
  return detail::dpm_update(step, model_output, sample, previous_x0);
}

torch::Tensor DPMSolverMultistep::step(const torch::Tensor& model_output, const torch::Tensor& sample) {
  detail::check_step_arguments("dpmpp2m", !timesteps_.empty(), step_index_, num_steps(), model_output, sample);
  const SolverUpdate next = update(step_tensors(step_index_, sample.device()), model_output, sample, x0_history_[1]);
  x0_history_[0] = x0_history_[1];
  x0_history_[1] = next.x0;
  ++step_index_;
  return next.sample.to(sample.scalar_type());
}

}  // namespace ilf
