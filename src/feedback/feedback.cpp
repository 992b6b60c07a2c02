// The FeedbackModule: construction, weight copy from block e, and its own save/load format
// (see include/ilf/feedback/feedback.h).
#include "ilf/feedback/feedback.h"

#include "ilf/error.h"

namespace ilf {

FeedbackModuleImpl::FeedbackModuleImpl(const Backbone& backbone, const FeedbackOptions& options)
    : options_(options), family_(backbone.family()), hidden_size_(backbone.hidden_size()), depth_(backbone.depth()) {
  const int64_t b = options.loop_begin, e = options.loop_end;
  if (b < 0 || e >= depth_ || b > e) {
    throw Error("inner loop [" + std::to_string(b) + ", " + std::to_string(e) + "] does not fit a backbone of depth " +
                std::to_string(depth_) + ": need 0 <= loop_begin <= loop_end <= " + std::to_string(depth_ - 1));
  }
  block = register_module("block", backbone.make_block());
  if (options.init == FeedbackInit::kCopyLoopEnd) {
    torch::NoGradGuard no_grad;
    const auto source = backbone.block_module(e)->named_parameters(true);
    for (auto& p : block->named_parameters(true)) p.value().copy_(source[p.key()]);
    const auto source_buffers = backbone.block_module(e)->named_buffers(true);
    for (auto& buf : block->named_buffers(true)) buf.value().copy_(source_buffers[buf.key()]);
  }
  // Scales live in float32 even when the backbone runs in reduced precision.
  scales = register_parameter("scales", torch::zeros({loop_size()}, torch::kFloat32));
}

void FeedbackModuleImpl::save(const std::string& path) const {
  TensorMap tensors;
  for (const auto& p : named_parameters(true)) tensors[p.key()] = p.value();
  for (const auto& b : named_buffers(true)) tensors[b.key()] = b.value();
  write_safetensors(path, tensors,
                    {{"format", "ilf.feedback"},
                     {"family", family_},
                     {"hidden_size", std::to_string(hidden_size_)},
                     {"depth", std::to_string(depth_)},
                     {"loop_begin", std::to_string(options_.loop_begin)},
                     {"loop_end", std::to_string(options_.loop_end)}});
}

void FeedbackModuleImpl::load(const std::string& path) {
  const SafetensorsFile file = read_safetensors(path);
  require_finite_tensors(file.tensors, path);
  auto meta = [&](const std::string& key) -> std::string {
    auto it = file.metadata.find(key);
    if (it == file.metadata.end()) throw Error(path + ": not a feedback module file (metadata \"" + key + "\" missing)");
    return it->second;
  };
  if (meta("format") != "ilf.feedback") throw Error(path + ": not a feedback module file (format " + meta("format") + ")");
  auto expect = [&](const std::string& key, const std::string& ours) {
    if (meta(key) != ours)
      throw Error(path + ": made for " + key + " = " + meta(key) + " but this backbone/loop has " + key + " = " + ours);
  };
  expect("family", family_);
  expect("hidden_size", std::to_string(hidden_size_));
  expect("depth", std::to_string(depth_));
  expect("loop_begin", std::to_string(options_.loop_begin));
  expect("loop_end", std::to_string(options_.loop_end));

  torch::NoGradGuard no_grad;
  std::string problems;
  auto assign = [&](const std::string& name, torch::Tensor& target) {
    auto it = file.tensors.find(name);
    if (it == file.tensors.end()) {
      problems += "\n  missing: " + name;
    } else if (it->second.sizes() != target.sizes()) {
      problems += "\n  wrong shape: " + name;
    } else {
      target.copy_(it->second);
    }
  };
  size_t expected = 0;
  for (auto& p : named_parameters(true)) assign(p.key(), p.value()), ++expected;
  for (auto& b : named_buffers(true)) assign(b.key(), b.value()), ++expected;
  if (file.tensors.size() != expected && problems.empty()) problems += "\n  unexpected extra tensors";
  if (!problems.empty()) throw Error(path + ": feedback weights do not fit this module:" + problems);
}

}  // namespace ilf
