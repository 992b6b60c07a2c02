// Small string helpers shared across layers (lists in error messages), so that no file keeps a private
// copy: in a unity build (CMakeLists.txt, ILF_UNITY_BUILD) two private copies in one batch collide.
#pragma once
#include <sstream>
#include <string>
#include <vector>

namespace ilf {

// "a, b, c" (or joined by `separator`).
inline std::string join(const std::vector<std::string>& items, const std::string& separator = ", ") {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? separator : "") + items[i];
  return out;
}

// A number in messages as short as it reads ("1e-300", not std::to_string's "0.000000").
inline std::string number_text(double value) {
  std::ostringstream s;
  s << value;
  return s.str();
}

}  // namespace ilf
