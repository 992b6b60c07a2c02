// Strict JSON parsing shared by every reader of untrusted JSON (configs, --set values, model.json,
// sweep files, safetensors headers, checkpoint metadata): duplicate keys in an object are refused
// (nlohmann keeps the last one silently) and nesting is bounded, so that a hostile file cannot
// overflow the stack of the recursive code that walks the tree later (dump, copy, key checks).
#pragma once
#include <nlohmann/json.hpp>

#include <string>

namespace ilf {

// The deepest nesting of objects and arrays accepted (the deepest config in configs/ uses 4).
constexpr int kMaxJsonDepth = 64;

// Parses `text`. Syntax errors propagate as nlohmann::json::parse_error (callers word them);
// a number beyond double, a duplicate key or nesting deeper than kMaxJsonDepth throws ilf::Error
// naming `source` (and the key's path "a.b.c" for the last two).
nlohmann::json parse_json_strict(const std::string& text, const std::string& source, bool ignore_comments = false);

// Whether `text` is valid UTF-8 (what JSON strings must be: nlohmann's parser refuses anything else,
// and dump() throws on it). Text that does not come through the parser (--set values taken as plain
// strings) is checked with this before it enters a config.
bool is_valid_utf8(const std::string& text);

}  // namespace ilf
