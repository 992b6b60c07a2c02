// Atomic file output: write to a temporary file beside the target, flush and fsync it, then rename
// it over the target. A crash or an exception never leaves a partial file at the target path.
//
// Only regular files are replaced: a target that is a directory, a device, a fifo or a socket is
// refused with an ilf::Error before anything is written. A symbolic link is followed: its target
// file is replaced atomically (the temporary file lies in the target's folder) and the link stays.
#pragma once
#include <functional>
#include <ostream>
#include <string>
#include <vector>

namespace ilf {

// Calls `write(stream)`; on success the bytes appear at `path` in one rename. On any exception the
// temporary file is removed and the exception propagates; `path` is untouched.
void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write);

// The file that writing `path` replaces: `path` itself, or the file its symbolic link(s) name.
// Throws ilf::Error naming `path` when that is not a regular file (directory, device, fifo, socket).
std::string resolve_output_path(const std::string& path);

// Removes the temporary files "<name>.tmp.<pid>" that a killed writer left in `folder` (not those of
// a process that is still running). Returns the paths removed.
std::vector<std::string> remove_stale_temporary_files(const std::string& folder);

}  // namespace ilf
