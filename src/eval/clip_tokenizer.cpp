// The CLIP BPE tokenizer (include/ilf/eval/clip_tokenizer.h): text normalisation, the pre-tokenizer
// pattern matched by hand over code points with the Unicode tables of clip_unicode_tables.inc, GPT-2's
// byte-to-character map, and rank-ordered BPE merges, as transformers' CLIPTokenizer and open_clip's
// SimpleTokenizer do them.
#include "ilf/io/atomic_file.h"
#include "ilf/eval/clip_tokenizer.h"

#include <zlib.h>

#include <algorithm>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ilf/error.h"
#include "ilf/io/json.h"

namespace ilf {

namespace {

struct ClipCodeRange {
  char32_t first, last;
};
struct ClipCaseMap {
  char32_t from, to;
};
#include "clip_unicode_tables.inc"

template <size_t N>
bool clip_in_ranges(const ClipCodeRange (&ranges)[N], char32_t c) {
  const auto* end = ranges + N;
  const auto* it = std::upper_bound(ranges, end, c, [](char32_t v, const ClipCodeRange& r) { return v < r.first; });
  return it != ranges && c <= (it - 1)->last;
}
bool clip_is_letter(char32_t c) { return clip_in_ranges(kClipLetterRanges, c); }
bool clip_is_number(char32_t c) { return clip_in_ranges(kClipNumberRanges, c); }
// White space: Python's str.isspace (open_clip) or, for transformers (tokenizers' \s, Unicode White_Space),
// the same without the separators U+001C..U+001F.
bool clip_is_space(char32_t c, bool python) {
  if (!python && c >= 0x1C && c <= 0x1F) return false;
  return clip_in_ranges(kClipSpaceRanges, c);
}

void clip_append_lower(char32_t c, std::u32string& out) {
  if (c == 0x130) {  // LATIN CAPITAL LETTER I WITH DOT ABOVE: the one multi-character lower case
    out += U'i';
    out += char32_t{0x307};
    return;
  }
  const auto* end = kClipLowerMap + sizeof(kClipLowerMap) / sizeof(kClipLowerMap[0]);
  const auto* it = std::lower_bound(kClipLowerMap, end, c, [](const ClipCaseMap& m, char32_t v) { return m.from < v; });
  out += (it != end && it->from == c) ? it->to : c;
}

// UTF-8 -> code points; an invalid byte becomes U+FFFD (as Python's errors="replace" would).
std::u32string clip_decode_utf8(const std::string& s) {
  std::u32string out;
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    int len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + static_cast<size_t>(len) > s.size()) {
      out += char32_t{0xFFFD};
      ++i;
      continue;
    }
    char32_t c = len == 1 ? b : len == 2 ? (b & 0x1F) : len == 3 ? (b & 0x0F) : (b & 0x07);
    bool ok = true;
    for (int k = 1; k < len; ++k) {
      const auto cb = static_cast<unsigned char>(s[i + static_cast<size_t>(k)]);
      if ((cb & 0xC0) != 0x80) ok = false;
      c = (c << 6) | (cb & 0x3F);
    }
    if (!ok) {
      out += char32_t{0xFFFD};
      ++i;
      continue;
    }
    out += c;
    i += static_cast<size_t>(len);
  }
  return out;
}

