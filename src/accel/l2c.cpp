// Learning-to-Cache (see include/ilf/accel/l2c.h).
#include "ilf/accel/l2c.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "ilf/error.h"
#include "ilf/io/safetensors.h"

namespace ilf {

bool l2c_is_cache_step(int64_t k, int64_t full_every) { return full_every > 1 && k % full_every != 0; }

std::vector<int64_t> l2c_cache_steps(int64_t num_steps, int64_t full_every) {
  std::vector<int64_t> steps;
  for (int64_t k = 0; k < num_steps; ++k)
    if (l2c_is_cache_step(k, full_every)) steps.push_back(k);
  return steps;
}

namespace {

using L2CSchedule = std::vector<std::vector<bool>>;

// The logits as doubles with one row per step of the schedule (full steps: no row), checked against
// the alternation.
std::vector<std::vector<double>> l2c_rows(const torch::Tensor& logits, int64_t num_steps, int64_t full_every) {
  const std::vector<int64_t> cache = l2c_cache_steps(num_steps, full_every);
  if (logits.dim() != 2 || logits.size(0) != static_cast<int64_t>(cache.size()))
    throw Error("l2c: the router has " + std::to_string(logits.dim() == 2 ? logits.size(0) : -1) + " rows; " +
                std::to_string(num_steps) + " steps with a full step every " + std::to_string(full_every) + " have " +
                std::to_string(cache.size()) + " cache steps");
  const torch::Tensor l = logits.to(torch::kFloat64).contiguous();
  const auto acc = l.accessor<double, 2>();
  std::vector<std::vector<double>> rows(static_cast<size_t>(num_steps));
  for (size_t i = 0; i < cache.size(); ++i)
    for (int64_t j = 0; j < logits.size(1); ++j) rows[static_cast<size_t>(cache[i])].push_back(acc[static_cast<int64_t>(i)][j]);
  return rows;
}

// Whether block j may be reused at step k of `reuse`: a cache step whose neighbours do not reuse it
// (the step before must compute it for the reuse to be one step old; the step after must compute it
// because this one does not).
bool l2c_may_reuse(const L2CSchedule& reuse, int64_t k, size_t j, int64_t full_every) {
  const auto steps = static_cast<int64_t>(reuse.size());
  if (!l2c_is_cache_step(k, full_every)) return false;
  if (k > 0 && reuse[static_cast<size_t>(k - 1)][j]) return false;
  if (k + 1 < steps && reuse[static_cast<size_t>(k + 1)][j]) return false;
  return true;
}

}  // namespace

L2CSchedule l2c_threshold_schedule(const torch::Tensor& logits, int64_t num_steps, int64_t full_every, double threshold) {
  const auto rows = l2c_rows(logits, num_steps, full_every);
  const auto depth = static_cast<size_t>(logits.size(1));
  L2CSchedule reuse(static_cast<size_t>(num_steps), std::vector<bool>(depth, false));
  // In step order, so that with consecutive cache steps the earlier one's decision stands.
  for (int64_t k = 0; k < num_steps; ++k)
    for (size_t j = 0; j < depth && l2c_is_cache_step(k, full_every); ++j) {
      const double gate = 1.0 / (1.0 + std::exp(-rows[static_cast<size_t>(k)][j]));
      if (gate <= threshold && l2c_may_reuse(reuse, k, j, full_every)) reuse[static_cast<size_t>(k)][j] = true;
    }
  return reuse;
}

L2CSchedule l2c_budget_schedule(const torch::Tensor& logits, int64_t num_steps, int64_t full_every, double budget) {
  const auto rows = l2c_rows(logits, num_steps, full_every);
  const int64_t depth = logits.size(1), total = num_steps * depth;
  L2CSchedule reuse(static_cast<size_t>(num_steps), std::vector<bool>(static_cast<size_t>(depth), false));
  const auto target = static_cast<int64_t>(std::llround(budget * static_cast<double>(total)));
  const int64_t to_reuse = std::max<int64_t>(total - target, 0);
  std::vector<std::pair<int64_t, int64_t>> pairs;  // (k, j) on cache steps
  for (int64_t k : l2c_cache_steps(num_steps, full_every))
    for (int64_t j = 0; j < depth; ++j) pairs.emplace_back(k, j);
  // A trained router has many logits on the clamp (-5), so ties are common and their order decides
  // the schedule. The later step goes first: the router's loss is an error of the noise prediction,
  // and the image estimate x0 = (x - sigma eps) / alpha scales that error by sigma / alpha, which
  // falls from step to step, so an equally scored reuse costs the image less at a later step. Then
  // the lower block (any fixed order would do).
  std::sort(pairs.begin(), pairs.end(), [&](const auto& a, const auto& b) {
    const double la = rows[static_cast<size_t>(a.first)][static_cast<size_t>(a.second)];
    const double lb = rows[static_cast<size_t>(b.first)][static_cast<size_t>(b.second)];
    if (la != lb) return la < lb;
    if (a.first != b.first) return a.first > b.first;
    return a.second < b.second;
  });
  int64_t reused = 0;
  for (const auto& [k, j] : pairs) {
    if (reused == to_reuse) break;
    if (!l2c_may_reuse(reuse, k, static_cast<size_t>(j), full_every)) continue;
    reuse[static_cast<size_t>(k)][static_cast<size_t>(j)] = true;
    ++reused;
  }
  if (reused < to_reuse)
    throw Error("l2c.budget " + std::to_string(budget) + ": the alternation (a full step every " + std::to_string(full_every) +
                " of " + std::to_string(num_steps) + " steps, a cache at most one step old) reuses at most " +
                std::to_string(reused) + " of " + std::to_string(total) + " block forwards, so the budget is at least " +
                std::to_string(static_cast<double>(total - reused) / static_cast<double>(total)));
  return reuse;
}

MethodSettingsPtr parse_l2c_settings(ConfigReader& r) {
  auto s = std::make_shared<L2CSettings>();
  s->full_every = r.get<int64_t>("l2c.full_every", s->full_every);
  if (s->full_every < 1) throw r.invalid("l2c.full_every", "an integer >= 1 (2 = every other step full, the paper's)");
  if (r.has("l2c.threshold") && r.has("l2c.budget"))
    throw r.invalid("l2c.budget", "unset when l2c.threshold is set (one decision rule: the threshold or the budget)");
  s->threshold = r.get<double>("l2c.threshold", s->threshold);
  if (!(s->threshold >= 0 && s->threshold <= 1))
    throw r.invalid("l2c.threshold", "a gate value in [0, 1] (0 = reuse nothing; the paper's 0.1)");
  s->budget = r.get<double>("l2c.budget", s->budget);
  if (r.has("l2c.budget") && !(s->budget > 0 && s->budget <= 1))
    throw r.invalid("l2c.budget", "a fraction in (0, 1] of the plain sampler's block forwards");
  s->sparsity = r.get<double>("l2c.sparsity", s->sparsity);
  if (!(s->sparsity >= 0) || !std::isfinite(s->sparsity)) throw r.invalid("l2c.sparsity", "a number >= 0");
  s->trajectories = r.get<int64_t>("l2c.trajectories", s->trajectories);
  if (s->trajectories < 1 || s->trajectories > 1000000) throw r.invalid("l2c.trajectories", "an integer from 1 to 1000000");
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
  // Routers of the first recipe routed every step and have no "full_every": their schedules reused
  // caches many steps old, which this method refuses.
  auto metadata_int = [&](const std::string& key) -> int64_t {
    const auto it = f.metadata.find(key);
    if (it == f.metadata.end())
      throw Error(s->router + ": no \"" + key +
                  "\" in the metadata (a router of the older recipe without alternating full steps: train it again with "
                  "ilf_train --set training.mode=l2c)");
    try {
      size_t used = 0;
      const int64_t v = std::stoll(it->second, &used);
      if (used == it->second.size() && v >= 1 && v <= 1000000) return v;
    } catch (const std::exception&) {
    }
    throw Error(s->router + ": metadata \"" + key + "\" must be an integer from 1 to 1000000 (got \"" + it->second + "\")");
  };
  s->steps = metadata_int("steps");
  const int64_t trained_full_every = metadata_int("full_every");
  if (r.has("l2c.full_every") && s->full_every != trained_full_every)
    throw r.invalid("l2c.full_every", "the router's own, " + std::to_string(trained_full_every) +
                                          " (it was trained for that alternation), or unset");
  s->full_every = trained_full_every;
  s->logits = require_tensor(f.tensors, "router_logits", s->router).to(torch::kFloat32);
  if (s->logits.dim() != 2 || s->logits.size(1) < 1 ||
      s->logits.size(0) != static_cast<int64_t>(l2c_cache_steps(s->steps, s->full_every).size()))
    throw Error(s->router + ": \"router_logits\" must be (cache steps, depth), one row per cache step of " +
                std::to_string(s->steps) + " steps with a full step every " + std::to_string(s->full_every));
  if (s->budget > 0) {
    try {
      s->reuse = l2c_budget_schedule(s->logits, s->steps, s->full_every, s->budget);
    } catch (const Error& e) {
      throw r.invalid("l2c.budget", std::string("a budget the router can reach: ") + e.what());
    }
  } else {
    s->reuse = l2c_threshold_schedule(s->logits, s->steps, s->full_every, s->threshold);
  }
  return s;
}

nlohmann::json L2CMethod::settings() const {
  nlohmann::json j = {{"router", settings_.router}, {"full_every", settings_.full_every}};
  if (settings_.budget > 0)
    j["budget"] = settings_.budget;
  else
    j["threshold"] = settings_.threshold;
  return j;
}

void L2CMethod::validate(int64_t depth, int64_t num_steps) const {
  if (!settings_.logits.defined())
    throw Error("sampling method l2c needs \"l2c.router\" (train one with ilf_train --set training.mode=l2c)");
  if (settings_.steps != num_steps || settings_.logits.size(1) != depth)
    throw Error("l2c.router " + settings_.router + ": trained for " + std::to_string(settings_.steps) + " steps of a " +
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
  if (residuals_.empty()) {
    residuals_.assign(static_cast<size_t>(depth), torch::Tensor());
    computed_at_.assign(static_cast<size_t>(depth), -1);
  }
  std::vector<bool> reused(static_cast<size_t>(depth), false);
  for (int64_t j : action.reused_blocks) {
    // The method's defining bound: the router was trained on one-step-old caches only.
    const int64_t at = computed_at_[static_cast<size_t>(j)];
    if (at != step.index - 1)
      throw Error("l2c: step " + std::to_string(step.index) + " would reuse block " + std::to_string(j) + "'s residual " +
                  (at < 0 ? std::string("before computing it") : "from step " + std::to_string(at)) +
                  " (a cache must be the previous step's)");
    reused[static_cast<size_t>(j)] = true;
  }
  BlockResiduals computed;
  const torch::Tensor out = forward_with_residuals(
      runner, x, t, inputs,
      [&](int64_t j) { return reused[static_cast<size_t>(j)] ? residuals_[static_cast<size_t>(j)] : torch::Tensor(); },
      &computed);
  for (size_t j = 0; j < computed.size(); ++j)
    if (computed[j].defined()) {
      residuals_[j] = computed[j];
      computed_at_[j] = step.index;
    }
  return out;
}

}  // namespace ilf
