// Checks shared by every layer: non-finite values (NaN / Inf) in tensors, size arithmetic that cannot
// overflow, and short one-line forms of long texts and LibTorch errors for messages. Header-only, so
// that the lowest layer can use them.
#pragma once
#include <c10/util/Exception.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <exception>
#include <string>
#include <vector>

#include "ilf/error.h"

namespace ilf {

// At most `max_chars` bytes of `text` (cut on a UTF-8 character boundary), with "..." and the full
// length when cut: long inputs (a 1 MB prompt line) are never echoed in full.
inline std::string abbreviated(const std::string& text, size_t max_chars = 80) {
  if (text.size() <= max_chars) return text;
  size_t cut = max_chars;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;  // not inside a character
  return text.substr(0, cut) + "... (" + std::to_string(text.size()) + " bytes)";
}

// ceil(n / d) for n >= 0, d >= 1, without the overflow of (n + d - 1) / d (d = 2^63-1 made it negative).
inline int64_t ceil_div(int64_t n, int64_t d) {
  if (n < 0 || d < 1) throw Error("ceil_div: expected n >= 0 and d >= 1");
  return n / d + (n % d != 0 ? 1 : 0);
}

// True when every element of a floating-point tensor is finite (integer, bool and complex tensors are
// not checked).
// The sum is the fast path (any NaN or Inf makes it non-finite; no temporary as large as the tensor);
// only a non-finite sum, which overflow of finite values can also give, is checked element by element.
// Reads only: the tensor is unchanged.
inline bool all_finite(const torch::Tensor& t) {
  if (!t.defined() || t.numel() == 0 || !t.is_floating_point()) return true;
  torch::NoGradGuard no_grad;
  // float32 sums of float32 / float16 / bfloat16 (no float16 overflow at 65504), double of double.
  const torch::Tensor sum = t.sum(t.scalar_type() == torch::kDouble ? torch::kDouble : torch::kFloat);
  if (std::isfinite(sum.item<double>())) return true;
  return torch::isfinite(t).all().item<bool>();
}

// Throws ilf::Error "<what>: holds NaN or Inf values (<detail>)" unless every element is finite.
inline void require_finite(const torch::Tensor& t, const std::string& what, const std::string& detail = "") {
  if (all_finite(t)) return;
  const int64_t bad = (~torch::isfinite(t.detach())).sum().item<int64_t>();
  throw Error(what + ": holds " + std::to_string(bad) + " NaN or Inf value" + (bad == 1 ? "" : "s") + " of " +
              std::to_string(t.numel()) + (detail.empty() ? "" : " (" + detail + ")"));
}

// A LibTorch error in one short line: TorchScript's interpreter errors carry a serialized-code
// traceback of many lines (2 KB for a wrong VAE file); the line that says what went wrong is the last
// one ("RuntimeError: ..."), other errors keep their first line. At most `max_chars` characters. The
// interpreter throws c10::Error or a plain std::runtime_error; both are shortened (a c10::Error without
// its C++ backtrace).
inline std::string short_torch_error(const std::exception& e, size_t max_chars = 200) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  const std::string text = c10_error ? c10_error->what_without_backtrace() : e.what();
  std::vector<std::string> lines;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = text.find('\n', start);
    std::string line = text.substr(start, end == std::string::npos ? std::string::npos : end - start);
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
    size_t lead = 0;
    while (lead < line.size() && line[lead] == ' ') ++lead;
    if (lead < line.size()) lines.push_back(line.substr(lead));
    if (end == std::string::npos) break;
    start = end + 1;
  }
  if (lines.empty()) return "unknown LibTorch error";
  const bool traceback = text.find("Traceback of TorchScript") != std::string::npos;
  return abbreviated(traceback ? lines.back() : lines.front(), max_chars);
}

}  // namespace ilf