void clip_append_utf8(char32_t c, std::string& out) {
  if (c < 0x80) {
    out += static_cast<char>(c);
  } else if (c < 0x800) {
    out += static_cast<char>(0xC0 | (c >> 6));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    out += static_cast<char>(0xE0 | (c >> 12));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (c >> 18));
    out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

std::string clip_encode_utf8(const std::u32string& s) {
  std::string out;
  for (char32_t c : s) clip_append_utf8(c, out);
  return out;
}

// GPT-2's byte -> printable character map: the printable Latin-1 bytes map to themselves, the other
// bytes in order to U+0100, U+0101, ... The order of the printable ones first is also the order of the
// first 256 ids of the vocabulary built from the .gz.
const std::vector<std::pair<int, char32_t>>& clip_byte_order() {
  static const std::vector<std::pair<int, char32_t>> order = [] {
    std::vector<std::pair<int, char32_t>> v;
    std::vector<bool> taken(256, false);
    auto add_range = [&](int a, int b) {
      for (int x = a; x <= b; ++x) {
        v.emplace_back(x, static_cast<char32_t>(x));
        taken[static_cast<size_t>(x)] = true;
      }
    };
    add_range('!', '~');
    add_range(0xA1, 0xAC);
    add_range(0xAE, 0xFF);
    int n = 0;
    for (int x = 0; x < 256; ++x)
      if (!taken[static_cast<size_t>(x)]) v.emplace_back(x, static_cast<char32_t>(256 + n++));
    return v;
  }();
  return order;
}

const std::vector<std::string>& clip_byte_symbols() {  // byte value -> its character, UTF-8 encoded
  static const std::vector<std::string> table = [] {
    std::vector<std::string> t(256);
    for (const auto& [byte, c] : clip_byte_order()) {
      std::string s;
      clip_append_utf8(c, s);
      t[static_cast<size_t>(byte)] = s;
    }
    return t;
  }();
  return table;
}

bool clip_starts_with(const std::u32string& s, size_t i, const std::u32string& prefix) {
  return s.compare(i, prefix.size(), prefix) == 0;
}

// html.unescape's numeric references and a few named entities (see the header for what is left out).
std::u32string clip_html_unescape(const std::u32string& s) {
  static const std::pair<std::u32string, char32_t> kNamed[] = {
      {U"&amp;", U'&'}, {U"&lt;", U'<'}, {U"&gt;", U'>'}, {U"&quot;", U'"'}, {U"&apos;", U'\''}, {U"&nbsp;", char32_t{0xA0}}};
  std::u32string out;
  for (size_t i = 0; i < s.size();) {
    if (s[i] == U'&') {
      bool done = false;
      for (const auto& [name, c] : kNamed) {
        if (clip_starts_with(s, i, name)) {
          out += c;
          i += name.size();
          done = true;
          break;
        }
      }
      if (done) continue;
      if (i + 2 < s.size() && s[i + 1] == U'#') {
        size_t j = i + 2;
        const bool hex = s[j] == U'x' || s[j] == U'X';
        if (hex) ++j;
        uint64_t value = 0;
        size_t digits = 0;
        while (j < s.size() && digits < 8) {
          const char32_t d = s[j];
          int v = -1;
          if (d >= U'0' && d <= U'9') v = static_cast<int>(d - U'0');
          if (hex && d >= U'a' && d <= U'f') v = static_cast<int>(d - U'a' + 10);
          if (hex && d >= U'A' && d <= U'F') v = static_cast<int>(d - U'A' + 10);
          if (v < 0) break;
          value = value * (hex ? 16 : 10) + static_cast<uint64_t>(v);
          ++j;
          ++digits;
        }
        if (digits > 0 && j < s.size() && s[j] == U';' && value > 0 && value <= 0x10FFFF &&
            !(value >= 0xD800 && value <= 0xDFFF)) {
          out += static_cast<char32_t>(value);
          i = j + 1;
          continue;
        }
      }
    }
    out += s[i++];
  }
  return out;
}

// White space runs -> one space, then lower case; open_clip's (python) also strips both ends.
std::u32string clip_clean_lower(const std::u32string& s, bool python) {
  const bool strip = python;
  std::u32string spaced;
  for (size_t i = 0; i < s.size();) {
    if (clip_is_space(s[i], python)) {
      while (i < s.size() && clip_is_space(s[i], python)) ++i;
      spaced += U' ';
    } else {
      spaced += s[i++];
    }
  }
  if (strip) {
    const size_t a = spaced.find_first_not_of(U' ');
    spaced = a == std::u32string::npos ? std::u32string() : spaced.substr(a, spaced.find_last_not_of(U' ') - a + 1);
  }
  std::u32string lower;
  for (size_t i = 0; i < spaced.size(); ++i) {
    // Python's str.lower (open_clip) writes a capital sigma that ends a word as the final sigma; "cased
    // letter" is approximated by letter here (tokenizers' Lowercase has no such rule)
    const bool final_sigma = python && spaced[i] == 0x3A3 && i > 0 && clip_is_letter(spaced[i - 1]) &&
                             (i + 1 == spaced.size() || !clip_is_letter(spaced[i + 1]));
    if (final_sigma) {
      lower += char32_t{0x3C2};
    } else {
      clip_append_lower(spaced[i], lower);
    }
  }
  return lower;
}

std::string clip_read_text_file(const std::string& path, const char* what) {
  require_regular_file(path, "CLIP tokenizer file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("CLIP tokenizer: cannot open " + std::string(what) + " " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string clip_read_gz(const std::string& path) {
  require_regular_file(path, "CLIP BPE vocabulary");
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw Error("CLIP tokenizer: cannot open " + path);
  std::string out;
  char buffer[1 << 16];
  int n = 0;
  while ((n = gzread(f, buffer, sizeof(buffer))) > 0) out.append(buffer, static_cast<size_t>(n));
  const bool failed = n < 0;
  gzclose(f);
  if (failed) throw Error("CLIP tokenizer: " + path + " is not a readable gzip file");
  return out;
}

std::vector<std::string> clip_split_lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
    start = end + 1;
  }
  return lines;
}

