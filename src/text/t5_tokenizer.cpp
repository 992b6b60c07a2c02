// T5 tokenization: a reader for SentencePiece model files and the unigram encoder, following the
// SentencePiece library's behaviour (see include/ilf/text/t5_tokenizer.h).
#include "ilf/text/t5_tokenizer.h"

#include <algorithm>
#include <cfloat>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>
#include <unordered_map>

#include "ilf/error.h"
#include "ilf/io/atomic_file.h"

namespace ilf {

namespace {

// SentencePiece's piece types (ModelProto.SentencePiece.Type).
enum PieceType { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };
constexpr int kUnigramModel = 1;                           // TrainerSpec.ModelType.UNIGRAM
constexpr float kUnknownPenalty = 10.0f;                   // an unknown character scores min_score - 10
const std::string_view kSpaceSymbol = "\xe2\x96\x81";      // U+2581 "▁"
const std::string_view kReplacementChar = "\xef\xbf\xbd";  // U+FFFD

struct Piece {
  std::string text;
  float score = 0;
  int type = kNormal;
};

// Reads protobuf wire format (the fields a SentencePiece model uses; others are skipped).
class ProtoReader {
 public:
  ProtoReader(std::string_view data, const std::string& source) : data_(data), source_(source) {}
  bool done() const { return pos_ >= data_.size(); }

  // The next field: (number, wire type).
  std::pair<uint64_t, int> field() {
    const uint64_t key = varint();
    return {key >> 3, static_cast<int>(key & 7)};
  }
  uint64_t varint() {
    uint64_t value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) fail("truncated varint");
      const auto byte = static_cast<uint8_t>(data_[pos_++]);
      value |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if (!(byte & 0x80)) return value;
    }
    fail("varint too long");
    return 0;
  }
  float fixed32_float() {
    if (pos_ + 4 > data_.size()) fail("truncated fixed32");
    uint32_t bits = 0;
    for (int i = 3; i >= 0; --i) bits = (bits << 8) | static_cast<uint8_t>(data_[pos_ + static_cast<size_t>(i)]);
    pos_ += 4;
    float value;
    std::memcpy(&value, &bits, sizeof(value));
    return value;
  }
  std::string_view bytes() {
    const uint64_t length = varint();
    if (length > data_.size() - pos_) fail("truncated length-delimited field");
    const std::string_view value = data_.substr(pos_, length);
    pos_ += length;
    return value;
  }
  void skip(int wire_type) {
    switch (wire_type) {
      case 0: varint(); break;
      case 1: advance(8); break;
      case 2: bytes(); break;
      case 5: advance(4); break;
      default: fail("unsupported wire type " + std::to_string(wire_type));
    }
  }

 private:
  void advance(size_t n) {
    if (n > data_.size() - pos_) fail("truncated field");
    pos_ += n;
  }
  [[noreturn]] void fail(const std::string& what) const {
    throw Error(source_ + ": not a valid SentencePiece model (" + what + ")");
  }
  std::string_view data_;
  size_t pos_ = 0;
  const std::string& source_;
};

// Bytes in the UTF-8 character starting with `c` (SentencePiece's table; 1 for malformed lead bytes).
size_t one_char_length(char c) { return "\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4"[(static_cast<uint8_t>(c)) >> 4]; }

bool is_trail_byte(char c) { return (static_cast<uint8_t>(c) & 0xC0) == 0x80; }
bool is_valid_codepoint(uint32_t c) { return c < 0xD800 || (c >= 0xE000 && c <= 0x10FFFF); }

