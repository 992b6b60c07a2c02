// Error type used across ILF: every failure a user can cause (bad config, bad weights, impossible
// settings) throws ilf::Error with a message that names the file, key or field and what was expected.
#pragma once
#include <stdexcept>
#include <string>

namespace ilf {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

}  // namespace ilf
