// BERT WordPiece tokenisation for ImageReward (include/ilf/eval/bert_tokenizer.h says what is
// replicated). Text is decoded from UTF-8 to code points; the Unicode categories, the lower-case mapping
// and the canonical decompositions that transformers takes from Python's unicodedata and str.lower come
// from tables generated from that database (bert_unicode_tables.h).
#include "ilf/io/atomic_file.h"
#include "ilf/eval/bert_tokenizer.h"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <unordered_map>

#include "bert_unicode_tables.h"
#include "ilf/error.h"

namespace ilf {

namespace {

// The special tokens transformers never splits or lower-cases in this tokenizer (bert-base-uncased's
// five plus BLIP's [DEC] and [ENC]).
const char* const kBertSpecialTokens[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "[ENC]"};
constexpr size_t kBertMaxWordChars = 100;  // transformers' WordpieceTokenizer.max_input_chars_per_word

// UTF-8 -> code points; a malformed sequence gives U+FFFD (which the basic tokenizer then drops).
std::u32string bert_decode_utf8(const std::string& text) {
  std::u32string out;
  out.reserve(text.size());
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    int extra = 0;
    char32_t cp = 0;
    if (c < 0x80) {
      cp = c;
    } else if ((c & 0xE0) == 0xC0) {
      cp = c & 0x1F, extra = 1;
    } else if ((c & 0xF0) == 0xE0) {
      cp = c & 0x0F, extra = 2;
    } else if ((c & 0xF8) == 0xF0) {
      cp = c & 0x07, extra = 3;
    } else {
      out.push_back(0xFFFD), ++i;
      continue;
    }
    bool ok = i + static_cast<size_t>(extra) < n;
    for (int k = 1; ok && k <= extra; ++k) {
      if ((s[i + k] & 0xC0) != 0x80)
        ok = false;
      else
        cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    const bool overlong = (extra == 1 && cp < 0x80) || (extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000);
    if (!ok || overlong || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      out.push_back(0xFFFD), ++i;
      continue;
    }
    out.push_back(cp);
    i += 1 + extra;
  }
  return out;
}

std::string bert_encode_utf8(const std::u32string& text) {
  std::string out;
  out.reserve(text.size());
  for (const char32_t cp : text) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  return out;
}

uint8_t bert_kind(char32_t cp) {  // bert_unicode::KindRange kinds; 0 = none of them
  using bert_unicode::kKindRanges;
  const auto* end = kKindRanges + bert_unicode::kKindRangeCount;
  const auto* it =
      std::upper_bound(kKindRanges, end, cp, [](char32_t c, const bert_unicode::KindRange& r) { return c < r.first; });
  if (it == kKindRanges) return 0;
  --it;
  return cp <= it->last ? it->kind : 0;
}

uint8_t bert_combining_class(char32_t cp) {
  using bert_unicode::kCombiningClasses;
  const auto* end = kCombiningClasses + bert_unicode::kCombiningClassCount;
  const auto* it =
      std::upper_bound(kCombiningClasses, end, cp, [](char32_t c, const bert_unicode::ClassRange& r) { return c < r.first; });
  if (it == kCombiningClasses) return 0;
  --it;
  return cp <= it->last ? it->ccc : 0;
}

// str.lower() of one character (no context: transformers lower-cases the text one character at a time).
void bert_lower_char(char32_t cp, std::u32string& out) {
  using bert_unicode::kLowers;
  const auto* end = kLowers + bert_unicode::kLowerCount;
  const auto* it = std::lower_bound(kLowers, end, cp, [](const bert_unicode::Lower& l, char32_t c) { return l.from < c; });
  if (it == end || it->from != cp) {
    out += cp;
    return;
  }
  for (const char32_t c : it->to) {
    if (c) out += c;
  }
}

// unicodedata.normalize("NFD", text): full canonical decompositions (Hangul syllables by formula), then
// the combining marks of each run put in canonical order (stable sort by combining class).
std::u32string bert_nfd(const std::u32string& text) {
  std::u32string out;
  out.reserve(text.size());
  for (const char32_t cp : text) {
    if (cp >= 0xAC00 && cp <= 0xD7A3) {
      const char32_t s = cp - 0xAC00;
      out += static_cast<char32_t>(0x1100 + s / 588);
      out += static_cast<char32_t>(0x1161 + (s % 588) / 28);
      if (s % 28) out += static_cast<char32_t>(0x11A7 + s % 28);
      continue;
    }
    using bert_unicode::kDecompositions;
    const auto* end = kDecompositions + bert_unicode::kDecompositionCount;
    const auto* it =
        std::lower_bound(kDecompositions, end, cp, [](const bert_unicode::Decomposition& d, char32_t c) { return d.from < c; });
    if (it != end && it->from == cp)
      out.append(bert_unicode::kDecompositionPool + it->offset, it->length);
    else
      out += cp;
  }
  size_t i = 0;
  while (i < out.size()) {
    if (bert_combining_class(out[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < out.size() && bert_combining_class(out[j]) != 0) ++j;
    std::stable_sort(out.begin() + static_cast<std::ptrdiff_t>(i), out.begin() + static_cast<std::ptrdiff_t>(j),
                     [](char32_t a, char32_t b) { return bert_combining_class(a) < bert_combining_class(b); });
    i = j;
  }
  return out;
}

bool bert_is_control(char32_t cp) {  // transformers' _is_control: category C*, except \t \n \r
  if (cp == U'\t' || cp == U'\n' || cp == U'\r') return false;
  return bert_kind(cp) == 1;
}

bool bert_is_whitespace(char32_t cp) {  // transformers' _is_whitespace: space, \t \n \r, category Zs
  return cp == U' ' || cp == U'\t' || cp == U'\n' || cp == U'\r' || bert_kind(cp) == 2;
}

// Python's str.split() separators among what survives the cleaning (category Zs is a space by then,
// the C0 / C1 separators are controls and removed): the space and the line / paragraph separators.
bool bert_is_split_space(char32_t cp) { return cp == U' ' || cp == 0x2028 || cp == 0x2029 || bert_is_whitespace(cp); }

bool bert_is_punctuation(char32_t cp) {  // transformers' _is_punctuation: ASCII symbols and category P*
  if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126)) return true;
  return bert_kind(cp) == 3;
}

bool bert_is_cjk(char32_t cp) {  // transformers' _is_chinese_char: the CJK Unified Ideographs blocks
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) || (cp >= 0x20000 && cp <= 0x2A6DF) ||
         (cp >= 0x2A700 && cp <= 0x2B73F) || (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

std::vector<std::u32string> bert_split_spaces(const std::u32string& text) {
  std::vector<std::u32string> words;
  std::u32string word;
  for (const char32_t cp : text) {
    if (bert_is_split_space(cp)) {
      if (!word.empty()) words.push_back(std::move(word)), word.clear();
    } else {
      word += cp;
    }
  }
  if (!word.empty()) words.push_back(std::move(word));
  return words;
}

bool bert_is_special(const std::u32string& word) {
  for (const char* token : kBertSpecialTokens) {
    const std::string s(token);
    if (word == std::u32string(s.begin(), s.end())) return true;
  }
  return false;
}

// BERT's basic tokenizer on one stretch of text between special tokens.
std::vector<std::u32string> bert_basic_tokenize(const std::u32string& text) {
  std::u32string cleaned;
  cleaned.reserve(text.size());
  for (const char32_t cp : text) {
    if (cp == 0 || cp == 0xFFFD || bert_is_control(cp)) continue;
    if (bert_is_whitespace(cp)) {
      cleaned += U' ';
    } else if (bert_is_cjk(cp)) {
      cleaned += U' ', cleaned += cp, cleaned += U' ';
    } else {
      cleaned += cp;
    }
  }
  // transformers normalises to NFC here, lower-cases each word and strips accents (NFD, Mn removed).
  // NFC is left out: NFD undoes it (NFD(NFC(x)) = NFD(x)), it changes no space or punctuation, and the
  // words are lower case already (the whole text was, character by character, before this step).
  std::vector<std::u32string> out;
  for (const std::u32string& word : bert_split_spaces(cleaned)) {
    if (bert_is_special(word)) {
      out.push_back(word);
      continue;
    }
    std::u32string stripped;
    for (const char32_t cp : bert_nfd(word)) {
      if (bert_kind(cp) != 4) stripped += cp;
    }
    std::u32string piece;
    for (const char32_t cp : stripped) {
      if (bert_is_punctuation(cp)) {
        if (!piece.empty()) out.push_back(std::move(piece)), piece.clear();
        out.push_back(std::u32string(1, cp));
      } else {
        piece += cp;
      }
    }
    if (!piece.empty()) out.push_back(std::move(piece));
  }
  return out;
}

}  // namespace

struct BertTokenizer::Vocab {
  std::unordered_map<std::string, int64_t> ids;
  int64_t size = 0;  // the file's lines plus the added tokens
  int64_t pad = 0, unk = 0, cls = 0, sep = 0;
};

BertTokenizer::BertTokenizer(const std::string& vocab_path, int64_t max_length)
    : vocab_(std::make_unique<Vocab>()), max_length_(max_length), path_(vocab_path) {
  if (max_length < 2) throw Error("BERT tokenizer: max_length must be >= 2, got " + std::to_string(max_length));
  require_regular_file(vocab_path, "BERT vocabulary");
  std::ifstream in(vocab_path, std::ios::binary);
  if (!in) throw Error(vocab_path + ": cannot open the BERT vocabulary (vocab.txt)");
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  // Python's text mode: "\r\n", "\r" and "\n" end a line; the last line needs no newline.
  int64_t id = 0;
  std::string line;
  bool pending = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n' || c == '\r') {
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
      vocab_->ids[line] = id++;  // a repeated token keeps its last line, as transformers' load_vocab does
      line.clear();
      pending = false;
    } else {
      line += c;
      pending = true;
    }
  }
  if (pending) vocab_->ids[line] = id++;
  vocab_->size = id;
  const auto require = [&](const char* token) {
    const auto it = vocab_->ids.find(token);
    if (it == vocab_->ids.end()) throw Error(vocab_path + ": the BERT vocabulary has no " + token + " token");
    return it->second;
  };
  vocab_->pad = require("[PAD]");
  vocab_->unk = require("[UNK]");
  vocab_->cls = require("[CLS]");
  vocab_->sep = require("[SEP]");
  for (const char* added : {"[DEC]", "[ENC]"}) {
    if (vocab_->ids.count(added) == 0) vocab_->ids[added] = vocab_->size++;
  }
}

