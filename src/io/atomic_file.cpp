// Atomic file output (see include/ilf/io/atomic_file.h).
#include "ilf/io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "ilf/error.h"

namespace ilf {

void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  if (target.has_parent_path() && !fs::exists(target.parent_path())) {
    throw Error(path + ": the folder " + target.parent_path().string() + " does not exist");
  }
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
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
    if (std::rename(tmp.c_str(), path.c_str()) != 0) throw Error(path + ": cannot rename " + tmp + " into place");
  } catch (...) {
    std::remove(tmp.c_str());
    throw;
  }
}

}  // namespace ilf
