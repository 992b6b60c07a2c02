// Progress reports of long loops (sampling steps, evaluation batches) on stderr. On a terminal a live
// line is rewritten in place with '\r'; anywhere else (a pipe, a log file, a Slurm output file) '\r'
// would glue every update onto one line, so whole lines are printed instead, at a modest rate: when
// the work crosses another tenth of its total, when a few seconds have passed since the last line, and
// always the last update. A quiet report prints nothing. One helper so every tool behaves the same.
#pragma once
#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>

namespace ilf {

class Progress {
 public:
  enum class Mode { kAuto, kTerminal, kLines, kQuiet };
  // kAuto: kTerminal when stderr is a terminal (isatty), else kLines. `out` defaults to std::cerr.
  explicit Progress(Mode mode = Mode::kAuto, std::ostream* out = nullptr, double min_seconds_between_lines = 5.0);
  ~Progress();  // ends a live terminal line that was left open

  // Reports `text` for `done` of `total` units of work (done == total: the last report).
  void update(const std::string& text, int64_t done, int64_t total);

  Mode mode() const { return mode_; }

 private:
  Mode mode_;
  std::ostream* out_;
  double min_seconds_;
  bool line_open_ = false;   // terminal: a '\r' line without its newline yet
  int64_t last_tenth_ = -1;  // lines: the tenth of the total of the last line printed
  std::chrono::steady_clock::time_point last_line_{};
};

}  // namespace ilf
