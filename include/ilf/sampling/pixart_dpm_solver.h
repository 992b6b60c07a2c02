// The official PixArt DPM-Solver (PixArt-alpha `DPMS`: NoiseScheduleVP "discrete" + DPM-Solver++
// multistep, "time_uniform" grid): continuous times t in [1/1000, 1], log(alpha_t) interpolated
// piecewise-linearly from the float64 linear-beta schedule, and fractional model times
// (t - 1/1000) * 1000. It ends at t = 1/1000, not at sigma = 0, and differs from diffusers' DPM++.
#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <string>
#include <vector>

#include "ilf/sampling/solver.h"

namespace ilf {

struct PixArtDPMSolverOptions {
  int64_t solver_order = 2;       // 1 or 2 (multistep)
  bool lower_order_final = true;  // below 10 steps, the last steps drop to order 1

  // Throws ilf::Error naming the field for impossible values.
  void validate() const;
};

class PixArtDPMSolver : public Solver {
 public:
  PixArtDPMSolver();  // default options
  explicit PixArtDPMSolver(const PixArtDPMSolverOptions& options);

  std::string name() const override { return "pixart_dpm"; }
  // Throws ilf::Error for num_steps < 1. One step runs first order (the official code requires
  // steps >= order; here a single step is simply DPM-Solver-1).
  void set_timesteps(int64_t num_steps) override;
  int64_t num_steps() const override { return static_cast<int64_t>(time_grid_.empty() ? 0 : time_grid_.size() - 1); }
  // The model input times (t_k - 1/1000) * 1000 in float32: 999, 949.05, ... for 20 steps.
  std::vector<double> timesteps() const override;
  // sigma_t / alpha_t at the N + 1 grid times (the last is the noise level at t = 1/1000, not 0).
  std::vector<double> sigmas() const override;
  torch::Tensor step(const torch::Tensor& model_output, const torch::Tensor& sample) override;
  int64_t step_index() const override { return step_index_; }
  // kind = the step's order (1 or 2); coefficients (6,): sigma_t, alpha_t, sigma_{t+1} / sigma_t,
  // c0 = alpha_{t+1} expm1(-h), 1 / r0 (0 on first-order steps), 0.5 c0.
  SolverStep step_tensors(int64_t k, const torch::Device& device) const override;
  SolverUpdate update(const SolverStep& step, const torch::Tensor& model_output, const torch::Tensor& sample,
                      const torch::Tensor& previous_x0) const override;

  // The continuous time grid linspace(1, 1/1000, N + 1) in float32.
  const std::vector<float>& time_grid() const { return time_grid_; }
  // NoiseScheduleVP tables: t_array = linspace(0, 1, 1001)[1:] and log(alpha) at those times (float32).
  const torch::Tensor& t_array() const { return t_array_; }
  const torch::Tensor& log_alpha_array() const { return log_alpha_array_; }
  // log(alpha_t) at continuous time t: float32 piecewise-linear interpolation (extrapolated outside).
  float log_alpha_at(float t) const;
  // The data prediction x0 = (x - sigma_t eps) / alpha_t of the latest step (undefined before one).
  const torch::Tensor& x0_prediction() const { return x0_history_[1]; }
  // Solver order the next step() will use (1 or 2).
  int64_t next_step_order() const { return orders_.empty() ? 1 : orders_[std::min(step_index_, num_steps() - 1)]; }

  const PixArtDPMSolverOptions& options() const { return options_; }

 private:
  PixArtDPMSolverOptions options_;
  torch::Tensor t_array_, log_alpha_array_;  // (K,) float32, K = 1000 for the linear schedule
  std::vector<float> t_table_, log_alpha_table_;
  std::vector<float> time_grid_;    // (N + 1,)
  std::vector<float> model_times_;  // (N,) the model input times
  // Per grid time i = 0..N (float32): alpha_i and sigma_i = sqrt(1 - alpha_i^2).
  std::vector<float> alpha_, sigma_;
  std::vector<int64_t> orders_;   // (N,) the order of each step
  torch::Tensor timestep_table_;  // (N,) float32, model_times_
  torch::Tensor coefficients_;    // (N, 6) float32, see step_tensors()
  torch::Tensor x0_history_[2];   // [previous, latest] data predictions
  int64_t step_index_ = 0;
};

}  // namespace ilf
