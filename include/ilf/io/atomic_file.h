// Atomic file output: write to a temporary file beside the target, flush and fsync it, then rename
// it over the target. A crash or an exception never leaves a partial file at the target path.
#pragma once
#include <functional>
#include <ostream>
#include <string>

namespace ilf {

// Calls `write(stream)`; on success the bytes appear at `path` in one rename. On any exception the
// temporary file is removed and the exception propagates; `path` is untouched.
void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write);

}  // namespace ilf
