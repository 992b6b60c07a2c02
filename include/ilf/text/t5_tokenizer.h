// The T5 tokenizer of the PixArt text encoders: a SentencePiece unigram model (T5's spiece.model) used
// with the conventions of Hugging Face's T5Tokenizer as the PixArt pipelines call it
// (padding="max_length", truncation=True, add_special_tokens=True): the text's pieces, cut to
// max_length - 1, then </s>; padded with <pad> to max_length; the attention mask is 1 on the pieces and
// </s>, 0 on the padding.
//
// The model file is read here directly (it is a protobuf ModelProto: the pieces with their scores and
// types, the trainer spec, and the normalizer spec with its precompiled character map), and text is
// encoded as the SentencePiece library does it: normalization (the precompiled NFKC map, whitespace
// collapsing, "▁" for spaces and as a prefix), then the best-scoring segmentation under the unigram
// model, with runs of unknown characters merged into one <unk>. Linking Debian's libsentencepiece is
// avoided on purpose: it carries its own copy of protobuf, which clashes with the protobuf LibTorch
// loads, and the process crashes at start-up. tests/test_text_to_image.cpp checks the ids against the
// spm_encode command line.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

namespace ilf {

struct TokenizedBatch {
  torch::Tensor input_ids;       // (B, max_length) int64
  torch::Tensor attention_mask;  // (B, max_length) int64, 1 = token, 0 = padding
};

class T5Tokenizer {
 public:
  // Reads the SentencePiece model; throws ilf::Error naming the file when it cannot be read or parsed,
  // is not a unigram model, or has no </s>, <pad> or <unk> piece. max_length >= 1.
  T5Tokenizer(const std::string& model_path, int64_t max_length);
  ~T5Tokenizer();
  T5Tokenizer(T5Tokenizer&&) noexcept;
  T5Tokenizer& operator=(T5Tokenizer&&) noexcept;

  // The text's piece ids followed by </s>, without truncation or padding (what
  // `spm_encode --output_format=id --extra_options=eos` prints).
  std::vector<int64_t> encode(const std::string& text) const;

  // Each text -> max_length ids (pieces cut to max_length - 1, </s>, <pad>...) and its attention mask.
  TokenizedBatch tokenize(const std::vector<std::string>& texts) const;

  // Checks this tokenizer against ids recorded from another one (the exporter's tokenizer_check.json:
  // {"max_length": L, "prompts": [...], "input_ids": [[ids of the tokens, </s> included, no padding], ...]}).
  // Returns the prompts whose ids differ; throws ilf::Error naming the file when it cannot be read.
  std::vector<std::string> mismatches(const std::string& check_file) const;

  // The text after SentencePiece normalization ("▁" marks spaces), for tests and debugging.
  std::string normalize(const std::string& text) const;

  int64_t max_length() const { return max_length_; }
  int64_t vocab_size() const;
  int64_t eos_id() const;  // 1 in T5's model
  int64_t pad_id() const;  // 0 in T5's model
  const std::string& path() const { return path_; }

 private:
  struct Model;
  std::unique_ptr<Model> model_;
  std::string path_;
  int64_t max_length_ = 0;
};

}  // namespace ilf
