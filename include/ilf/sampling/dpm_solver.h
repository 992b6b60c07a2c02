// DPM-Solver++(2M) with the semantics of diffusers' DPMSolverMultistepScheduler (algorithm
// "dpmsolver++", solver type "midpoint", epsilon prediction): integer timesteps, sigmas read from the
// discrete training schedule, data-prediction multistep updates in float32 (docs/design.md, "Solvers").
#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <string>
#include <vector>

#include "ilf/sampling/noise_schedule.h"
#include "ilf/sampling/solver.h"

namespace ilf {

struct DPMSolverOptions {
  NoiseScheduleOptions schedule;
  TimestepSpacing timestep_spacing = TimestepSpacing::kLinspace;
  int64_t steps_offset = 0;  // added to "leading" timesteps
  int64_t solver_order = 2;  // 1 (DPM-Solver++ 1, i.e. DDIM) or 2 (2M)
  // First-order final step below 15 steps (diffusers' "lower_order_final").
  bool lower_order_final = true;
  // Always first-order final step.
  bool euler_at_final = false;
  // Noise level after the last step: "zero" (the last step returns the x0 prediction, and is first
  // order) or "sigma_min" (sigma of training timestep 0).
  std::string final_sigmas_type = "zero";

  // Throws ilf::Error naming the field for impossible values.
  void validate() const;
};

class DPMSolverMultistep : public Solver {
 public:
  DPMSolverMultistep();  // default options
  explicit DPMSolverMultistep(const DPMSolverOptions& options);

  std::string name() const override { return "dpmpp2m"; }
  // Throws ilf::Error for num_steps < 1, num_steps > the training timesteps, or settings that give
  // repeated timesteps.
  void set_timesteps(int64_t num_steps) override;
  int64_t num_steps() const override { return static_cast<int64_t>(timesteps_.size()); }
  std::vector<double> timesteps() const override;
  std::vector<double> sigmas() const override;
  torch::Tensor step(const torch::Tensor& model_output, const torch::Tensor& sample) override;
  int64_t step_index() const override { return step_index_; }
  // kind = the step's order (1 or 2); coefficients (6,): sigma_t, alpha_t, sigma_{t+1} / sigma_t,
  // c0 = alpha_{t+1} (e^-h - 1), 1 / r0 (0 on first-order steps), 0.5 c0.
  SolverStep step_tensors(int64_t k, const torch::Device& device) const override;
  SolverUpdate update(const SolverStep& step, const torch::Tensor& model_output, const torch::Tensor& sample,
                      const torch::Tensor& previous_x0) const override;

  // The integer timesteps (diffusers' `scheduler.timesteps`) and float32 sigmas (`scheduler.sigmas`).
  const std::vector<int64_t>& integer_timesteps() const { return timesteps_; }
  const std::vector<float>& float_sigmas() const { return sigmas_; }
  // The data prediction x0 = (x - sigma_t eps) / alpha_t of the latest step (undefined before one).
  const torch::Tensor& x0_prediction() const { return x0_history_[1]; }
  // Solver order the next step() will use (1 or 2).
  int64_t next_step_order() const { return orders_.empty() ? 1 : orders_[std::min(step_index_, num_steps() - 1)]; }

  const DPMSolverOptions& options() const { return options_; }
  const NoiseSchedule& noise_schedule() const { return schedule_; }

 private:
  DPMSolverOptions options_;
  NoiseSchedule schedule_;
  std::vector<int64_t> timesteps_;  // (N,)
  std::vector<float> sigmas_;       // (N + 1,) float32 as diffusers stores them
  std::vector<int64_t> orders_;     // (N,) the order of each step
  torch::Tensor timestep_table_;    // (N,) float32
  torch::Tensor coefficients_;      // (N, 6) float32, see step_tensors()
  torch::Tensor x0_history_[2];     // [previous, latest] data predictions
  int64_t step_index_ = 0;
};

}  // namespace ilf