std::pair<std::string, std::string> clip_parse_merge(const std::string& line, const std::string& source, size_t number) {
  std::istringstream ss(line);
  std::string a, b, extra;
  if (!(ss >> a >> b) || (ss >> extra))
    throw Error("CLIP tokenizer: " + source + " line " + std::to_string(number) + " is not a merge \"a b\": " + line);
  return {a, b};
}

}  // namespace

ClipTokenizer::ClipTokenizer(std::unordered_map<std::string, int64_t> vocab,
                             const std::vector<std::pair<std::string, std::string>>& merges, Flavor flavor,
                             const std::string& source)
    : vocab_(std::move(vocab)), flavor_(flavor), source_(source) {
  // a merge listed twice keeps its last rank, as the references' dicts / hash maps built from the list do
  for (size_t i = 0; i < merges.size(); ++i) ranks_[merges[i]] = static_cast<int64_t>(i);
  bos_text_ = flavor == Flavor::kTransformers ? "<|startoftext|>" : "<start_of_text>";
  eos_text_ = flavor == Flavor::kTransformers ? "<|endoftext|>" : "<end_of_text>";
  const auto bos = vocab_.find(bos_text_), eos = vocab_.find(eos_text_);
  if (bos == vocab_.end() || eos == vocab_.end())
    throw Error("CLIP tokenizer: " + source + " has no \"" + (bos == vocab_.end() ? bos_text_ : eos_text_) + "\" token");
  bos_id_ = bos->second;
  eos_id_ = eos->second;
}

ClipTokenizer ClipTokenizer::from_folder(const std::string& folder) {
  const std::string vocab_path = folder + "/vocab.json", merges_path = folder + "/merges.txt";
  const auto json = parse_json_strict(clip_read_text_file(vocab_path, "vocabulary"), vocab_path);
  if (!json.is_object()) throw Error("CLIP tokenizer: " + vocab_path + " is not a JSON object of token -> id");
  std::unordered_map<std::string, int64_t> vocab;
  for (const auto& [token, id] : json.items()) {
    if (!id.is_number_integer()) throw Error("CLIP tokenizer: " + vocab_path + ": the id of \"" + token + "\" is not an integer");
    vocab[token] = id.get<int64_t>();
  }
  std::vector<std::pair<std::string, std::string>> merges;
  const auto lines = clip_split_lines(clip_read_text_file(merges_path, "merges"));
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].empty() || (i == 0 && lines[i].rfind("#version", 0) == 0)) continue;
    merges.push_back(clip_parse_merge(lines[i], merges_path, i + 1));
  }
  return ClipTokenizer(std::move(vocab), merges, Flavor::kTransformers, folder);
}