// The length of the valid UTF-8 character at the start of `s`, or 0 when it is malformed (SentencePiece
// counts a literal U+FFFD as valid).
size_t valid_utf8_length(std::string_view s) {
  const auto b = [&](size_t i) { return static_cast<uint32_t>(static_cast<uint8_t>(s[i])); };
  if (b(0) < 0x80) return 1;
  if (s.size() >= 2 && (b(0) & 0xE0) == 0xC0) {
    const uint32_t cp = ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
    if (is_trail_byte(s[1]) && cp >= 0x80 && is_valid_codepoint(cp)) return 2;
  } else if (s.size() >= 3 && (b(0) & 0xF0) == 0xE0) {
    const uint32_t cp = ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    if (is_trail_byte(s[1]) && is_trail_byte(s[2]) && cp >= 0x800 && is_valid_codepoint(cp)) return 3;
  } else if (s.size() >= 4 && (b(0) & 0xF8) == 0xF0) {
    const uint32_t cp = ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
    if (is_trail_byte(s[1]) && is_trail_byte(s[2]) && is_trail_byte(s[3]) && cp >= 0x10000 && is_valid_codepoint(cp)) return 4;
  }
  return 0;
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

struct T5Tokenizer::Model {
  std::vector<Piece> pieces;
  std::unordered_map<std::string, int> segment_ids;   // normal, user-defined and unused pieces (segmentation candidates)
  std::unordered_map<std::string, int> reserved_ids;  // control, unknown and byte pieces
  std::vector<std::string> user_defined;              // pieces that bypass normalization
  size_t max_piece_bytes = 0;
  float min_score = FLT_MAX, max_score = FLT_MIN;  // over normal pieces (SentencePiece's initial values)
  int unk_id = -1;
  // Trainer spec.
  int model_type = kUnigramModel;
  bool byte_fallback = false, treat_whitespace_as_suffix = false;
  std::string unk_piece = "<unk>", eos_piece = "</s>", pad_piece = "<pad>";
  // Normalizer spec: the precompiled character map is a double-array trie (darts-clone units) over
  // UTF-8 byte sequences whose values point into a blob of NUL-terminated replacements.
  std::vector<uint32_t> trie;
  std::string replacements;
  bool add_dummy_prefix = true, remove_extra_whitespaces = true, escape_whitespaces = true;

  int piece_to_id(const std::string& piece) const {
    if (auto it = reserved_ids.find(piece); it != reserved_ids.end()) return it->second;
    if (auto it = segment_ids.find(piece); it != segment_ids.end()) return it->second;
    return unk_id;
  }
  // The id of a control piece (</s>, <pad>), or -1 when the model has none.
  int control_id(const std::string& piece) const {
    const int id = piece_to_id(piece);
    return id >= 0 && pieces[static_cast<size_t>(id)].type == kControl ? id : -1;
  }

  // The longest rule of the character map matching a prefix of `input`: (replacement, bytes consumed).
  std::pair<std::string_view, size_t> normalize_prefix(std::string_view input) const {
    for (const auto& u : user_defined)  // user-defined pieces pass unchanged (longest first: sorted by length)
      if (input.substr(0, u.size()) == u) return {input.substr(0, u.size()), u.size()};
    size_t longest = 0;
    uint32_t value = 0;
    if (!trie.empty()) {
      const auto offset = [](uint32_t unit) { return (unit >> 10) << ((unit & (1U << 9)) >> 6); };
      const auto label = [](uint32_t unit) { return unit & ((1U << 31) | 0xFF); };
      const auto has_leaf = [](uint32_t unit) { return ((unit >> 8) & 1) == 1; };
      size_t node = offset(trie[0]);
      for (size_t i = 0; i < input.size(); ++i) {
        const auto c = static_cast<uint8_t>(input[i]);
        node ^= c;
        if (node >= trie.size() || label(trie[node]) != c) break;
        const uint32_t unit = trie[node];
        node ^= offset(unit);
        if (node >= trie.size()) break;
        if (has_leaf(unit)) {
          longest = i + 1;
          value = trie[node] & ((1U << 31) - 1);
        }
      }
    }
    if (longest > 0 && value < replacements.size()) return {std::string_view(replacements.c_str() + value), longest};
    const size_t length = valid_utf8_length(input);
    if (length == 0) return {kReplacementChar, 1};  // a malformed byte becomes U+FFFD
    return {input.substr(0, length), length};
  }

  std::string normalize(std::string_view input) const {
    std::string out;
    if (remove_extra_whitespaces)  // leading spaces
      while (!input.empty()) {
        const auto [replacement, consumed] = normalize_prefix(input);
        if (replacement != " ") break;
        input.remove_prefix(consumed);
      }
    if (input.empty()) return out;
    const std::string_view space = escape_whitespaces ? kSpaceSymbol : std::string_view(" ");
    if (!treat_whitespace_as_suffix && add_dummy_prefix) out += space;
    bool previous_space = remove_extra_whitespaces;
    while (!input.empty()) {
      auto [replacement, consumed] = normalize_prefix(input);
      while (previous_space && !replacement.empty() && replacement.front() == ' ') replacement.remove_prefix(1);
      if (!replacement.empty()) {
        for (char c : replacement) {
          if (escape_whitespaces && c == ' ')
            out += kSpaceSymbol;
          else
            out += c;
        }
        previous_space = replacement.back() == ' ';
      }
      input.remove_prefix(consumed);
      if (!remove_extra_whitespaces) previous_space = false;
    }
    if (remove_extra_whitespaces)  // trailing spaces
      while (ends_with(out, space)) out.resize(out.size() - space.size());
    if (treat_whitespace_as_suffix && add_dummy_prefix) out += space;
    return out;
  }

  // The best-scoring segmentation of normalized text under the unigram model (SentencePiece's
  // optimized Viterbi: best path ending at each byte position), as piece ids; consecutive unknown
  // characters become one <unk> (or, with byte fallback, one <0xXX> piece per byte). Best-path scores
  // are kept in float and candidates compared in double, as in sentencepiece up to 0.2.1: that decides
  // exact score ties (e.g. "!!!" = "!" "!!", not "!!" "!"), which sentencepiece >= 0.2.2 (its results
  // match float comparisons) and Hugging Face tokenizers (double) break differently
  // (tests/exporters/check_tokenizer.py).
  std::vector<int64_t> encode_normalized(std::string_view text) const {
    struct BestPath {
      int id = -1;
      float score = 0;
      int64_t start = -1;
    };
    const auto size = static_cast<int64_t>(text.size());
    std::vector<BestPath> best(static_cast<size_t>(size) + 1);
    const float unknown_score = min_score - kUnknownPenalty;
    for (int64_t start = 0; start < size;) {
      const float score_so_far = best[static_cast<size_t>(start)].score;
      const auto char_length =
          static_cast<int64_t>(std::min<size_t>(one_char_length(text[static_cast<size_t>(start)]), size - start));
      bool has_single_char_piece = false;
      const auto longest = static_cast<int64_t>(std::min<size_t>(max_piece_bytes, size - start));
      for (int64_t length = 1; length <= longest; ++length) {
        auto it = segment_ids.find(std::string(text.substr(static_cast<size_t>(start), static_cast<size_t>(length))));
        if (it == segment_ids.end()) continue;
        const Piece& piece = pieces[static_cast<size_t>(it->second)];
        if (piece.type == kUnused) continue;
        // User-defined pieces get a bonus so that they are always chosen (types as in SentencePiece).
        const double score = piece.type == kUserDefined ? static_cast<double>(static_cast<float>(length) * max_score) - 0.1
                                                        : static_cast<double>(piece.score);
        const double candidate = score + score_so_far;
        BestPath& target = best[static_cast<size_t>(start + length)];
        if (target.start == -1 || candidate > target.score) target = {it->second, static_cast<float>(candidate), start};
        if (length == char_length) has_single_char_piece = true;
      }
      if (!has_single_char_piece) {
        const float candidate = unknown_score + score_so_far;
        BestPath& target = best[static_cast<size_t>(start + char_length)];
        if (target.start == -1 || candidate > target.score) target = {unk_id, candidate, start};
      }
      start += char_length;
    }
    std::vector<std::pair<int64_t, int64_t>> path;  // (start, end) of each piece, backwards
    for (int64_t end = size; end > 0; end = best[static_cast<size_t>(end)].start)
      path.emplace_back(best[static_cast<size_t>(end)].start, end);
    std::reverse(path.begin(), path.end());

    std::vector<int64_t> ids;
    bool previous_unknown = false;
    for (const auto& [begin, end] : path) {
      const int id = best[static_cast<size_t>(end)].id;
      const bool unknown = id == unk_id;
      if (unknown && byte_fallback) {
        for (int64_t i = begin; i < end; ++i) {
          char name[8];
          std::snprintf(name, sizeof(name), "<0x%02X>",
                        static_cast<unsigned>(static_cast<uint8_t>(text[static_cast<size_t>(i)])));
          ids.push_back(piece_to_id(name));
        }
      } else if (!(unknown && previous_unknown)) {
        ids.push_back(id);
      }
      previous_unknown = unknown;
    }
    return ids;
  }
};

T5Tokenizer::T5Tokenizer(const std::string& model_path, int64_t max_length) : path_(model_path), max_length_(max_length) {
  if (max_length < 1)
    throw Error(model_path + ": the tokenizer's max_length must be >= 1 (got " + std::to_string(max_length) + ")");
  require_regular_file(model_path, "SentencePiece tokenizer model");
  std::ifstream in(model_path, std::ios::binary);
  if (!in) throw Error(model_path + ": cannot read the SentencePiece tokenizer model");
  std::ostringstream buffer;
  buffer << in.rdbuf();
  const std::string data = buffer.str();

  model_ = std::make_unique<Model>();
  Model& m = *model_;
  std::string_view charsmap;
  ProtoReader model(data, model_path);
  while (!model.done()) {
    const auto [number, wire] = model.field();
    if (number == 1 && wire == 2) {  // pieces
      ProtoReader r(model.bytes(), model_path);
      Piece p;
      while (!r.done()) {
        const auto [n, w] = r.field();
        if (n == 1 && w == 2)
          p.text = std::string(r.bytes());
        else if (n == 2 && w == 5)
          p.score = r.fixed32_float();
        else if (n == 3 && w == 0)
          p.type = static_cast<int>(r.varint());
        else
          r.skip(w);
      }
      m.pieces.push_back(std::move(p));
    } else if (number == 2 && wire == 2) {  // trainer_spec
      ProtoReader r(model.bytes(), model_path);
      while (!r.done()) {
        const auto [n, w] = r.field();
        if (n == 3 && w == 0)
          m.model_type = static_cast<int>(r.varint());
        else if (n == 24 && w == 0)
          m.treat_whitespace_as_suffix = r.varint() != 0;
        else if (n == 35 && w == 0)
          m.byte_fallback = r.varint() != 0;
        else if (n == 45 && w == 2)
          m.unk_piece = std::string(r.bytes());
        else if (n == 47 && w == 2)
          m.eos_piece = std::string(r.bytes());
        else if (n == 48 && w == 2)
          m.pad_piece = std::string(r.bytes());
        else
          r.skip(w);
      }
    } else if (number == 3 && wire == 2) {  // normalizer_spec
      ProtoReader r(model.bytes(), model_path);
      while (!r.done()) {
        const auto [n, w] = r.field();
        if (n == 2 && w == 2)
          charsmap = r.bytes();
        else if (n == 3 && w == 0)
          m.add_dummy_prefix = r.varint() != 0;
        else if (n == 4 && w == 0)
          m.remove_extra_whitespaces = r.varint() != 0;
        else if (n == 5 && w == 0)
          m.escape_whitespaces = r.varint() != 0;
        else
          r.skip(w);
      }
    } else {
      model.skip(wire);
    }
  }

  if (m.pieces.empty()) throw Error(model_path + ": not a SentencePiece model (no pieces)");
  if (m.model_type != kUnigramModel)
    throw Error(model_path + ": a SentencePiece model of type " + std::to_string(m.model_type) +
                "; only unigram models (T5's spiece.model) are supported");
  for (size_t i = 0; i < m.pieces.size(); ++i) {
    const Piece& p = m.pieces[i];
    const int id = static_cast<int>(i);
    if (p.text.empty()) throw Error(model_path + ": piece " + std::to_string(i) + " is empty");
    const bool segment = p.type == kNormal || p.type == kUserDefined || p.type == kUnused;
    auto& map = segment ? m.segment_ids : m.reserved_ids;
    if (!map.emplace(p.text, id).second) throw Error(model_path + ": piece \"" + p.text + "\" is defined twice");
    if (segment) m.max_piece_bytes = std::max(m.max_piece_bytes, p.text.size());
    if (p.type == kUserDefined) m.user_defined.push_back(p.text);
    if (p.type == kUnknown) m.unk_id = id;
    if (p.type == kNormal) {
      m.min_score = std::min(m.min_score, p.score);
      m.max_score = std::max(m.max_score, p.score);
    }
  }
  std::sort(m.user_defined.begin(), m.user_defined.end(),
            [](const std::string& a, const std::string& b) { return a.size() > b.size(); });
  if (m.unk_id < 0) throw Error(model_path + ": the tokenizer model has no <unk> piece");
  if (!charsmap.empty()) {
    uint32_t trie_bytes = 0;
    if (charsmap.size() <= 4) throw Error(model_path + ": the normalizer's character map is truncated");
    for (int i = 3; i >= 0; --i) trie_bytes = (trie_bytes << 8) | static_cast<uint8_t>(charsmap[static_cast<size_t>(i)]);
    if (trie_bytes % 4 != 0 || trie_bytes > charsmap.size() - 4)
      throw Error(model_path + ": the normalizer's character map is broken (trie of " + std::to_string(trie_bytes) + " bytes)");
    m.trie.resize(trie_bytes / 4);
    for (size_t k = 0; k < m.trie.size(); ++k) {
      uint32_t unit = 0;
      for (int i = 3; i >= 0; --i) unit = (unit << 8) | static_cast<uint8_t>(charsmap[4 + 4 * k + static_cast<size_t>(i)]);
      m.trie[k] = unit;
    }
    m.replacements = std::string(charsmap.substr(4 + trie_bytes));
  }
  if (eos_id() < 0 || pad_id() < 0)
    throw Error(model_path + ": the tokenizer model has no " + std::string(eos_id() < 0 ? "</s>" : "<pad>") +
                " control piece; a T5 tokenizer (spiece.model) has </s> = 1 and <pad> = 0");
}

T5Tokenizer::~T5Tokenizer() = default;
T5Tokenizer::T5Tokenizer(T5Tokenizer&&) noexcept = default;
T5Tokenizer& T5Tokenizer::operator=(T5Tokenizer&&) noexcept = default;

int64_t T5Tokenizer::vocab_size() const { return static_cast<int64_t>(model_->pieces.size()); }
int64_t T5Tokenizer::eos_id() const { return model_->control_id(model_->eos_piece); }
int64_t T5Tokenizer::pad_id() const { return model_->control_id(model_->pad_piece); }

std::string T5Tokenizer::normalize(const std::string& text) const { return model_->normalize(text); }

std::vector<int64_t> T5Tokenizer::encode(const std::string& text) const {
  std::vector<int64_t> ids = model_->encode_normalized(model_->normalize(text));
  ids.push_back(eos_id());
  return ids;
}

std::vector<std::string> T5Tokenizer::mismatches(const std::string& check_file) const {
  require_regular_file(check_file, "tokenizer check");
  std::ifstream in(check_file);
  if (!in) throw Error(check_file + ": cannot read the tokenizer check");
  try {
    const nlohmann::json check = nlohmann::json::parse(in);
    std::vector<std::string> different;
    const auto prompts = check.at("prompts").get<std::vector<std::string>>();
    const auto expected = check.at("input_ids").get<std::vector<std::vector<int64_t>>>();
    if (prompts.size() != expected.size()) throw Error(check_file + ": \"prompts\" and \"input_ids\" differ in length");
    const int64_t length = check.value("max_length", max_length_);
    for (size_t i = 0; i < prompts.size(); ++i) {
      std::vector<int64_t> ids = encode(prompts[i]);
      if (static_cast<int64_t>(ids.size()) > length) {
        ids.resize(static_cast<size_t>(length));
        ids.back() = eos_id();
      }
      if (ids != expected[i]) different.push_back(prompts[i]);
    }
    return different;
  } catch (const nlohmann::json::exception& e) {
    throw Error(check_file + ": not a tokenizer check ({\"prompts\": [...], \"input_ids\": [[...]]}): " + e.what());
  }
}

TokenizedBatch T5Tokenizer::tokenize(const std::vector<std::string>& texts) const {
  const int64_t batch = static_cast<int64_t>(texts.size());
  TokenizedBatch out;
  out.input_ids = torch::full({batch, max_length_}, pad_id(), torch::kInt64);  // (B, L)
  out.attention_mask = torch::zeros({batch, max_length_}, torch::kInt64);      // (B, L)
  auto ids = out.input_ids.accessor<int64_t, 2>();
  auto mask = out.attention_mask.accessor<int64_t, 2>();
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<int64_t> tokens = encode(texts[static_cast<size_t>(b)]);
    if (static_cast<int64_t>(tokens.size()) > max_length_) {  // keep max_length - 1 pieces, then </s>
      tokens.resize(static_cast<size_t>(max_length_));
      tokens.back() = eos_id();
    }
    for (size_t k = 0; k < tokens.size(); ++k) {
      ids[b][static_cast<int64_t>(k)] = tokens[k];
      mask[b][static_cast<int64_t>(k)] = 1;
    }
  }
  return out;
}

}  // namespace ilf
