// Small string helpers shared across layers (lists in error messages), so that no file keeps a private
// copy: in a unity build (CMakeLists.txt, ILF_UNITY_BUILD) two private copies in one batch collide.
#pragma once
#include <string>
#include <vector>

namespace ilf {

// "a, b, c" (or joined by `separator`).
inline std::string join(const std::vector<std::string>& items, const std::string& separator = ", ") {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? separator : "") + items[i];
  return out;
}

}  // namespace ilf
