// The official PixArt DPM-Solver (PixArt-alpha `DPMS`: NoiseScheduleVP "discrete" + DPM-Solver++
// multistep, "time_uniform" grid): continuous times t in [1/1000, 1], log(alpha_t) interpolated
// piecewise-linearly from the float64 linear-beta schedule, and fractional model times
// (t - 1/1000) * 1000. It ends at t = 1/1000, not at sigma = 0, and differs from diffusers' DPM++.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "ilf/sampling/tabulated_solver.h"

namespace ilf {

struct PixArtDPMSolverOptions {
  int64_t solver_order = 2;       // 1 or 2 (multistep)
  bool lower_order_final = true;  // below 10 steps, the last steps drop to order 1

  // Throws ilf::Error naming the field for impossible values.
  void validate() const;
};

class PixArtDPMSolver : public TabulatedDPMSolver {
 public:
  PixArtDPMSolver();  // default options
  explicit PixArtDPMSolver(const PixArtDPMSolverOptions& options);

  std::string name() const override { return "pixart_dpm"; }
  // Throws ilf::Error for num_steps < 1. One step runs first order (the official code requires
  // steps >= order; here a single step is simply DPM-Solver-1).
  // timesteps() are the model input times (t_k - 1/1000) * 1000 in float32: 999, 949.05, ... for 20
  // steps; the step coefficients' c0 is alpha_{t+1} expm1(-h).
  void set_timesteps(int64_t num_steps) override;
  // sigma_t / alpha_t at the N + 1 grid times (the last is the noise level at t = 1/1000, not 0).
  std::vector<double> sigmas() const override;

  // The continuous time grid linspace(1, 1/1000, N + 1) in float32.
  const std::vector<float>& time_grid() const { return time_grid_; }
  // NoiseScheduleVP tables: t_array = linspace(0, 1, 1001)[1:] and log(alpha) at those times (float32).
  const torch::Tensor& t_array() const { return t_array_; }
  const torch::Tensor& log_alpha_array() const { return log_alpha_array_; }
  // log(alpha_t) at continuous time t: float32 piecewise-linear interpolation (extrapolated outside).
  float log_alpha_at(float t) const;

  const PixArtDPMSolverOptions& options() const { return options_; }

 private:
  PixArtDPMSolverOptions options_;
  torch::Tensor t_array_, log_alpha_array_;  // (K,) float32, K = 1000 for the linear schedule
  std::vector<float> t_table_, log_alpha_table_;
  std::vector<float> time_grid_;  // (N + 1,)
  // Per grid time i = 0..N (float32): alpha_i and sigma_i = sqrt(1 - alpha_i^2).
  std::vector<float> alpha_, sigma_;
};

}  // namespace ilf
