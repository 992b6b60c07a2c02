// TaylorSeer (see include/ilf/accel/taylorseer.h).
#include "ilf/accel/taylorseer.h"

#include "ilf/error.h"

namespace ilf {

MethodSettingsPtr parse_taylorseer_settings(ConfigReader& r) {
  auto s = std::make_shared<TaylorSeerSettings>();
  s->interval = r.get<int64_t>("taylorseer.interval", s->interval);
  s->order = r.get<int64_t>("taylorseer.order", s->order);
  if (s->interval < 1) throw r.invalid("taylorseer.interval", "an integer >= 1 (1 = compute every step)");
  if (s->order < 1 || s->order > 2) throw r.invalid("taylorseer.order", "1 or 2 (the order of the Taylor expansion)");
  return s;
}

void TaylorForecaster::update(int64_t step, const torch::Tensor& value) {
  if (terms_.empty()) {
    terms_ = {value};
  } else {
    if (step <= last_step_) throw Error("TaylorForecaster: updates must come at increasing steps");
    const double dt = static_cast<double>(step - last_step_);
    std::vector<torch::Tensor> next = {value};
    for (size_t i = 0; i < terms_.size() && static_cast<int64_t>(i) < order_; ++i)
      next.push_back((next[i] - terms_[i]) / dt);  // backward difference of the i-th term
    terms_ = std::move(next);
  }
  last_step_ = step;
}

torch::Tensor TaylorForecaster::predict(int64_t step) const {
  if (terms_.empty()) throw Error("TaylorForecaster: no value to forecast from");
  const double d = static_cast<double>(step - last_step_);
  torch::Tensor f = terms_[0];
  double factor = 1;
  for (size_t i = 1; i < terms_.size(); ++i) {
    factor *= d / static_cast<double>(i);  // d^i / i!
    f = f + terms_[i] * factor;
  }
  return f;
}

StepAction TaylorSeerMethod::plan_step(const StepInfo& step) const {
  StepAction a;
  a.t_post = step.timestep();
  a.block_forwards = step.depth;
  if (step.index % settings_.interval != 0) {
    a.kind = "forecast";
    for (int64_t j = 0; j < step.depth; ++j) a.reused_blocks.push_back(j);
    a.block_forwards = 0;
    a.extra_work = "order + 1 elementwise multiply-adds per block";
  }
  return a;
}

torch::Tensor TaylorSeerMethod::forward(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t,
                                        const ConditionInputs& inputs, const StepInfo& step, StepAction& action) {
  const auto depth = static_cast<size_t>(runner.backbone().depth());
  if (forecasters_.empty()) forecasters_.assign(depth, TaylorForecaster(settings_.order));
  if (action.reused_blocks.empty()) {
    BlockResiduals residuals;
    torch::Tensor out = forward_with_residuals(runner, x, t, inputs, nullptr, &residuals);
    for (size_t j = 0; j < depth; ++j) forecasters_[j].update(step.index, residuals[j]);
    return out;
  }
  if (forecasters_[0].empty()) throw Error("taylorseer: step " + std::to_string(step.index) + " forecasts before any full step");
  return forward_with_residuals(runner, x, t, inputs,
                                [&](int64_t j) { return forecasters_[static_cast<size_t>(j)].predict(step.index); });
}

}  // namespace ilf
