// Caption encoding with a TorchScript text encoder and a prompt cache (see include/ilf/text/text_encoder.h).
#include "ilf/text/text_encoder.h"

#include <algorithm>
#include <cctype>

#include "ilf/error.h"
#include "ilf/io/atomic_file.h"
#include "ilf/util/checks.h"

namespace ilf {

torch::Tensor first_output_tensor(const torch::IValue& output, const std::string& source) {
  if (output.isTensor()) return output.toTensor();
  if (output.isTuple()) {
    for (const auto& element : output.toTupleRef().elements())
      if (element.isTensor() || element.isTuple() || element.isList()) return first_output_tensor(element, source);
  }
  if (output.isList()) {
    for (const auto& element : output.toListRef()) return first_output_tensor(element, source);
  }
  if (output.isGenericDict()) {
    for (const auto& entry : output.toGenericDict())
      if (entry.value().isTensor()) return entry.value().toTensor();
  }
  throw Error(source + ": the TorchScript module returned no tensor (got " + output.tagKind() + ")");
}

void require_finite_module(const torch::jit::script::Module& module, const std::string& path) {
  for (const auto& p : module.named_parameters()) require_finite(p.value, path + ": tensor \"" + p.name + "\"");
  for (const auto& b : module.named_buffers()) require_finite(b.value, path + ": tensor \"" + b.name + "\"");
}

TextEncoder::TextEncoder(const std::string& module_path, const std::string& tokenizer_path, const TextEncoderOptions& options,
                         const torch::Device& device)
    : tokenizer_(tokenizer_path, options.max_length), module_path_(module_path), options_(options), device_(device) {
  if (options.cache_capacity < 0) throw Error(module_path + ": the text encoder's cache capacity must be >= 0");
  require_regular_file(module_path, "TorchScript text encoder");
  try {
    module_ = torch::jit::load(module_path, device);
    require_finite_module(module_, module_path);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(module_path + ": cannot load the TorchScript text encoder (" + short_torch_error(e) + ")");
  }
  module_.eval();
}

std::string TextEncoder::preprocess(const std::string& prompt) const {
  if (!options_.lowercase) return prompt;
  const auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  size_t begin = 0, end = prompt.size();
  while (begin < end && space(prompt[begin])) ++begin;
  while (end > begin && space(prompt[end - 1])) --end;
  std::string text = prompt.substr(begin, end - begin);
  for (char& c : text)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return text;
}

CaptionEmbeddings TextEncoder::encode(const std::vector<std::string>& prompts) {
  std::vector<std::string> texts;
  for (const auto& p : prompts) texts.push_back(preprocess(p));

  // The texts not in the cache, each once, through the module in one batch.
  std::vector<std::string> missing;
  for (const auto& text : texts)
    if (!cache_.count(text) && std::find(missing.begin(), missing.end(), text) == missing.end()) missing.push_back(text);
  std::unordered_map<std::string, Entry> fresh;
  if (!missing.empty()) {
    const TokenizedBatch tokens = tokenizer_.tokenize(missing);
    torch::Tensor features;
    {
      torch::NoGradGuard no_grad;
      try {
        features =
            first_output_tensor(module_.forward({tokens.input_ids.to(device_), tokens.attention_mask.to(device_)}), module_path_);
      } catch (const Error&) {
        throw;
      } catch (const std::exception& e) {
        throw Error(module_path_ + ": the text encoder failed on input_ids / attention_mask of shape (" +
                    std::to_string(missing.size()) + ", " + std::to_string(options_.max_length) + ") on " + device_.str() + " (" +
                    short_torch_error(e) + ")");
      }
    }
    const int64_t n = static_cast<int64_t>(missing.size());
    if (features.dim() != 3 || features.size(0) != n || features.size(1) != options_.max_length)
      throw Error(module_path_ + ": expected last hidden states of shape (" + std::to_string(n) + ", " +
                  std::to_string(options_.max_length) + ", C), got " + c10::str(features.sizes()));
    features = features.to(torch::kFloat32);                       // (n, L, C)
    const torch::Tensor mask = tokens.attention_mask.to(device_);  // (n, L)
    encoded_prompts_ += n;
    for (int64_t i = 0; i < n; ++i) fresh[missing[static_cast<size_t>(i)]] = {features[i].clone(), mask[i].clone()};
  }

  std::vector<torch::Tensor> features, masks;
  for (const auto& text : texts) {
    if (auto it = cache_.find(text); it != cache_.end()) {
      recent_.splice(recent_.begin(), recent_, it->second.second);  // mark as most recently used
      features.push_back(it->second.first.first);
      masks.push_back(it->second.first.second);
    } else {
      const Entry& entry = fresh.at(text);
      features.push_back(entry.first);
      masks.push_back(entry.second);
    }
  }
  // Remember the fresh embeddings, dropping the least recently used beyond the capacity.
  for (auto& [text, entry] : fresh) {
    if (options_.cache_capacity == 0) break;
    recent_.push_front(text);
    cache_[text] = {entry, recent_.begin()};
    while (static_cast<int64_t>(cache_.size()) > options_.cache_capacity) {
      cache_.erase(recent_.back());
      recent_.pop_back();
    }
  }
  return {torch::stack(features), torch::stack(masks)};  // (B, L, C), (B, L)
}

}  // namespace ilf
