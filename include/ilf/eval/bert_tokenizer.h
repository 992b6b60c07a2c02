// BERT WordPiece tokenisation as ImageReward runs it: the image-reward package builds transformers'
// (slow, Python) BertTokenizer of bert-base-uncased, adds BLIP's special tokens [DEC] (bos) and [ENC]
// (additional), and calls it as tokenizer(prompt, padding="max_length", truncation=True, max_length=35).
// The reward model sees exactly those ids, so they are reproduced here from the same vocab.txt:
//   - the special tokens ([PAD] [UNK] [CLS] [SEP] [MASK] [DEC] [ENC]) written in the prompt are kept as
//     tokens; every other character is lower-cased on its own (Python's str.lower per character, as
//     transformers' regex does it);
//   - BERT's basic tokenizer: control characters (Unicode category C*) and U+0000 / U+FFFD removed,
//     whitespace made spaces, spaces around CJK ideographs, split on whitespace, accents stripped
//     (NFD, marks Mn removed), split on punctuation (Unicode P* and the ASCII symbols);
//   - WordPiece: greedy longest match with "##" continuation pieces, [UNK] for a word that cannot be
//     covered or is longer than 100 characters;
//   - [CLS] ids[:max_length - 2] [SEP], then [PAD] up to max_length; the attention mask is 1 on the
//     tokens and 0 on the padding.
// The Unicode categories, lower-case mapping and canonical decompositions are tables generated from
// Python's unicodedata (scripts/make_bert_unicode_tables.py; Unicode 14.0.0 with Python 3.11), so the
// C++ sees the characters as the Python reference does, with no Unicode library to install.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace ilf {

struct BertTokens {
  torch::Tensor input_ids;       // (B, max_length) int64
  torch::Tensor attention_mask;  // (B, max_length) int64, 1 = token, 0 = padding
};

class BertTokenizer {
 public:
  // Reads vocab.txt (one token a line; the line number is the id). Throws ilf::Error naming the file
  // when it cannot be read or lacks [PAD], [UNK], [CLS] or [SEP]. [DEC] and [ENC] get the vocabulary's
  // ids when it has them, else the next ids after it (30522 and 30523 for bert-base-uncased), as
  // transformers' add_special_tokens gives them. max_length >= 2.
  BertTokenizer(const std::string& vocab_path, int64_t max_length);
  ~BertTokenizer();
  BertTokenizer(BertTokenizer&&) noexcept;
  BertTokenizer& operator=(BertTokenizer&&) noexcept;

  // The prompt's tokens (strings) before [CLS] / [SEP], truncation and padding (BertTokenizer.tokenize).
  std::vector<std::string> tokenize_words(const std::string& text) const;
  // Their ids, untruncated, without [CLS] / [SEP].
  std::vector<int64_t> encode(const std::string& text) const;
  // Each text -> max_length ids and its attention mask, as the call above pads and truncates them.
  BertTokens tokenize(const std::vector<std::string>& texts) const;

  int64_t max_length() const { return max_length_; }
  int64_t vocab_size() const;                     // the ids in vocab.txt plus the added [DEC] / [ENC]
  int64_t id_of(const std::string& token) const;  // -1 when not a token
  const std::string& path() const { return path_; }

 private:
  struct Vocab;
  std::unique_ptr<Vocab> vocab_;
  int64_t max_length_ = 0;
  std::string path_;
};

}  // namespace ilf
