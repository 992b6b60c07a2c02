// What DDIM and the two DPM-Solvers share: every step is a row of a table built by set_timesteps()
// (the step's kind, its model time and its float32 coefficients), so the step plumbing is one piece of
// code: step_tensors() reads the table, step() is update() on the current row plus the step index and
// the data-prediction history, and the argument checks name the solver. The table is copied to a device
// once (per set_timesteps() and device) and step_tensors() returns views of that copy, so a CUDA step
// makes no host-to-device copy (docs/design.md, "Solvers"). A solver derives this, builds its table in
// set_timesteps() and implements update().
#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <optional>
#include <vector>

#include "ilf/sampling/solver.h"

namespace ilf {

class TabulatedSolver : public Solver {
 public:
  int64_t num_steps() const override { return static_cast<int64_t>(kinds_.size()); }
  // The table's model times (float32 values, as doubles).
  std::vector<double> timesteps() const override { return {model_times_.begin(), model_times_.end()}; }
  torch::Tensor step(const torch::Tensor& model_output, const torch::Tensor& sample) override;
  int64_t step_index() const override { return step_index_; }
  // Views of row k of the table on `device`: read-only (they alias the table). The table is copied to
  // `device` on the first call for that device after set_timesteps(); a call for another device copies
  // it there instead.
  SolverStep step_tensors(int64_t k, const torch::Device& device) const override;

  // The data prediction x0 of the latest step (float32; undefined before one).
  const torch::Tensor& x0_prediction() const { return x0_history_[1]; }

 protected:
  // Installs the table of a fresh run: each step's kind (N,), model time (N,) and coefficients (N, K)
  // float32; resets the step index and the history. A device copy of an equal table is kept (a CUDA
  // graph captured over the sampling loop keeps reading valid tables when set_timesteps() repeats).
  void set_step_table(std::vector<int64_t> kinds, std::vector<float> model_times, torch::Tensor coefficients);
  // The kind of the step step() does next (the last step's once all are done; `unset` before set_timesteps()).
  int64_t next_step_kind(int64_t unset) const { return kinds_.empty() ? unset : kinds_[std::min(step_index_, num_steps() - 1)]; }

 private:
  std::vector<int64_t> kinds_;      // (N,)
  std::vector<float> model_times_;  // (N,)
  torch::Tensor timestep_table_;    // (N,) float32, on the host
  torch::Tensor coefficients_;      // (N, K) float32, on the host
  // The table on the device of the latest step_tensors() call: one copy per set_timesteps() and device.
  mutable std::optional<torch::Device> table_device_;
  mutable torch::Tensor device_timesteps_, device_coefficients_;
  torch::Tensor x0_history_[2];  // [previous, latest] data predictions
  int64_t step_index_ = 0;
};

// DPM-Solver++ multistep over a table (diffusers' DPMSolverMultistepScheduler and the official PixArt
// DPM-Solver): kind = the step's order (1 or 2); coefficients (6,): sigma_t, alpha_t,
// sigma_{t+1} / sigma_t, c0 = alpha_{t+1} (e^-h - 1), 1 / r0 (0 on first-order steps), 0.5 c0.
class TabulatedDPMSolver : public TabulatedSolver {
 public:
  // x0 = (x - sigma_t eps) / alpha_t; x' = (sigma_{t+1} / sigma_t) x - c0 x0, second order also
  // - 0.5 c0 (x0 - previous_x0) / r0. In float32.
  SolverUpdate update(const SolverStep& step, const torch::Tensor& model_output, const torch::Tensor& sample,
                      const torch::Tensor& previous_x0) const override;
  // Solver order the next step() will use (1 or 2).
  int64_t next_step_order() const { return next_step_kind(1); }
};

}  // namespace ilf
