// The CLIP byte-level BPE tokenizer in C++, so that CLIP score and CLIP-IQA tokenise any prompt exactly as
// the reference packages do, without Python. Two sources, two behaviours:
//   - a Hugging Face CLIP folder's vocab.json + merges.txt: transformers' CLIPTokenizer (the tokenizers
//     backend that CLIPProcessor uses in transformers 5): the literal special tokens "<|startoftext|>" /
//     "<|endoftext|>" are split off the raw text first; then runs of white space become one space, the
//     text is lower-cased, split by the pattern
//       <|startoftext|> | <|endoftext|> | 's|'t|'re|'ve|'m|'ll|'d | \p{L}+ | \p{N} | [^\s\p{L}\p{N}]+
//     (white space dropped), each piece mapped byte by byte to GPT-2's printable characters and merged
//     by BPE with "</w>" on its last symbol;
//   - open_clip's bpe_simple_vocab_16e6.txt.gz (also what the openai-clip package ships): open_clip's
//     SimpleTokenizer (clean "lower"): html.unescape twice, strip, white space runs to one space,
//     lower-case, the same pattern with "<start_of_text>" / "<end_of_text>", the same BPE; the vocabulary
//     built from the merges as CLIP builds it (256 byte symbols, the same with "</w>", the first 48,894
//     merges, the two special tokens: 49,408 ids).
// Not replicated (differences only for such text):
//   - Unicode NFC normalisation (transformers): text already in NFC, which is almost all text, is
//     unaffected; decomposed sequences (e.g. "e" + U+0301) are tokenised undecomposed;
//   - ftfy.fix_text (open_clip): mojibake repair, curly-quote uncurling, ligatures, full-width characters,
//     control characters and the rest of its repertoire are not applied;
//   - html.unescape (open_clip): numeric references (&#39; &#x27;) of code points 1..0x10FFFF outside
//     the surrogates and the named entities amp, lt, gt, quot, apos, nbsp, all with their ';' (Python also
//     knows ~2,200 names, accepts some references without ';' and maps &#128;..&#159; as windows-1252);
//   - white space is Python's str.isspace (from the tables below), without U+001C..U+001F for
//     transformers (its \s); tokenizers' Oniguruma may differ elsewhere in the Unicode version only;
//   - lower-casing is Unicode's simple per-character mapping (plus U+0130 -> "i" U+0307) from the tables
//     of tests/metrics/make_clip_unicode_tables.py (Unicode 14); for open_clip, Python's final sigma
//     (a capital sigma after a letter and not before one becomes U+03C2), with "letter" standing in for
//     Unicode's "cased letter" and no skipping of case-ignorable characters; the letter / number classes
//     are those tables' (the reference regex engines may know a slightly different Unicode version).
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace ilf {

class ClipTokenizer {
 public:
  enum class Flavor { kTransformers, kOpenClip };

  // folder/vocab.json + folder/merges.txt (transformers' behaviour). Errors name the file.
  static ClipTokenizer from_folder(const std::string& folder);
  // open_clip's bpe_simple_vocab_16e6.txt.gz (open_clip's behaviour). Errors name the file.
  static ClipTokenizer from_bpe_gz(const std::string& path);
  // From a vocabulary and an ordered merge list (rank = position); `source` names them in errors.
  ClipTokenizer(std::unordered_map<std::string, int64_t> vocab, const std::vector<std::pair<std::string, std::string>>& merges,
                Flavor flavor, const std::string& source);

  // The BPE ids of `text` without begin / end tokens.
  std::vector<int64_t> encode(const std::string& text) const;

  // transformers + torchmetrics: each text -> [bos] ids [eos], padded with pad_id() to the longest and
  // then cut to `length` columns (torchmetrics cuts the processor's output to max_position_embeddings, so
  // a text of more than length - 2 tokens keeps its first length - 1 tokens after bos and has no eos).
  // Returns (N, length) int64 when some text fills it, else (N, longest) as the processor pads.
  torch::Tensor encode_batch(const std::vector<std::string>& texts, int64_t length = 77) const;

  // open_clip's tokenize(): (N, length) int64, [sot] ids [eot] zero-padded; a longer text is cut to
  // `length` tokens and its last one replaced by eot.
  torch::Tensor encode_open_clip(const std::vector<std::string>& texts, int64_t length = 77) const;

  int64_t bos_id() const { return bos_id_; }
  int64_t eos_id() const { return eos_id_; }
  int64_t pad_id() const { return eos_id_; }  // CLIPTokenizer pads with "<|endoftext|>"
  int64_t vocab_size() const { return static_cast<int64_t>(vocab_.size()); }
  Flavor flavor() const { return flavor_; }

 private:
  void bpe_piece(const std::string& piece, std::vector<int64_t>& out) const;
  void encode_normalised(const std::u32string& text, std::vector<int64_t>& out) const;

  std::unordered_map<std::string, int64_t> vocab_;
  std::map<std::pair<std::string, std::string>, int64_t> ranks_;
  Flavor flavor_;
  std::string source_;
  std::string bos_text_, eos_text_;
  int64_t bos_id_ = 0, eos_id_ = 0;
};

}  // namespace ilf
