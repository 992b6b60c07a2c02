// The block-caching baseline (see include/ilf/accel/cache.h).
#include "ilf/accel/cache.h"

#include <algorithm>

#include "ilf/error.h"

namespace ilf {

CacheLocation parse_cache_location(const std::string& name) {
  if (name == "first") return CacheLocation::kFirst;
  if (name == "last") return CacheLocation::kLast;
  if (name == "outer") return CacheLocation::kOuter;
  if (name == "inner") return CacheLocation::kInner;
  if (name == "alternating") return CacheLocation::kAlternating;
  throw Error("unknown cache location \"" + name + "\" (expected first, last, outer, inner or alternating)");
}

std::string to_string(CacheLocation location) {
  switch (location) {
    case CacheLocation::kFirst: return "first";
    case CacheLocation::kLast: return "last";
    case CacheLocation::kOuter: return "outer";
    case CacheLocation::kInner: return "inner";
    case CacheLocation::kAlternating: return "alternating";
  }
  return "?";
}

std::vector<int64_t> CacheOptions::cached_blocks(int64_t depth) const {
  const int64_t c = num_blocks;
  std::vector<int64_t> blocks;
  switch (location) {
    case CacheLocation::kFirst:
      for (int64_t j = 0; j < c; ++j) blocks.push_back(j);
      break;
    case CacheLocation::kLast:
      for (int64_t j = depth - c; j < depth; ++j) blocks.push_back(j);
      break;
    case CacheLocation::kOuter:
      for (int64_t j = 0; j < c / 2; ++j) blocks.push_back(j);
      for (int64_t j = depth - (c - c / 2); j < depth; ++j) blocks.push_back(j);
      break;
    case CacheLocation::kInner: {
      const int64_t start = (depth - c) / 2;
      for (int64_t j = start; j < start + c; ++j) blocks.push_back(j);
      break;
    }
    case CacheLocation::kAlternating:
      for (int64_t i = 0; i < c; ++i) blocks.push_back(i * depth / c);
      break;
  }
  return blocks;
}

void CacheOptions::validate(int64_t depth) const {
  if (num_blocks < 0 || num_blocks > depth)
    throw Error("cache.num_blocks must be in [0, " + std::to_string(depth) + "] for a backbone of depth " +
                std::to_string(depth) + " (got " + std::to_string(num_blocks) + ")");
  if (interval < 1) throw Error("cache.interval must be >= 1 (got " + std::to_string(interval) + ")");
}

MethodSettingsPtr parse_cache_options(ConfigReader& r) {
  auto o = std::make_shared<CacheOptions>();
  o->location = parse_cache_location(
      r.choice("cache.location", to_string(o->location), {"first", "last", "outer", "inner", "alternating"}));
  o->num_blocks = r.get<int64_t>("cache.num_blocks", o->num_blocks);
  o->interval = r.get<int64_t>("cache.interval", o->interval);
  if (o->num_blocks < 0) throw r.invalid("cache.num_blocks", "an integer >= 0");
  if (o->interval < 1) throw r.invalid("cache.interval", "an integer >= 1");
  return o;
}

nlohmann::json CacheMethod::settings() const {
  return {{"location", to_string(options_.location)}, {"num_blocks", options_.num_blocks}, {"interval", options_.interval}};
}

StepAction CacheMethod::plan_step(const StepInfo& step) const {
  StepAction a;
  a.t_post = step.timestep();
  a.block_forwards = step.depth;
  if (!options_.is_full_step(step.index)) {
    a.kind = "reuse";
    a.reused_blocks = options_.cached_blocks(step.depth);
    a.block_forwards = step.depth - static_cast<int64_t>(a.reused_blocks.size());
    a.extra_work = "one add per reused block";
  }
  return a;
}

torch::Tensor CacheMethod::forward(BlockRunner& runner, const torch::Tensor& x, const torch::Tensor& t,
                                   const ConditionInputs& inputs, const StepInfo& step, StepAction& action) {
  const bool full = action.reused_blocks.empty();
  const int64_t depth = runner.backbone().depth();
  const std::vector<int64_t> cached = options_.cached_blocks(depth);
  std::vector<bool> is_cached(static_cast<size_t>(depth), false);
  for (int64_t j : cached) is_cached[static_cast<size_t>(j)] = true;
  torch::Tensor h = runner.embed(x);  // (B, T, D)
  const Conditioning cond = runner.condition(t, inputs);
  for (int64_t j = 0; j < depth; ++j) {
    if (!full && is_cached[static_cast<size_t>(j)]) {
      auto stored = residuals_.find(j);
      if (stored == residuals_.end())
        throw Error("block cache: step " + std::to_string(step.index) + " reuses block " + std::to_string(j) +
                    " but no full step ran before it (the first step must be a full step)");
      h = h + stored->second;
      continue;
    }
    torch::Tensor out = runner.block(j, h, cond);
    if (full && is_cached[static_cast<size_t>(j)]) residuals_[j] = out - h;
    h = out;
  }
  return runner.head(h, cond, x.size(2), x.size(3));
}

}  // namespace ilf
