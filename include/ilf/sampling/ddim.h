// DDIM (eta = 0, deterministic) with the semantics of diffusers' DDIMScheduler and epsilon prediction:
// x0 = (x - sqrt(1 - abar_t) eps) / sqrt(abar_t), optionally clipped, then
// x_prev = sqrt(abar_prev) x0 + sqrt(1 - abar_prev) eps with prev = t - T // N.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "ilf/sampling/noise_schedule.h"
#include "ilf/sampling/tabulated_solver.h"

namespace ilf {

struct DDIMOptions {
  NoiseScheduleOptions schedule;
  TimestepSpacing timestep_spacing = TimestepSpacing::kLeading;
  int64_t steps_offset = 0;  // added to "leading" timesteps
  bool clip_sample = true;   // clamp x0 to [-clip_sample_range, clip_sample_range]
  double clip_sample_range = 1.0;
  // abar after the last step (prev < 0): 1 when true (diffusers' default), else abar of timestep 0.
  bool set_alpha_to_one = true;

  // Throws ilf::Error naming the field for impossible values.
  void validate() const;
};

class DDIMSolver : public TabulatedSolver {
 public:
  DDIMSolver();  // default options
  explicit DDIMSolver(const DDIMOptions& options);

  std::string name() const override { return "ddim"; }
  // Throws ilf::Error for num_steps < 1, num_steps > the training timesteps, or settings that give
  // repeated or out-of-range timesteps.
  void set_timesteps(int64_t num_steps) override;
  // sigma(t_k) for each step, then sigma of the abar the last step lands on (0 with set_alpha_to_one).
  std::vector<double> sigmas() const override;
  // Step tensors: kind 0 (one formula); coefficients (4,): sqrt(1 - abar_t), sqrt(abar_t), sqrt(abar_prev),
  // sqrt(1 - abar_prev). The clipping range is an option, the same for every step.
  SolverUpdate update(const SolverStep& step, const torch::Tensor& model_output, const torch::Tensor& sample,
                      const torch::Tensor& previous_x0) const override;

  const std::vector<int64_t>& integer_timesteps() const { return timesteps_; }
  // x0_prediction(): diffusers' pred_original_sample of the latest step (after clipping).
  float final_alpha_cumprod() const { return final_alpha_cumprod_; }

  const DDIMOptions& options() const { return options_; }
  const NoiseSchedule& noise_schedule() const { return schedule_; }

 private:
  // abar of the timestep that step k lands on (t_k - T // N, or the final abar below 0).
  float prev_alpha_cumprod(int64_t k) const;

  DDIMOptions options_;
  NoiseSchedule schedule_;
  std::vector<float> alphas_cumprod_;  // (T,) float32
  float final_alpha_cumprod_ = 1.0f;
  std::vector<int64_t> timesteps_;  // (N,)
};

}  // namespace ilf
