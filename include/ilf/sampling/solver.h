// The solver interface shared by DPM-Solver++(2M), DDIM and the official PixArt DPM-Solver, in the
// style of diffusers' schedulers: set_timesteps(n), the timesteps fed to the model, the sigmas, and
// step(model_output, sample) -> the previous (less noisy) sample.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace ilf {

class Solver {
 public:
  virtual ~Solver() = default;
  virtual std::string name() const = 0;

  // Prepares a fresh run of `num_steps` steps (resets the step index and the multistep history).
  virtual void set_timesteps(int64_t num_steps) = 0;
  virtual int64_t num_steps() const = 0;

  // The model time of each step, in the training range [0, 1000): integers for diffusers-style
  // solvers, fractional times for the official PixArt DPM-Solver. num_steps() entries, decreasing.
  virtual std::vector<double> timesteps() const = 0;
  // sigma = sqrt((1 - abar) / abar) at each step boundary: num_steps() + 1 entries (the last is the
  // final noise level, 0 for diffusers' final_sigmas_type "zero").
  virtual std::vector<double> sigmas() const = 0;

  // One solver step: the model's eps prediction for `sample` at the current step -> the sample for
  // the next step. Computed in float32 (returned in the sample's dtype). Advances step_index().
  virtual torch::Tensor step(const torch::Tensor& model_output, const torch::Tensor& sample) = 0;
  virtual int64_t step_index() const = 0;

  // Scale of the initial noise x_T ~ N(0, init_noise_sigma^2).
  virtual double init_noise_sigma() const { return 1.0; }
};
using SolverPtr = std::unique_ptr<Solver>;

}  // namespace ilf
