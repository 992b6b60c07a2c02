// Strict JSON parsing (see include/ilf/io/json.h).
#include "ilf/io/json.h"

#include <cstdint>
#include <set>
#include <vector>

#include "ilf/error.h"

namespace ilf {

nlohmann::json parse_json_strict(const std::string& text, const std::string& source, bool ignore_comments) {
  using Json = nlohmann::json;
  struct Level {
    bool object = false;
    std::set<std::string> keys;
    std::string last_key;
  };
  std::vector<Level> stack;
  auto path = [&]() {
    std::string p;
    for (const auto& level : stack)
      if (level.object && !level.last_key.empty()) p += (p.empty() ? "" : ".") + level.last_key;
    return p.empty() ? std::string("the top level") : "\"" + p + "\"";
  };
  const Json::parser_callback_t check = [&](int /*depth*/, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
      case Json::parse_event_t::array_start:
        if (static_cast<int>(stack.size()) >= kMaxJsonDepth)
          throw Error(source + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels at " + path());
        stack.push_back(Level{event == Json::parse_event_t::object_start, {}, {}});
        break;
      case Json::parse_event_t::object_end:
      case Json::parse_event_t::array_end:
        if (!stack.empty()) stack.pop_back();
        break;
      case Json::parse_event_t::key: {
        Level& level = stack.back();
        const std::string key = parsed.get<std::string>();
        level.last_key = key;
        if (!level.keys.insert(key).second) throw Error(source + ": duplicate key " + path() + " in the JSON");
        break;
      }
      case Json::parse_event_t::value: break;
    }
    return true;
  };
  try {
    return Json::parse(text, check, /*allow_exceptions=*/true, ignore_comments);
  } catch (const Json::out_of_range& e) {  // a number beyond double (406), found by fuzz_run_config
    throw Error(source + ": invalid JSON (" + e.what() + ")");
  }
}

bool is_valid_utf8(const std::string& text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const unsigned char c = s[i];
    size_t len = 0;
    uint32_t cp = 0;
    if (c < 0x80)
      len = 1, cp = c;
    else if ((c & 0xE0) == 0xC0)
      len = 2, cp = c & 0x1F;
    else if ((c & 0xF0) == 0xE0)
      len = 3, cp = c & 0x0F;
    else if ((c & 0xF8) == 0xF0)
      len = 4, cp = c & 0x07;
    else
      return false;
    if (i + len > n) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (s[i + k] & 0x3F);
    }
    // Overlong forms, UTF-16 surrogates and code points above U+10FFFF are not UTF-8.
    static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return false;
    i += len;
  }
  return true;
}

}  // namespace ilf