BertTokenizer::~BertTokenizer() = default;
BertTokenizer::BertTokenizer(BertTokenizer&&) noexcept = default;
BertTokenizer& BertTokenizer::operator=(BertTokenizer&&) noexcept = default;

int64_t BertTokenizer::vocab_size() const { return vocab_->size; }

int64_t BertTokenizer::id_of(const std::string& token) const {
  const auto it = vocab_->ids.find(token);
  return it == vocab_->ids.end() ? -1 : it->second;
}

std::vector<std::string> BertTokenizer::tokenize_words(const std::string& text) const {
  const std::u32string input = bert_decode_utf8(text);
  // Split out the special tokens written in the text (transformers' added-token trie: at each position
  // the longest special token that starts there); lower-case everything else one character at a time.
  std::vector<std::string> out;
  std::u32string stretch;
  const auto flush = [&]() {
    for (const std::u32string& word : bert_basic_tokenize(stretch)) {
      if (bert_is_special(word)) {
        out.push_back(bert_encode_utf8(word));
        continue;
      }
      if (word.size() > kBertMaxWordChars) {
        out.emplace_back("[UNK]");
        continue;
      }
      std::vector<std::string> pieces;
      size_t start = 0;
      bool bad = false;
      while (start < word.size()) {
        size_t end = word.size();
        std::string found;
        while (start < end) {
          std::string candidate = bert_encode_utf8(word.substr(start, end - start));
          if (start > 0) candidate = "##" + candidate;
          if (vocab_->ids.count(candidate)) {
            found = std::move(candidate);
            break;
          }
          --end;
        }
        if (found.empty()) {
          bad = true;
          break;
        }
        pieces.push_back(std::move(found));
        start = end;
      }
      if (bad)
        out.emplace_back("[UNK]");
      else
        out.insert(out.end(), pieces.begin(), pieces.end());
    }
    stretch.clear();
  };
  size_t i = 0;
  while (i < input.size()) {
    size_t matched = 0;
    std::string special;
    if (input[i] == U'[') {
      for (const char* token : kBertSpecialTokens) {
        const std::string s(token);
        if (s.size() > matched && input.compare(i, s.size(), std::u32string(s.begin(), s.end())) == 0) {
          matched = s.size();
          special = s;
        }
      }
    }
    if (matched) {
      flush();
      out.push_back(special);
      i += matched;
    } else {
      bert_lower_char(input[i], stretch);
      ++i;
    }
  }
  flush();
  return out;
}

