// Atomic file output (see include/ilf/io/atomic_file.h).
#include "ilf/io/atomic_file.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>
#include <set>

#include "ilf/error.h"

namespace ilf {
namespace fs = std::filesystem;
namespace {

std::string kind_of(fs::file_type type) {
  switch (type) {
    case fs::file_type::directory: return "a directory";
    case fs::file_type::block: return "a block device";
    case fs::file_type::character: return "a character device";
    case fs::file_type::fifo: return "a named pipe (fifo)";
    case fs::file_type::socket: return "a socket";
    case fs::file_type::symlink: return "a symbolic link";
    default: return "not a regular file";
  }
}

}  // namespace

std::string resolve_output_path(const std::string& path) {
  fs::path target(path);
  // Follow symbolic links (a chain, bounded) to the file they name; a dangling link names a file to create.
  for (int hops = 0;; ++hops) {
    std::error_code ec;
    const fs::file_status status = fs::symlink_status(target, ec);
    if (ec || !fs::exists(status)) break;
    if (fs::is_symlink(status)) {
      if (hops == 40) throw Error(path + ": too many levels of symbolic links");
      const fs::path link = fs::read_symlink(target);
      target = link.is_absolute() ? link : target.parent_path() / link;
      continue;
    }
    if (!fs::is_regular_file(status))
      throw Error(path + (target.string() == path ? std::string() : " (-> " + target.string() + ")") + " is " +
                  kind_of(status.type()) + ": refusing to replace it; name a regular file");
    break;
  }
  return target.string();
}

void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write) {
  // Through a symbolic link the link's target is replaced (atomically, in the target's folder); the link stays.
  const std::string resolved = resolve_output_path(path);
  const fs::path target(resolved);
  if (target.has_parent_path() && !fs::exists(target.parent_path())) {
    throw Error(path + ": the folder " + target.parent_path().string() + " does not exist");
  }
  remove_stale_temporary_files_once(target.has_parent_path() ? target.parent_path().string() : std::string("."));
  const std::string tmp = resolved + ".tmp." + std::to_string(::getpid());
  try {
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      if (!out) throw Error(path + ": cannot open " + tmp + " for writing");
      write(out);
      out.flush();
      if (!out) throw Error(path + ": write failed (disk full?)");
    }
    const int fd = ::open(tmp.c_str(), O_RDONLY);
    if (fd >= 0) {
      ::fsync(fd);
      ::close(fd);
    }
    if (std::rename(tmp.c_str(), resolved.c_str()) != 0) throw Error(path + ": cannot rename " + tmp + " into place");
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
}

std::vector<std::string> remove_stale_temporary_files(const std::string& folder) {
  static const std::regex kTemporary(R"(.+\.tmp\.(\d+))");
  std::vector<std::string> removed;
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) return removed;
  for (const auto& entry : fs::directory_iterator(folder, ec)) {
    std::smatch match;
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file(ec) || !std::regex_match(name, match, kTemporary)) continue;
    const std::string digits = match[1].str();
    if (digits.size() > 9) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(digits));
    // A writer that is still running (or this process) keeps its file.
    if (pid == ::getpid() || (pid > 0 && (::kill(pid, 0) == 0 || errno != ESRCH))) continue;
    if (fs::remove(entry.path(), ec)) removed.push_back(entry.path().string());
  }
  return removed;
}

void check_output_path(const std::string& path, const std::string& flag) {
  if (path.empty()) throw Error(flag + ": expected a path, got an empty string");
  std::string resolved;
  try {
    resolved = resolve_output_path(path);
  } catch (const Error& e) {
    throw Error(flag + " " + e.what());
  }
  const fs::path target(resolved);
  const fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) throw Error(flag + " " + path + ": the folder " + folder.string() + " does not exist");
  if (::access(folder.c_str(), W_OK | X_OK) != 0)
    throw Error(flag + " " + path + ": cannot create files in " + folder.string() + " (" + std::strerror(errno) + ")");
}

void remove_stale_temporary_files_once(const std::string& folder) {
  static std::mutex mutex;
  static std::set<std::string> cleaned;
  std::error_code ec;
  std::string key = fs::weakly_canonical(folder.empty() ? fs::path(".") : fs::path(folder), ec).string();
  if (ec) key = folder;
  {
    std::lock_guard<std::mutex> lock(mutex);
    if (!cleaned.insert(key).second) return;
  }
  for (const std::string& removed : remove_stale_temporary_files(folder.empty() ? "." : folder))
    spdlog::info("removed {}, left by an interrupted run", removed);
}

void require_regular_file(const std::string& path, const std::string& what) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0)
    throw Error(path + ": " + what + " " +
                (errno == ENOENT ? "does not exist" : "cannot be read (" + std::string(std::strerror(errno)) + ")"));
  if (S_ISREG(info.st_mode)) return;
  const fs::file_type type = S_ISDIR(info.st_mode)    ? fs::file_type::directory
                             : S_ISFIFO(info.st_mode) ? fs::file_type::fifo
                             : S_ISCHR(info.st_mode)  ? fs::file_type::character
                             : S_ISBLK(info.st_mode)  ? fs::file_type::block
                             : S_ISSOCK(info.st_mode) ? fs::file_type::socket
                                                      : fs::file_type::unknown;
  throw Error(path + ": the " + what + " is " + kind_of(type) + ", not a regular file");
}

}  // namespace ilf
