// The step plumbing of the table-driven solvers (see include/ilf/sampling/tabulated_solver.h).
#include "ilf/sampling/tabulated_solver.h"

#include <string>
#include <utility>

#include "dpm_update.h"
#include "ilf/error.h"

namespace ilf {

void TabulatedSolver::set_step_table(std::vector<int64_t> kinds, std::vector<float> model_times, torch::Tensor coefficients) {
  torch::Tensor timestep_table = detail::to_float_tensor(model_times);  // (N,) float32
  const bool same_table = kinds == kinds_ && timestep_table_.defined() && torch::equal(timestep_table, timestep_table_) &&
                          coefficients.sizes() == coefficients_.sizes() && torch::equal(coefficients, coefficients_);
  if (!same_table) {
    table_device_.reset();
    device_timesteps_ = torch::Tensor();
    device_coefficients_ = torch::Tensor();
  }
  kinds_ = std::move(kinds);
  model_times_ = std::move(model_times);
  timestep_table_ = std::move(timestep_table);
  coefficients_ = std::move(coefficients);
  x0_history_[0] = torch::Tensor();
  x0_history_[1] = torch::Tensor();
  step_index_ = 0;
}

SolverStep TabulatedSolver::step_tensors(int64_t k, const torch::Device& device) const {
  if (k < 0 || k >= num_steps())
    throw Error(name() + ": step " + std::to_string(k) + " does not exist (" + std::to_string(num_steps()) +
                " steps set; call set_timesteps() first)");
  if (!table_device_ || *table_device_ != device) {
    // On the host's own device .to() returns the table itself: no copy.
    device_timesteps_ = timestep_table_.to(device);
    device_coefficients_ = coefficients_.to(device);
    table_device_ = device;
  }
  return {k, kinds_[k], device_timesteps_[k], device_coefficients_[k]};
}

torch::Tensor TabulatedSolver::step(const torch::Tensor& model_output, const torch::Tensor& sample) {
  if (num_steps() == 0) throw Error(name() + ": step() called before set_timesteps()");
  if (step_index_ >= num_steps())
    throw Error(name() + ": all " + std::to_string(num_steps()) + " steps are done; call set_timesteps() again");
  if (model_output.sizes() != sample.sizes())
    throw Error(name() + ": model_output " + c10::str(model_output.sizes()) + " and sample " + c10::str(sample.sizes()) +
                " differ in shape (pass only the eps channels)");
  const SolverUpdate next = update(step_tensors(step_index_, sample.device()), model_output, sample, x0_history_[1]);
  x0_history_[0] = x0_history_[1];
  x0_history_[1] = next.x0;
  ++step_index_;
  return next.sample.to(sample.scalar_type());
}

SolverUpdate TabulatedDPMSolver::update(const SolverStep& step, const torch::Tensor& model_output, const torch::Tensor& sample,
                                        const torch::Tensor& previous_x0) const {
  return detail::dpm_update(step, model_output, sample, previous_x0);
}

}  // namespace ilf
