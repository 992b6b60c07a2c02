// What every command-line tool shares: the checks of its numeric flags, the parsing of the command
// line and the one-line error report. One place, so that `--steps 0`, `--seed -1` or `--cfg nan` are
// refused the same way by every tool instead of wrapping or falling back silently.
//
//   app.add_option("--steps", steps, "...")->transform(ilf::cli::Count);
//   app.add_option("--seed", seed, "...")->transform(ilf::cli::Seed);
//   if (const int code = ilf::cli::parse(app, argc, argv, "ilf_sample"); code >= 0) return code;
//   try { ... } catch (...) { return ilf::cli::report_error("ilf_sample"); }
//
// Count and Seed go in with transform(), not check(): they hand CLI11 the decimal number they parsed
// (check() would discard it, and CLI11 alone reads "010" as octal 8).
// Usage errors exit with status 2, run-time errors with status 1; both print one line, never a
// LibTorch backtrace.
#pragma once
#include <c10/util/Exception.h>

#include <CLI/CLI.hpp>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <exception>
#include <iostream>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <string>

#include "ilf/util/checks.h"

namespace ilf::cli {

// Exit status of a command line that does not parse or fails a flag's check.
constexpr int kUsageError = 2;
// Exit status of an error while running.
constexpr int kRunError = 1;

namespace detail {

// The value as given, in quotes; at most 80 bytes of it (a flag's value can be a 1 MB line).
inline std::string quoted(const std::string& s) { return "\"" + abbreviated(s, 80) + "\""; }

// The bound as written in messages: "1e+308" style, not std::to_string's "1000.000000".
inline std::string bound_text(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

// A decimal integer (optional leading '-' for signed types) filling all of `text`; false on anything
// else, including overflow.
template <typename T>
bool parse_integer(const std::string& text, T& value) {
  if (text.empty()) return false;
  const char* begin = text.data();
  const char* end = begin + text.size();
  if (*begin == '+') ++begin;
  const auto [ptr, ec] = std::from_chars(begin, end, value, 10);
  return ec == std::errc() && ptr == end && begin != end;
}

// A finite decimal number filling all of `text` into `value`; false on anything else (nan, inf, "1x").
inline bool parse_finite(const std::string& text, double& value) {
  size_t used = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    return false;
  }
  return used != 0 && used == text.size() && std::isfinite(value);
}

}  // namespace detail

// A count (steps, images, batch size): an integer from 1 to 2^63-1.
inline const CLI::Validator Count(
    [](std::string& text) -> std::string {
      int64_t value = 0;
      if (!detail::parse_integer(text, value) || value < 1) return "expected an integer >= 1, got " + detail::quoted(text);
      text = std::to_string(value);  // CLI11 would read a leading zero as octal ("010" -> 8)
      return "";
    },
    "INT>=1", "Count");

// A count from 1 to `max` (a batch, an image side, a resolution): larger ones cannot run, and used to
// overflow the arithmetic on them (--batch 2^63-1 ran nothing at exit 0) or be cut when narrowed to int
// (--resolution 4294967328 became 32).
inline CLI::Validator CountUpTo(int64_t max) {
  return CLI::Validator(
      [max](std::string& text) -> std::string {
        int64_t value = 0;
        if (!detail::parse_integer(text, value) || value < 1 || value > max)
          return "expected an integer from 1 to " + std::to_string(max) + ", got " + detail::quoted(text);
        text = std::to_string(value);
        return "";
      },
      "INT in [1, " + std::to_string(max) + "]", "CountUpTo");
}

// A seed: an integer from 0 to 2^64-1 (18446744073709551615), no sign, no wrap, no clamp.
inline const CLI::Validator Seed(
    [](std::string& text) -> std::string {
      uint64_t value = 0;
      if (text.empty() || text[0] == '-' || text[0] == '+' || !detail::parse_integer(text, value))
        return "expected an integer from 0 to 18446744073709551615, got " + detail::quoted(text);
      text = std::to_string(value);  // CLI11 would read a leading zero as octal ("010" -> 8)
      return "";
    },
    "UINT64", "Seed");

// A finite number >= 0 (guidance scales, factors): nan, inf and negative values are refused.
inline const CLI::Validator FiniteNonNegative(
    [](std::string& text) -> std::string {
      double value = 0;
      if (!detail::parse_finite(text, value) || value < 0) return "expected a finite number >= 0, got " + detail::quoted(text);
      return "";
    },
    "FLOAT>=0", "FiniteNonNegative");

// A finite number > 0 (a fraction that 0 would turn into "not given"): nan, inf, 0 and negative values
// are refused.
inline const CLI::Validator FinitePositive(
    [](std::string& text) -> std::string {
      double value = 0;
      if (!detail::parse_finite(text, value) || !(value > 0)) return "expected a finite number > 0, got " + detail::quoted(text);
      return "";
    },
    "FLOAT>0", "FinitePositive");

// A path that must not be empty (--out ""): an empty output path used to fall back silently to a
// default file (./sample.png, the shipped teacache.json).
inline const CLI::Validator NonEmpty([](std::string& text)
                                         -> std::string { return text.empty() ? "expected a path, got an empty string" : ""; },
                                     "PATH", "NonEmpty");

// A finite number from `min` to `max` (guidance scales, latent scales, fractions), the same range the
// config key of the flag has.
inline CLI::Validator NumberInRange(double min, double max) {
  return CLI::Validator(
      [min, max](std::string& text) -> std::string {
        double value = 0;
        if (!detail::parse_finite(text, value) || value < min || value > max)
          return "expected a number from " + detail::bound_text(min) + " to " + detail::bound_text(max) + ", got " +
                 detail::quoted(text);
        return "";
      },
      "FLOAT in [" + detail::bound_text(min) + ", " + detail::bound_text(max) + "]", "NumberInRange");
}

// Parses the command line. Returns -1 to go on; otherwise the status to exit with: 0 after --help,
// kUsageError after a usage error (printed as one line "tool: error: ...").
inline int parse(CLI::App& app, int argc, char** argv, const std::string& tool) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << tool << ": error: " << abbreviated(e.what(), 2000) << " (see " << tool << " --help)" << std::endl;
    return kUsageError;
  }
  return -1;
}

// The message of the exception being handled, in one line (a c10::Error without LibTorch's
// backtrace). Call it inside a catch block.
inline std::string current_error_message() {
  std::string text;
  try {
    throw;
  } catch (const std::bad_alloc&) {
    text = "out of memory (a size in the config or the flags is too large?)";
  } catch (const c10::Error& e) {
    text = e.what_without_backtrace();
  } catch (const std::exception& e) {
    text = e.what();
  } catch (...) {
    text = "unknown exception";
  }
  // Never a TorchScript traceback (2 KB of serialized code): its last line says what failed.
  if (text.find("Traceback of TorchScript") != std::string::npos) text = short_torch_error(std::runtime_error(text), 500);
  for (char& c : text)
    if (c == '\n' || c == '\r') c = ' ';
  return abbreviated(text, 2000);  // no message of a megabyte, whatever it quotes
}

// Prints the exception being handled as "tool: error: <one line>" and returns kRunError. Call it
// inside a catch block.
inline int report_error(const std::string& tool) {
  std::cerr << tool << ": error: " << current_error_message() << std::endl;
  return kRunError;
}

}  // namespace ilf::cli
