// Shared by the request parser and the service (src/serve/ only): which config sections a request may
// set, and how a dotted key is written into a config.
#pragma once
#include <string>
#include <vector>

#include "ilf/io/config.h"

namespace ilf::serve {

// "sampling", "ilf" and every acceleration method's section: what a request's "settings" may name.
std::vector<std::string> request_settable_sections();

// json["a"]["b"]["c"] = value for key "a.b.c" (objects created on the way; a non-object replaced).
void set_dotted_key(Json& json, const std::string& key, const Json& value);

}  // namespace ilf::serve
