// The block-caching baseline (see include/ilf/ilf/caching.h).
#include "ilf/ilf/caching.h"

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

BlockCache::BlockCache(const CacheOptions& options, int64_t depth) : options_(options), is_cached_(depth, false) {
  options.validate(depth);
  for (int64_t j : options.cached_blocks(depth)) is_cached_[j] = true;
}

torch::Tensor BlockCache::forward(Backbone& backbone, const torch::Tensor& x, const torch::Tensor& t,
                                  const ConditionInputs& inputs, int64_t step, int64_t* block_forwards) {
  const bool full = options_.is_full_step(step);
  torch::Tensor h = backbone.embed(x);  // (B, T, D)
  const Conditioning cond = backbone.condition(t, inputs);
  int64_t ran = 0;
  for (int64_t j = 0; j < backbone.depth(); ++j) {
    if (!full && is_cached_[j]) {
      auto stored = residuals_.find(j);
      if (stored == residuals_.end())
        throw Error("block cache: step " + std::to_string(step) + " reuses block " + std::to_string(j) +
                    " but no full step ran before it (the first step must be a full step)");
      h = h + stored->second;
      continue;
    }
    torch::Tensor out = backbone.block(j, h, cond);
    ++ran;
    if (full && is_cached_[j]) residuals_[j] = out - h;
    h = out;
  }
  if (block_forwards) *block_forwards += ran;
  return backbone.head(h, cond, x.size(2), x.size(3));
}

}  // namespace ilf
