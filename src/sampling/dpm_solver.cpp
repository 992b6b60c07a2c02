// DPM-Solver++(2M) as diffusers' DPMSolverMultistepScheduler computes it (see
// include/ilf/sampling/dpm_solver.h). Timesteps follow numpy's linspace/arange + round-half-even in
// float64, sigmas are float32 table entries, and every coefficient is rounded to float32 in the same
// order as the reference's 0-dim float32 tensors.
#include "ilf/sampling/dpm_solver.h"

#include <cmath>

#include "dpm_update.h"
#include "float32_math.h"
#include "ilf/error.h"

namespace ilf {

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
  std::vector<int64_t> timesteps = schedule_.spaced_timesteps("dpmpp2m", options_.timestep_spacing,
                                                              SpacingGrid::kWithFinalBoundary, num_steps, options_.steps_offset);

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
  torch::Tensor coefficients = detail::dpm_coefficient_table(orders, sigma_t, alpha, lambda, exp_neg_h);
  set_step_table(std::move(orders), std::move(timestep_values), std::move(coefficients));
  timesteps_ = std::move(timesteps);
  sigmas_ = std::move(sigmas);
}

std::vector<double> DPMSolverMultistep::sigmas() const { return {sigmas_.begin(), sigmas_.end()}; }

}  // namespace ilf
