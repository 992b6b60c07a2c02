// Learning-to-Cache (see include/ilf/accel/l2c.h).
#include "ilf/accel/l2c.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "ilf/error.h"
#include "ilf/io/safetensors.h"

namespace ilf {

std::vector<std::vector<bool>> l2c_schedule(const torch::Tensor& logits, double budget) {
  const int64_t steps = logits.size(0), depth = logits.size(1);
  std::vector<std::vector<bool>> reuse(static_cast<size_t>(steps), std::vector<bool>(static_cast<size_t>(depth), false));
  const auto target = static_cast<int64_t>(std::llround(budget * static_cast<double>(steps * depth)));
  const int64_t to_reuse = std::clamp<int64_t>(steps * depth - target, 0, (steps - 1) * depth);
  const torch::Tensor l = logits.to(torch::kFloat64).contiguous();
  const auto acc = l.accessor<double, 2>();
  std::vector<std::pair<int64_t, int64_t>> pairs;  // (k, j), k >= 1
  for (int64_t k = 1; k < steps; ++k)
    for (int64_t j = 0; j < depth; ++j) pairs.emplace_back(k, j);
  std::stable_sort(pairs.begin(), pairs.end(),
                   [&](const auto& a, const auto& b) { return acc[a.first][a.second] < acc[b.first][b.second]; });
  for (int64_t i = 0; i < to_reuse; ++i) {
    const auto& [k, j] = pairs[static_cast<size_t>(i)];
    reuse[static_cast<size_t>(k)][static_cast<size_t>(j)] = true;
  }
  return reuse;
}

MethodSettingsPtr parse_l2c_settings(ConfigReader& r) {
  auto s = std::make_shared<L2CSettings>();
  s->budget = r.get<double>("l2c.budget", s->budget);
  if (!(s->budget > 0 && s->budget <= 1))
    throw r.invalid("l2c.budget", "a fraction in (0, 1] of the plain sampler's block forwards");
  s->sparsity = r.get<double>("l2c.sparsity", s->sparsity);
  if (!(s->sparsity >= 0) || !std::isfinite(s->sparsity)) throw r.invalid("l2c.sparsity", "a number >= 0");
  s->router = r.file_path("l2c.router");
  if (s->router.empty()) return s;  // training writes one; sampling checks for it (validate)
  SafetensorsFile f;
  try {
    f = read_safetensors(s->router);
    require_finite_tensors(f.tensors, s->router);
  } catch (const Error& e) {
    throw r.invalid("l2c.router", std::string("a router file written by ilf_train --set training.mode=l2c (") + e.what() + ")");
  }
  const auto format = f.metadata.find("format");
  if (format == f.metadata.end() || format->second != "ilf.l2c_router")
    throw Error(s->router + ": not a Learning-to-Cache router (metadata \"format\" must be \"ilf.l2c_router\")");
  s->logits = require_tensor(f.tensors, "router_logits", s->router).to(torch::kFloat32);
  if (s->logits.dim() != 2 || s->logits.size(0) < 1 || s->logits.size(1) < 1 || !torch::isfinite(s->logits).all().item<bool>())
    throw Error(s->router + ": \"router_logits\" must be a finite (steps, depth) tensor");
  s->reuse = l2c_schedule(s->logits, s->budget);
  return s;
}

nlohmann::json L2CMethod::settings() const { return {{"router", settings_.router}, {"budget", settings_.budget}}; }

void L2CMethod::validate(int64_t depth, int64_t num_steps) const {
  if (!settings_.logits.defined())
    throw Error("sampling method l2c needs \"l2c.router\" (train one with ilf_train --set training.mode=l2c)");
  if (settings_.logits.size(0) != num_steps || settings_.logits.size(1) != depth)
    throw Error("l2c.router " + settings_.router + ": trained for " + std::to_string(settings_.logits.size(0)) + " steps of a " +
                std::to_string(settings_.logits.size(1)) + "-block backbone; this run samples " + std::to_string(num_steps) +
                " steps of " + std::to_string(depth) + " blocks (set sampling.steps to match)");
}

StepAction L2CMethod::plan_step(const StepInfo& step) const {
  StepAction a;
  a.t_post = step.timestep();
  a.block_forwards = step.depth;
  if (!settings_.reuse.empty() && step.index < static_cast<int64_t>(settings_.reuse.size())) {
    const auto& row = settings_.reuse[static_cast<size_t>(step.index)];
    for (int64_t j = 0; j < step.depth && j < static_cast<int64_t>(row.size()); ++j)
      if (row[static_cast<size_t>(j)]) a.reused_blocks.push_back(j);
  }
  if (!a.reused_blocks.empty()) {
    a.kind = "reuse";
    a.block_forwards -= static_cast<int64_t>(a.reused_blocks.size());
    a.extra_work = "one add per reused block";
  }
  return a;
}

torch::Tensor L2CMethod::forward(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t,
                                 const ConditionInputs& inputs, const StepInfo& step, StepAction& action) {
  const int64_t depth = runner.backbone().depth();
  if (residuals_.empty()) residuals_.assign(static_cast<size_t>(depth), torch::Tensor());
  std::vector<bool> reused(static_cast<size_t>(depth), false);
  for (int64_t j : action.reused_blocks) {
    if (!residuals_[static_cast<size_t>(j)].defined())
      throw Error("l2c: step " + std::to_string(step.index) + " reuses block " + std::to_string(j) + " before computing it");
    reused[static_cast<size_t>(j)] = true;
  }
  BlockResiduals computed;
  const torch::Tensor out = forward_with_residuals(
      runner, x, t, inputs,
      [&](int64_t j) { return reused[static_cast<size_t>(j)] ? residuals_[static_cast<size_t>(j)] : torch::Tensor(); },
      &computed);
  for (size_t j = 0; j < computed.size(); ++j)
    if (computed[j].defined()) residuals_[j] = computed[j];
  return out;
}

}  // namespace ilf
