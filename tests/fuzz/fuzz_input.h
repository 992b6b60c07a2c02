// What every fuzz target shares. The parsers under test read files (a path is their interface, and
// the tools hand them paths), so each input is written to a file in a private temporary folder and the
// parser is called on that path. An ilf::Error is the expected outcome of a bad input; any other
// exception is a finding (a message that names no file, key or field), reported and aborted on so that
// libFuzzer keeps the input. Sanitizer reports (ASan, UBSan) and crashes are findings as always.
#pragma once
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "ilf/error.h"

namespace ilf::fuzz {

// A folder of this process's own (under $TMPDIR or /tmp), created at first use, removed at exit.
inline const std::string& scratch_folder() {
  static const std::string folder = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/ilf-fuzz-XXXXXX";
    if (!mkdtemp(pattern.data())) {
      std::perror("ilf fuzz: mkdtemp");
      std::abort();
    }
    static std::string removed;
    removed = pattern;
    std::atexit([] {
      std::error_code ignored;
      std::filesystem::remove_all(removed, ignored);
    });
    return pattern;
  }();
  return folder;
}

// Writes `size` bytes to scratch_folder()/name and returns the path.
inline std::string write_input(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = scratch_folder() + "/" + name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  out.close();
  if (!out) {
    std::fprintf(stderr, "ilf fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
  return path;
}

// Runs `parse`; ilf::Error is a clean refusal, anything else escaping is a finding.
inline void expect_clean(const std::function<void()>& parse) {
  try {
    parse();
  } catch (const ilf::Error&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ilf fuzz: an exception other than ilf::Error escaped: %s\n", e.what());
    std::abort();
  }
}

}  // namespace ilf::fuzz