ClipTokenizer ClipTokenizer::from_bpe_gz(const std::string& path) {
  const auto lines = clip_split_lines(clip_read_gz(path));
  constexpr size_t kMerges = 49152 - 256 - 2;  // CLIP uses lines 1 .. 48894 of the file
  if (lines.size() < kMerges + 1)
    throw Error("CLIP tokenizer: " + path + " has " + std::to_string(lines.size()) + " lines, CLIP's vocabulary needs " +
                std::to_string(kMerges + 1));
  std::vector<std::pair<std::string, std::string>> merges;
  for (size_t i = 1; i <= kMerges; ++i) merges.push_back(clip_parse_merge(lines[i], path, i + 1));
  std::unordered_map<std::string, int64_t> vocab;
  int64_t next = 0;
  auto add = [&](const std::string& token) { vocab[token] = next++; };  // a repeated token keeps its last id (Python's dict)
  for (const auto& entry : clip_byte_order()) add(clip_byte_symbols()[static_cast<size_t>(entry.first)]);
  for (const auto& entry : clip_byte_order()) add(clip_byte_symbols()[static_cast<size_t>(entry.first)] + "</w>");
  for (const auto& [a, b] : merges) add(a + b);
  add("<start_of_text>");
  add("<end_of_text>");
  return ClipTokenizer(std::move(vocab), merges, Flavor::kOpenClip, path);
}

void ClipTokenizer::bpe_piece(const std::string& piece, std::vector<int64_t>& out) const {
  // symbols: the piece's bytes as GPT-2 characters, "</w>" on the last one
  std::vector<std::string> word;
  for (unsigned char b : piece) word.push_back(clip_byte_symbols()[b]);
  if (word.empty()) return;
  word.back() += "</w>";
  while (word.size() > 1) {
    int64_t best = std::numeric_limits<int64_t>::max();
    std::pair<std::string, std::string> best_pair;
    for (size_t i = 0; i + 1 < word.size(); ++i) {
      const auto it = ranks_.find({word[i], word[i + 1]});
      if (it != ranks_.end() && it->second < best) {
        best = it->second;
        best_pair = it->first;
      }
    }
    if (best == std::numeric_limits<int64_t>::max()) break;
    std::vector<std::string> merged;  // every occurrence, left to right
    for (size_t i = 0; i < word.size();) {
      if (i + 1 < word.size() && word[i] == best_pair.first && word[i + 1] == best_pair.second) {
        merged.push_back(word[i] + word[i + 1]);
        i += 2;
      } else {
        merged.push_back(word[i++]);
      }
    }
    word = std::move(merged);
  }
  for (const auto& symbol : word) {
    const auto it = vocab_.find(symbol);
    out.push_back(it != vocab_.end() ? it->second : eos_id_);  // the unknown token is "<|endoftext|>"
  }
}

// The pre-tokenizer pattern over already normalised text (see the header), then BPE per piece.
void ClipTokenizer::encode_normalised(const std::u32string& text, std::vector<int64_t>& out) const {
  static const std::u32string kContractions[] = {U"'s", U"'t", U"'re", U"'ve", U"'m", U"'ll", U"'d"};
  const std::u32string bos = clip_decode_utf8(bos_text_), eos = clip_decode_utf8(eos_text_);
  const bool open_clip = flavor_ == Flavor::kOpenClip;
  size_t i = 0;
  while (i < text.size()) {
    const char32_t c = text[i];
    size_t end = i;
    bool special = false;
    if (clip_starts_with(text, i, bos) || clip_starts_with(text, i, eos)) {
      end = i + bos.size() * clip_starts_with(text, i, bos) + eos.size() * !clip_starts_with(text, i, bos);
      special = open_clip;  // open_clip maps the special words to their ids; transformers BPE-encodes them
    } else if (c == U'\'' && std::any_of(std::begin(kContractions), std::end(kContractions),
                                         [&](const std::u32string& k) { return clip_starts_with(text, i, k); })) {
      for (const auto& k : kContractions) {
        if (clip_starts_with(text, i, k)) {
          end = i + k.size();
          break;
        }
      }
    } else if (clip_is_letter(c)) {
      end = i;
      while (end < text.size() && clip_is_letter(text[end])) ++end;
    } else if (clip_is_number(c)) {
      end = i + 1;
    } else if (!clip_is_space(c, open_clip)) {
      end = i;
      while (end < text.size() && !clip_is_space(text[end], open_clip) && !clip_is_letter(text[end]) &&
             !clip_is_number(text[end]))
        ++end;
    } else {
      ++i;
      continue;
    }
    const std::u32string piece = text.substr(i, end - i);
    if (special) {
      out.push_back(piece == bos ? bos_id_ : eos_id_);
    } else {
      bpe_piece(clip_encode_utf8(piece), out);
    }
    i = end;
  }
}

