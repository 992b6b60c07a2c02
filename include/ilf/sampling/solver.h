// The solver interface shared by DPM-Solver++(2M), DDIM and the official PixArt DPM-Solver, in the
// style of diffusers' schedulers: set_timesteps(n), the timesteps fed to the model, the sigmas, and
// step(model_output, sample) -> the previous (less noisy) sample.
//
// Each step is also available as tensors (step_tensors) with the update as a pure function of them
// (update): everything that changes from step to step lives in device tensors, so a CUDA graph
// captured for one step replays every step of the same kind and shape (docs/design.md, "Solvers").
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace ilf {

// One step as tensors. `kind` selects the update formula (the solver order for the DPM-Solvers, 0
// for DDIM); the numbers that change from step to step are float32 tensors on the sample's device.
struct SolverStep {
  int64_t index = 0;
  int64_t kind = 0;
  torch::Tensor timestep;      // () the model time of the step (what timesteps()[index] holds)
  torch::Tensor coefficients;  // (K,) the step's coefficients; each solver documents its columns
};

// What one update produces: the next sample and this step's data prediction x0 (float32).
struct SolverUpdate {
  torch::Tensor sample;  // (B, C, H, W) the sample for the next step
  torch::Tensor x0;      // (B, C, H, W) the data prediction; a multistep solver's history
};

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

  // Step k's kind, timestep and coefficients, as tensors on `device` (after set_timesteps()). They may
  // alias the solver's own tables (TabulatedSolver keeps one copy per device): read, never write them.
  virtual SolverStep step_tensors(int64_t k, const torch::Device& device) const = 0;
  // The update of one step as a pure function of tensors: the model's eps and the sample at the step,
  // and the previous step's data prediction (read only by second-order kinds; may be undefined
  // otherwise). step() is this plus the bookkeeping (step index, history), bit for bit.
  virtual SolverUpdate update(const SolverStep& step, const torch::Tensor& model_output, const torch::Tensor& sample,
                              const torch::Tensor& previous_x0) const = 0;

  // Scale of the initial noise x_T ~ N(0, init_noise_sigma^2).
  virtual double init_noise_sigma() const { return 1.0; }
};
using SolverPtr = std::unique_ptr<Solver>;

}  // namespace ilf