std::vector<int64_t> BertTokenizer::encode(const std::string& text) const {
  std::vector<int64_t> ids;
  for (const std::string& token : tokenize_words(text)) {
    const auto it = vocab_->ids.find(token);
    ids.push_back(it == vocab_->ids.end() ? vocab_->unk : it->second);
  }
  return ids;
}

BertTokens BertTokenizer::tokenize(const std::vector<std::string>& texts) const {
  const auto batch = static_cast<int64_t>(texts.size());
  BertTokens out{torch::full({batch, max_length_}, vocab_->pad, torch::kInt64),
                 torch::zeros({batch, max_length_}, torch::kInt64)};
  auto ids = out.input_ids.accessor<int64_t, 2>();
  auto mask = out.attention_mask.accessor<int64_t, 2>();
  for (int64_t b = 0; b < batch; ++b) {
    std::vector<int64_t> row = encode(texts[static_cast<size_t>(b)]);
    if (static_cast<int64_t>(row.size()) > max_length_ - 2) row.resize(static_cast<size_t>(max_length_ - 2));
    row.insert(row.begin(), vocab_->cls);
    row.push_back(vocab_->sep);
    for (size_t t = 0; t < row.size(); ++t) {
      ids[b][static_cast<int64_t>(t)] = row[t];
      mask[b][static_cast<int64_t>(t)] = 1;
    }
  }
  return out;
}

}  // namespace ilf
