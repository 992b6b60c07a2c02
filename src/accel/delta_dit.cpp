// Delta-DiT (see include/ilf/accel/delta_dit.h).
#include "ilf/accel/delta_dit.h"

#include <cmath>

#include "ilf/error.h"

namespace ilf {

MethodSettingsPtr parse_delta_dit_settings(ConfigReader& r) {
  auto s = std::make_shared<DeltaDitSettings>();
  s->num_blocks = r.get<int64_t>("delta_dit.num_blocks", s->num_blocks);
  s->boundary = r.get<double>("delta_dit.boundary", s->boundary);
  s->interval = r.get<int64_t>("delta_dit.interval", s->interval);
  if (s->num_blocks < 0) throw r.invalid("delta_dit.num_blocks", "an integer >= 0");
  if (!(s->boundary >= 0 && s->boundary <= 1)) throw r.invalid("delta_dit.boundary", "a fraction of the steps in [0, 1]");
  if (s->interval < 1) throw r.invalid("delta_dit.interval", "an integer >= 1 (1 = compute every step)");
  return s;
}

nlohmann::json DeltaDitMethod::settings() const {
  return {{"num_blocks", settings_.num_blocks}, {"boundary", settings_.boundary}, {"interval", settings_.interval}};
}

void DeltaDitMethod::validate(int64_t depth, int64_t num_steps) const {
  if (settings_.num_blocks > depth)
    throw Error("delta_dit.num_blocks must be in [0, " + std::to_string(depth) + "] for a backbone of depth " +
                std::to_string(depth) + " (got " + std::to_string(settings_.num_blocks) + ")");
}

bool DeltaDitMethod::early_stage(int64_t k, int64_t n) const {
  return static_cast<double>(k) < std::round(settings_.boundary * static_cast<double>(n));
}

StepAction DeltaDitMethod::plan_step(const StepInfo& step) const {
  StepAction a;
  a.t_post = step.timestep();
  a.block_forwards = step.depth;
  if (step.index % settings_.interval != 0 && settings_.num_blocks > 0) {
    const bool rear = early_stage(step.index, step.num_steps);
    a.kind = rear ? "reuse rear" : "reuse front";
    const int64_t first = rear ? step.depth - settings_.num_blocks : 0;
    for (int64_t j = first; j < first + settings_.num_blocks; ++j) a.reused_blocks.push_back(j);
    a.block_forwards = step.depth - settings_.num_blocks;
    a.extra_work = "one add (the range's deviation)";
  }
  return a;
}

torch::Tensor DeltaDitMethod::forward(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t,
                                      const ConditionInputs& inputs, const StepInfo& step, StepAction& action) {
  const int64_t depth = runner.backbone().depth(), c = settings_.num_blocks;
  if (action.reused_blocks.empty()) {
    std::vector<torch::Tensor> stream;  // depth + 1 states of the stream
    torch::Tensor out = forward_with_residuals(runner, x, t, inputs, nullptr, nullptr, c > 0 ? &stream : nullptr);
    if (c > 0) {
      rear_deviation_ = stream[static_cast<size_t>(depth)] - stream[static_cast<size_t>(depth - c)];
      front_deviation_ = stream[static_cast<size_t>(c)] - stream[0];
    }
    return out;
  }
  if (!rear_deviation_.defined())
    throw Error("delta_dit: step " + std::to_string(step.index) + " reuses blocks before any full step");
  // The range's deviation is added where the range starts; the range's other blocks add nothing.
  const int64_t first = action.reused_blocks.front(), last = action.reused_blocks.back();
  const torch::Tensor& deviation = first == 0 ? front_deviation_ : rear_deviation_;
  const torch::Tensor zero = torch::zeros_like(deviation);
  return forward_with_residuals(runner, x, t, inputs, [&](int64_t j) -> torch::Tensor {
    if (j < first || j > last) return {};
    return j == first ? deviation : zero;
  });
}

}  // namespace ilf
