// Helpers for tests that run a tool of the build or read the message of any exception: the tool's exit
// status with its output in a log file, a file's bytes, a text's line count.
#pragma once
#include <sys/wait.h>

#include <cstdlib>
#include <exception>
#include <fstream>
#include <functional>
#include <iterator>
#include <string>

namespace ilf::test {

// Like error_of, but the message of any std::exception: for tests that read the message whatever layer
// throws it.
inline std::string any_error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// A file's bytes ("" when it cannot be read).
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Lines of `text` (a last line without its newline counts).
inline size_t line_count(const std::string& text) {
  size_t n = 0;
  for (char c : text) n += c == '\n';
  return n + (!text.empty() && text.back() != '\n');
}

// Runs a tool of the build with `args` (shell words), its stdout + stderr in `log`; returns the exit
// status, or 128 + signal.
inline int run_tool(const std::string& tool, const std::string& args, const std::string& log) {
  const int status = std::system((std::string(ILF_BINARY_DIR) + "/" + tool + " " + args + " > " + log + " 2>&1").c_str());
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

// run_tool under `timeout`: a tool that hangs (reading a fifo) is killed after `seconds` and the status
// is 124, so that a regression fails the test instead of hanging the suite.
inline int run_tool_with_timeout(const std::string& tool, const std::string& args, const std::string& log, int seconds) {
  const int status = std::system(("timeout -k 5 " + std::to_string(seconds) + " " + std::string(ILF_BINARY_DIR) + "/" + tool +
                                  " " + args + " > " + log + " 2>&1")
                                     .c_str());
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

}  // namespace ilf::test
