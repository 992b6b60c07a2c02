// DPM-Solver++(2M) with the semantics of diffusers' DPMSolverMultistepScheduler (algorithm
// "dpmsolver++", solver type "midpoint", epsilon prediction): integer timesteps, sigmas read from the
// discrete training schedule, data-prediction multistep updates in float32 (docs/design.md, "Solvers").
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "ilf/sampling/noise_schedule.h"
#include "ilf/sampling/tabulated_solver.h"

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

class DPMSolverMultistep : public TabulatedDPMSolver {
 public:
  DPMSolverMultistep();  // default options
  explicit DPMSolverMultistep(const DPMSolverOptions& options);

  std::string name() const override { return "dpmpp2m"; }
  // Throws ilf::Error for num_steps < 1, num_steps > the training timesteps, or settings that give
  // repeated timesteps.
  void set_timesteps(int64_t num_steps) override;
  std::vector<double> sigmas() const override;

  // The integer timesteps (diffusers' `scheduler.timesteps`) and float32 sigmas (`scheduler.sigmas`).
  const std::vector<int64_t>& integer_timesteps() const { return timesteps_; }
  const std::vector<float>& float_sigmas() const { return sigmas_; }

  const DPMSolverOptions& options() const { return options_; }
  const NoiseSchedule& noise_schedule() const { return schedule_; }

 private:
  DPMSolverOptions options_;
  NoiseSchedule schedule_;
  std::vector<int64_t> timesteps_;  // (N,)
  std::vector<float> sigmas_;       // (N + 1,) float32 as diffusers stores them
};

}  // namespace ilf
