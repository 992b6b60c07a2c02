// Strict JSON parsing (see include/ilf/io/json.h).
#include "ilf/io/json.h"

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
      case Json::parse_event_t::value:
        break;
    }
    return true;
  };
  return Json::parse(text, check, /*allow_exceptions=*/true, ignore_comments);
}

}  // namespace ilf
