// The caption encoder of the text-to-image models: T5 tokenization and a TorchScript text encoder
// (an exported T5 encoder: (input_ids (B, L) int64, attention_mask (B, L) int64) -> last hidden states
// (B, L, C), or a tuple / dict whose first tensor they are), with a cache of recent prompts' embeddings
// (evaluation runs repeat prompts, and guidance encodes the same negative prompt for every batch).
#pragma once
#include <torch/script.h>
#include <torch/torch.h>

#include <list>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ilf/text/t5_tokenizer.h"

namespace ilf {

struct CaptionEmbeddings {
  torch::Tensor features;  // (B, L, C) float32: the text encoder's last hidden states
  torch::Tensor mask;      // (B, L) int64: 1 = token (pieces and </s>), 0 = padding
};

struct TextEncoderOptions {
  int64_t max_length = 120;  // tokens per caption (PixArt-alpha 120, PixArt-Sigma 300)
  // The diffusers pipelines' text preprocessing without its optional caption cleaning: strip spaces and
  // lower-case (ASCII letters only here). false passes prompts through as they are (the official
  // PixArt scripts).
  bool lowercase = true;
  int64_t cache_capacity = 64;  // prompts whose embeddings are kept (least recently used dropped)
};

class TextEncoder {
 public:
  // Loads the TorchScript module on `device` (where it runs) and the SentencePiece model. Errors name the file.
  TextEncoder(const std::string& module_path, const std::string& tokenizer_path, const TextEncoderOptions& options,
              const torch::Device& device);

  // prompts -> embeddings on the encoder's device; prompts seen recently come from the cache, the others
  // go through the module in one batch. Checks the module's output shape (B, max_length, C).
  CaptionEmbeddings encode(const std::vector<std::string>& prompts);

  // The text a prompt is tokenized as (see TextEncoderOptions::lowercase).
  std::string preprocess(const std::string& prompt) const;

  const T5Tokenizer& tokenizer() const { return tokenizer_; }
  const TextEncoderOptions& options() const { return options_; }
  const torch::Device& device() const { return device_; }
  int64_t encoded_prompts() const { return encoded_prompts_; }  // prompts that ran through the module (cache misses)

 private:
  using Entry = std::pair<torch::Tensor, torch::Tensor>;  // features (L, C), mask (L)
  T5Tokenizer tokenizer_;
  torch::jit::script::Module module_;
  std::string module_path_;
  TextEncoderOptions options_;
  torch::Device device_;
  int64_t encoded_prompts_ = 0;
  std::list<std::string> recent_;  // most recently used first
  std::unordered_map<std::string, std::pair<Entry, std::list<std::string>::iterator>> cache_;
};

// The first tensor of a TorchScript module's output: a tensor, or the first tensor in a tuple, list or
// dict (a traced Hugging Face model returns a tuple). Throws ilf::Error naming `source` when none.
torch::Tensor first_output_tensor(const torch::IValue& output, const std::string& source);

// Throws ilf::Error naming `path` and the tensor unless every parameter and buffer of a loaded
// TorchScript module is finite (a NaN in a weight gives black images at exit 0).
void require_finite_module(const torch::jit::script::Module& module, const std::string& path);

}  // namespace ilf
