// Files: atomic output, the check that an input is a regular file, and the removal of temporary files
// that killed writers left.
//
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

// Checks, before a long run, that write_file_atomically(path, ...) can succeed later: the path names a
// regular file or nothing (resolve_output_path), its folder exists and this process may create files
// in it. Throws ilf::Error naming `path` (and `flag`, e.g. "--out") otherwise; writes nothing.
void check_output_path(const std::string& path, const std::string& flag);

// Removes the temporary files "<name>.tmp.<pid>" that a killed writer left in `folder` (not those of
// a process that is still running on this host, nor this process's). Returns the paths removed.
std::vector<std::string> remove_stale_temporary_files(const std::string& folder);

// remove_stale_temporary_files(folder) once per folder and process, logging each file removed.
// write_file_atomically calls it for the folder of every file it writes, so every writer (samples,
// evaluations, forward dumps, searches, training runs) cleans up after a killed predecessor.
void remove_stale_temporary_files_once(const std::string& folder);

// Every reader calls this before opening a file: throws ilf::Error naming `path` and `what` (e.g.
// "model.json", "prompts file") when `path` does not exist or is not a regular file (a directory, a
// fifo that would block the open forever, a device, a socket). Symbolic links are followed.
void require_regular_file(const std::string& path, const std::string& what);

}  // namespace ilf
