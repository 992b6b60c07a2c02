// Internal helpers shared by the solvers (DDIM, DPM-Solver++(2M), the official PixArt DPM-Solver):
// numpy's rounding of spaced timesteps and the argument checks of every step() call.
#pragma once
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "ilf/error.h"

namespace ilf::detail {

// numpy's round(): half to even (the default floating-point rounding mode).
inline int64_t round_half_even(double value) { return static_cast<int64_t>(std::nearbyint(value)); }

// Throws ilf::Error naming the solver when step() comes before set_timesteps(), after the last step,
// or with a model output whose shape is not the sample's.
inline void check_step_arguments(const std::string& solver, bool has_timesteps, int64_t step_index, int64_t num_steps,
                                 const torch::Tensor& model_output, const torch::Tensor& sample) {
  if (!has_timesteps) throw Error(solver + ": step() called before set_timesteps()");
  if (step_index >= num_steps)
    throw Error(solver + ": all " + std::to_string(num_steps) + " steps are done; call set_timesteps() again");
  if (model_output.sizes() != sample.sizes())
    throw Error(solver + ": model_output " + c10::str(model_output.sizes()) + " and sample " + c10::str(sample.sizes()) +
                " differ in shape (pass only the eps channels)");
}

// Throws ilf::Error naming the solver when step k does not exist (before set_timesteps() or out of range).
inline void check_step_index(const std::string& solver, int64_t k, int64_t num_steps) {
  if (k < 0 || k >= num_steps)
    throw Error(solver + ": step " + std::to_string(k) + " does not exist (" + std::to_string(num_steps) +
                " steps set; call set_timesteps() first)");
}

}  // namespace ilf::detail
