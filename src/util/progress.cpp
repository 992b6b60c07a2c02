// Progress reports on stderr (see include/ilf/util/progress.h).
#include "ilf/util/progress.h"

#include <unistd.h>

#include <cstdio>
#include <iostream>

namespace ilf {

Progress::Progress(Mode mode, std::ostream* out, double min_seconds_between_lines)
    : mode_(mode), out_(out ? out : &std::cerr), min_seconds_(min_seconds_between_lines) {
  if (mode_ == Mode::kAuto) mode_ = isatty(fileno(stderr)) ? Mode::kTerminal : Mode::kLines;
}

Progress::~Progress() {
  if (line_open_) *out_ << std::endl;
}

void Progress::update(const std::string& text, int64_t done, int64_t total) {
  const bool last = done >= total;
  switch (mode_) {
    case Mode::kQuiet:
    case Mode::kAuto: return;
    case Mode::kTerminal:
      *out_ << '\r' << text << std::flush;
      line_open_ = !last;
      if (last) *out_ << std::endl;
      return;
    case Mode::kLines: {
      const auto now = std::chrono::steady_clock::now();
      const int64_t tenth = total > 0 ? done * 10 / total : 10;
      const bool due = last || tenth > last_tenth_ || std::chrono::duration<double>(now - last_line_).count() >= min_seconds_;
      if (!due) return;
      *out_ << text << '\n' << std::flush;
      last_tenth_ = tenth;
      last_line_ = now;
      return;
    }
  }
}

}  // namespace ilf