std::vector<int64_t> ClipTokenizer::encode(const std::string& text) const {
  std::vector<int64_t> out;
  const std::u32string raw = clip_decode_utf8(text);
  if (flavor_ == Flavor::kOpenClip) {
    encode_normalised(clip_clean_lower(clip_html_unescape(clip_html_unescape(raw)), true), out);
    return out;
  }
  // transformers: the special tokens are matched in the raw text before normalisation
  const std::u32string bos = clip_decode_utf8(bos_text_), eos = clip_decode_utf8(eos_text_);
  size_t start = 0;
  for (size_t i = 0; i <= raw.size();) {
    const bool at_bos = i < raw.size() && clip_starts_with(raw, i, bos);
    const bool at_eos = i < raw.size() && !at_bos && clip_starts_with(raw, i, eos);
    if (i == raw.size() || at_bos || at_eos) {
      encode_normalised(clip_clean_lower(raw.substr(start, i - start), false), out);
      if (i == raw.size()) break;
      out.push_back(at_bos ? bos_id_ : eos_id_);
      i += at_bos ? bos.size() : eos.size();
      start = i;
    } else {
      ++i;
    }
  }
  return out;
}

torch::Tensor ClipTokenizer::encode_batch(const std::vector<std::string>& texts, int64_t length) const {
  std::vector<std::vector<int64_t>> rows;
  int64_t longest = 0;
  for (const auto& text : texts) {
    std::vector<int64_t> row{bos_id_};
    const auto ids = encode(text);
    row.insert(row.end(), ids.begin(), ids.end());
    row.push_back(eos_id_);
    longest = std::max(longest, static_cast<int64_t>(row.size()));
    rows.push_back(std::move(row));
  }
  const int64_t width = std::min(longest, length);
  auto result = torch::full({static_cast<int64_t>(texts.size()), width}, pad_id(), torch::kInt64);  // (N, width)
  auto acc = result.accessor<int64_t, 2>();
  for (size_t n = 0; n < rows.size(); ++n)
    for (int64_t t = 0; t < std::min(width, static_cast<int64_t>(rows[n].size())); ++t)
      acc[static_cast<int64_t>(n)][t] = rows[n][static_cast<size_t>(t)];
  return result;
}

torch::Tensor ClipTokenizer::encode_open_clip(const std::vector<std::string>& texts, int64_t length) const {
  auto result = torch::zeros({static_cast<int64_t>(texts.size()), length}, torch::kInt64);  // (N, length)
  auto acc = result.accessor<int64_t, 2>();
  for (size_t n = 0; n < texts.size(); ++n) {
    std::vector<int64_t> row{bos_id_};
    const auto ids = encode(texts[n]);
    row.insert(row.end(), ids.begin(), ids.end());
    row.push_back(eos_id_);
    if (static_cast<int64_t>(row.size()) > length) {
      row.resize(static_cast<size_t>(length));
      row.back() = eos_id_;
    }
    for (size_t t = 0; t < row.size(); ++t) acc[static_cast<int64_t>(n)][static_cast<int64_t>(t)] = row[t];
  }
  return result;
}

}  // namespace ilf
