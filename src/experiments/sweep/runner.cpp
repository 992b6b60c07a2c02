// Running a sweep's points: each stage (train, sample, eval) is one child process (fork/exec, in its
// own process group, output to a log file) built from the point's overrides; a stage that succeeded
// leaves an atomic completion marker, so a stopped sweep resumes where it was; point and training
// folders are locked while they run; SIGINT / SIGTERM are forwarded to the running stage. Everything
// here touches processes and the output folder, unlike the parsing in spec.cpp
// (see include/ilf/experiments/sweep/runner.h).
#include "ilf/experiments/sweep/runner.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <set>
#include <sstream>

#include "ilf/io/atomic_file.h"
#include "sweep_internal.h"

extern char** environ;

namespace ilf {
namespace fs = std::filesystem;
using detail::find_dotted;
using detail::join;
using detail::read_json_object;
using detail::shell_quote;
using detail::value_text;

namespace {

std::string command_text(const std::vector<std::string>& argv) {
  std::vector<std::string> quoted;
  for (const auto& a : argv) quoted.push_back(shell_quote(a));
  return join(quoted, " ");
}

// --- child processes and signals --------------------------------------------------------------------

std::atomic<int> g_stop_signal{0};
std::atomic<pid_t> g_child_pid{0};

void forward_signal(int sig) {
  g_stop_signal.store(sig);
  const pid_t child = g_child_pid.load();
  if (child > 0) kill(-child, sig);  // the stage's whole process group (shells, srun, ...)
}

struct ChildResult {
  int exit_code = 0;  // -1 when killed by a signal
  int signal = 0;
  double seconds = 0;
};

std::string now_text() {
  const std::time_t t = std::time(nullptr);
  char buffer[64];
  std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%S%z", std::localtime(&t));
  return buffer;
}

// Runs argv with extra environment variables, stdout and stderr appended to log_path, stdin empty.
ChildResult run_child(const std::vector<std::string>& argv, const std::vector<std::string>& extra_env,
                      const std::string& log_path) {
  fs::create_directories(fs::path(log_path).parent_path());
  const int log_fd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log_fd < 0) throw Error(log_path + ": cannot open the log file (" + std::strerror(errno) + ")");
  const std::string header = "\n== " + now_text() + " ilf_sweep runs: " + command_text(argv) + "\n";
  if (write(log_fd, header.data(), header.size()) < 0) { /* the log is best effort */
  }

  // Everything the child needs is prepared before fork (no allocation after it).
  std::vector<std::string> env_strings;
  std::set<std::string> replaced;
  for (const auto& e : extra_env) replaced.insert(e.substr(0, e.find('=')));
  for (char** e = environ; *e; ++e) {
    const std::string entry(*e);
    if (!replaced.count(entry.substr(0, entry.find('=')))) env_strings.push_back(entry);
  }
  env_strings.insert(env_strings.end(), extra_env.begin(), extra_env.end());
  std::vector<char*> env_ptrs, arg_ptrs;
  for (auto& e : env_strings) env_ptrs.push_back(e.data());
  env_ptrs.push_back(nullptr);
  std::vector<std::string> args = argv;
  for (auto& a : args) arg_ptrs.push_back(a.data());
  arg_ptrs.push_back(nullptr);
  const std::string exec_error = "ilf_sweep: cannot execute " + argv.front() + "\n";
  const pid_t parent = getpid();

  const auto start = std::chrono::steady_clock::now();
  const pid_t pid = fork();
  if (pid < 0) {
    close(log_fd);
    throw Error(std::string("cannot start a child process (") + std::strerror(errno) + ")");
  }
  if (pid == 0) {
    setpgid(0, 0);                     // its own process group, so that a forwarded signal reaches its children too
    prctl(PR_SET_PDEATHSIG, SIGTERM);  // the stage dies with ilf_sweep
    if (getppid() != parent) _exit(1);
    const int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    execvpe(arg_ptrs[0], arg_ptrs.data(), env_ptrs.data());
    if (write(2, exec_error.data(), exec_error.size()) < 0) { /* nothing left to report to */
    }
    _exit(127);
  }
  setpgid(pid, pid);  // also here, so that the group exists before any signal is forwarded
  g_child_pid.store(pid);
  if (g_stop_signal.load()) kill(-pid, g_stop_signal.load());  // a signal that arrived just before
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) break;
  }
  g_child_pid.store(0);
  close(log_fd);

  ChildResult result;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.exit_code = -1;
    result.signal = WTERMSIG(status);
  }
  return result;
}

// An exclusive lock on <dir>/.lock for as long as the object lives; waits (announcing it) when held.
class FolderLock {
 public:
  FolderLock(const std::string& dir, std::ostream& log, const std::string& what) {
    fs::create_directories(dir);
    const std::string path = (fs::path(dir) / ".lock").string();
    fd_ = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw Error(path + ": cannot open the lock file (" + std::strerror(errno) + ")");
    if (flock(fd_, LOCK_EX | LOCK_NB) == 0) {
      locked_ = true;
      return;
    }
    log << what << ": another runner holds " << path << "; waiting for it" << std::endl;
    while (!g_stop_signal.load()) {
      if (flock(fd_, LOCK_EX) == 0) {
        locked_ = true;
        return;
      }
      if (errno != EINTR) throw Error(path + ": cannot lock (" + std::strerror(errno) + ")");
    }
  }
  ~FolderLock() {
    if (fd_ >= 0) close(fd_);  // releases the lock
  }
  bool locked() const { return locked_; }

 private:
  int fd_ = -1;
  bool locked_ = false;
};

std::string last_lines(const std::string& path, size_t count) {
  std::ifstream in(path);
  std::deque<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    lines.push_back(line);
    if (lines.size() > count) lines.pop_front();
  }
  std::string out;
  for (const auto& l : lines) out += "    " + l + "\n";
  return out;
}

std::string training_mode(const SweepPoint& point) {
  const Json* mode = find_dotted(point.config, "training.mode");
  return mode && mode->is_string() ? mode->get<std::string>() : "ilf";
}

// What a training mode writes and which setting hands it to sample and eval: (override key, file name).
std::pair<std::string, std::string> trained_output(const std::string& mode) {
  if (mode == "pretrain") return {"weights", "backbone.safetensors"};
  if (mode == "l2c") return {"l2c.router", "router.safetensors"};
  return {"ilf.feedback_weights", "feedback.safetensors"};
}

// The trained weights of the point's training, when they exist: (override key, path).
std::optional<std::pair<std::string, std::string>> trained_weights(const SweepSpec& spec, const SweepPoint& point) {
  if (!spec.has_stage(SweepStage::kTrain)) return std::nullopt;
  const std::string dir = train_dir(spec, point);
  const auto [key, file] = trained_output(training_mode(point));
  std::string path = (fs::path(dir) / file).string();
  if (const auto status = read_json_object((fs::path(dir) / "status.json").string()))
    if (status->contains("weights") && (*status)["weights"].is_string() && !(*status)["weights"].get<std::string>().empty())
      path = (*status)["weights"].get<std::string>();
  if (!fs::exists(path)) return std::nullopt;
  return std::make_pair(key, path);
}

std::string stage_output(const SweepSpec& spec, const SweepPoint& point, SweepStage stage) {
  switch (stage) {
    case SweepStage::kTrain: return train_dir(spec, point);
    case SweepStage::kSample: return (fs::path(point_dir(spec, point)) / "sample.png").string();
    case SweepStage::kEval: return (fs::path(point_dir(spec, point)) / "metrics.json").string();
  }
  return "";
}

const std::vector<std::string>& stage_overrides(const SweepPoint& point, SweepStage stage) {
  return stage == SweepStage::kTrain ? point.train_overrides : point.overrides;
}

struct StageCommand {
  std::vector<std::string> argv;
  std::vector<std::string> env;
};

StageCommand stage_command(const SweepSpec& spec, const SweepPoint& point, SweepStage stage, const SweepRunOptions& options) {
  std::vector<std::string> sets = stage_overrides(point, stage);
  if (stage != SweepStage::kTrain)
    if (const auto weights = trained_weights(spec, point)) sets.push_back(weights->first + "=" + weights->second);
  const std::string out = stage_output(spec, point, stage);
  const std::string bin = options.tools_dir.empty() ? executable_dir() : options.tools_dir;
  std::vector<std::string> set_args;
  for (const auto& s : sets) {
    set_args.push_back("--set");
    set_args.push_back(s);
  }

  std::vector<std::string> argv;
  const auto custom = spec.commands.find(stage);
  if (custom != spec.commands.end()) {
    argv = custom->second;
  } else {
    switch (stage) {
      case SweepStage::kTrain:  // a router (mode l2c) trains in minutes and has no checkpoint to resume from
        argv = {"{bin}/ilf_train", "--config", "{config}", "{sets}", "--out", "{out}"};
        if (training_mode(point) != "l2c") argv.push_back("--resume");
        break;
      case SweepStage::kSample: argv = {"{bin}/ilf_sample", "--config", "{config}", "{sets}", "--out", "{out}"}; break;
      case SweepStage::kEval:
        argv = {"{bin}/ilf_eval", "--config", "{config}", "{sets}", "--num-samples", std::to_string(spec.eval_num_samples),
                "--label",        "{id}",     "--out",    "{out}"};
        break;
    }
  }
  if (const auto extra = spec.args.find(stage); extra != spec.args.end())
    argv.insert(argv.end(), extra->second.begin(), extra->second.end());

  const std::map<std::string, std::string> fields = {{"bin", bin},
                                                     {"config", spec.base_config},
                                                     {"out", out},
                                                     {"point_dir", point_dir(spec, point)},
                                                     {"train_dir", train_dir(spec, point)},
                                                     {"id", point.id},
                                                     {"index", std::to_string(point.index)},
                                                     {"stage", to_string(stage)}};
  auto substitute = [&](const std::string& word) {
    std::string result;
    size_t i = 0;
    while (i < word.size()) {
      const size_t open = word.find('{', i);
      if (open == std::string::npos) break;
      const size_t close = word.find('}', open);
      if (close == std::string::npos) break;
      const std::string name = word.substr(open + 1, close - open - 1);
      std::optional<std::string> value;
      if (const auto f = fields.find(name); f != fields.end()) value = f->second;
      if (name.rfind("key:", 0) == 0) {
        const Json* v = find_dotted(point.config, name.substr(4));
        value = v ? value_text(*v) : std::string();
      }
      result += word.substr(i, open - i) + (value ? *value : word.substr(open, close - open + 1));
      i = close + 1;
    }
    return result + word.substr(i);
  };
  StageCommand command;
  if (stage == SweepStage::kTrain) command.argv = options.train_launcher;
  for (const auto& word : argv) {
    if (word == "{sets}")
      command.argv.insert(command.argv.end(), set_args.begin(), set_args.end());
    else
      command.argv.push_back(substitute(word));
  }
  command.env = {"ILF_SWEEP_STAGE=" + to_string(stage),
                 "ILF_SWEEP_POINT=" + point.id,
                 "ILF_SWEEP_INDEX=" + std::to_string(point.index),
                 "ILF_SWEEP_POINT_DIR=" + point_dir(spec, point),
                 "ILF_SWEEP_OUT=" + out,
                 "ILF_SWEEP_CONFIG=" + spec.base_config,
                 "ILF_SWEEP_BIN=" + bin};
  return command;
}

Json marker_record(const SweepPoint& point, SweepStage stage) {
  return {{"stage", to_string(stage)},
          {"point", stage == SweepStage::kTrain ? point.train_id : point.id},
          {"overrides", stage_overrides(point, stage)}};
}

}  // namespace

// --- names --------------------------------------------------------------------------------------------

std::string to_string(PointOutcome outcome) {
  switch (outcome) {
    case PointOutcome::kAlreadyComplete: return "already complete";
    case PointOutcome::kCompleted: return "completed";
    case PointOutcome::kFailed: return "failed";
    case PointOutcome::kTrainingStopped: return "training stopped early";
    case PointOutcome::kInterrupted: return "interrupted";
  }
  return "?";
}

// --- folders and markers ------------------------------------------------------------------------------

std::string point_dir(const SweepSpec& spec, const SweepPoint& point) { return (fs::path(spec.output) / point.id).string(); }

std::string train_dir(const SweepSpec& spec, const SweepPoint& point) {
  return (fs::path(spec.output) / "train" / point.train_id).string();
}

std::string stage_dir(const SweepSpec& spec, const SweepPoint& point, SweepStage stage) {
  return stage == SweepStage::kTrain ? train_dir(spec, point) : point_dir(spec, point);
}

std::string marker_path(const SweepSpec& spec, const SweepPoint& point, SweepStage stage) {
  return (fs::path(stage_dir(spec, point, stage)) / ("done_" + to_string(stage) + ".json")).string();
}

bool stage_complete(const SweepSpec& spec, const SweepPoint& point, SweepStage stage) {
  const std::string path = marker_path(spec, point, stage);
  if (!fs::exists(path)) return false;
  const auto marker = read_json_object(path);
  if (!marker) return false;  // unreadable: run the stage again (markers are written atomically)
  const Json expected = stage_overrides(point, stage);
  if (!marker->contains("overrides") || (*marker)["overrides"] != expected)
    throw Error(path + ": this " + to_string(stage) + " stage was completed with other settings (" +
                (marker->contains("overrides") ? (*marker)["overrides"].dump() : "none recorded") + "); the sweep now asks for " +
                expected.dump() + ". Use another output folder (--out) or remove " + stage_dir(spec, point, stage));
  return true;
}

std::vector<SweepStage> missing_stages(const SweepSpec& spec, const SweepPoint& point) {
  std::vector<SweepStage> missing;
  for (SweepStage s : spec.stages)
    if (!stage_complete(spec, point, s)) missing.push_back(s);
  return missing;
}

// --- running --------------------------------------------------------------------------------------

void install_sweep_signal_handlers() {
  struct sigaction action {};
  action.sa_handler = forward_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: a waiting lock gives up when asked to stop
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

bool sweep_stop_requested() { return g_stop_signal.load() != 0; }
int sweep_stop_signal() { return g_stop_signal.load(); }

std::string executable_dir() {
  std::error_code error;
  const fs::path exe = fs::read_symlink("/proc/self/exe", error);
  if (error) throw Error("cannot find this executable's folder (/proc/self/exe): " + error.message());
  return exe.parent_path().string();
}

PointOutcome run_sweep_point(const SweepSpec& spec, const SweepPoint& point, const SweepRunOptions& options) {
  std::ostream& log = options.log ? *options.log : std::cout;
  const std::string tag = "[" + point.id.substr(0, point.id.find('_')) + "]";
  if (missing_stages(spec, point).empty()) {
    log << tag << " complete, skipped (" << point_dir(spec, point) << ")" << std::endl;
    return PointOutcome::kAlreadyComplete;
  }
  const std::string dir = point_dir(spec, point);
  FolderLock point_lock(dir, log, tag);
  if (!point_lock.locked()) return PointOutcome::kInterrupted;
  write_file_atomically((fs::path(dir) / "config.json").string(), [&](std::ostream& o) { o << point.config.dump(2) << "\n"; });

  std::vector<std::string> values;
  for (const auto& [key, value] : point.values) values.push_back(key + "=" + value_text(value));
  log << tag << " " << (values.empty() ? "base settings" : join(values, " ")) << std::endl;
  for (SweepStage stage : spec.stages) {
    if (sweep_stop_requested()) return PointOutcome::kInterrupted;
    std::optional<FolderLock> train_lock;
    if (stage == SweepStage::kTrain) {
      train_lock.emplace(train_dir(spec, point), log, tag + " train");
      if (!train_lock->locked()) return PointOutcome::kInterrupted;
    }
    if (stage_complete(spec, point, stage)) {
      log << tag << " " << to_string(stage) << ": done already"
          << (stage == SweepStage::kTrain ? " (training " + point.train_id + ")" : std::string()) << std::endl;
      continue;
    }
    const StageCommand command = stage_command(spec, point, stage, options);
    const std::string log_path = (fs::path(stage_dir(spec, point, stage)) / "logs" / (to_string(stage) + ".log")).string();
    log << tag << " " << to_string(stage) << ": " << command_text(command.argv) << std::endl;
    const ChildResult result = run_child(command.argv, command.env, log_path);

    std::string problem;
    if (result.exit_code != 0) {
      problem =
          result.signal ? "killed by signal " + std::to_string(result.signal) : "exit status " + std::to_string(result.exit_code);
      if (result.exit_code == 127) problem += " (command not found?)";
    } else if (stage == SweepStage::kTrain) {
      const auto status = read_json_object((fs::path(train_dir(spec, point)) / "status.json").string());
      if (status && status->contains("finished") && (*status)["finished"] == false) {
        if (sweep_stop_requested()) {  // our own SIGTERM made it checkpoint and stop
          log << tag << " train: interrupted; it resumes from its checkpoint on the next run" << std::endl;
          return PointOutcome::kInterrupted;
        }
        log << tag << " train: stopped before its last step (" << (status->contains("step") ? (*status)["step"].dump() : "?")
            << " of " << (status->contains("steps") ? (*status)["steps"].dump() : "?") << "); it resumes on the next run"
            << std::endl;
        return PointOutcome::kTrainingStopped;
      }
      if (!spec.commands.count(stage) && !trained_weights(spec, point))
        problem = "ilf_train finished without writing its weights in " + train_dir(spec, point);
    } else if (stage == SweepStage::kSample) {
      if (!spec.commands.count(stage) && !fs::exists(stage_output(spec, point, stage)))
        problem = "no " + stage_output(spec, point, stage) + " was written";
    } else if (stage == SweepStage::kEval) {
      if (!read_json_object(stage_output(spec, point, stage)))
        problem = "the eval stage wrote no JSON object to " + stage_output(spec, point, stage);
    }
    if (!problem.empty()) {
      if (sweep_stop_requested()) {
        log << tag << " " << to_string(stage) << ": interrupted" << std::endl;
        return PointOutcome::kInterrupted;
      }
      log << tag << " " << to_string(stage) << ": FAILED (" << problem << "); last lines of " << log_path << ":\n"
          << last_lines(log_path, 15) << std::flush;
      return PointOutcome::kFailed;
    }
    Json marker = marker_record(point, stage);
    marker["command"] = command.argv;
    marker["seconds"] = result.seconds;
    marker["finished_at"] = now_text();
    write_file_atomically(marker_path(spec, point, stage), [&](std::ostream& o) { o << marker.dump(2) << "\n"; });
    std::ostringstream seconds;
    seconds << std::fixed << std::setprecision(1) << result.seconds;
    log << tag << " " << to_string(stage) << ": done in " << seconds.str() << " s" << std::endl;
  }
  return PointOutcome::kCompleted;
}

SweepRunSummary run_sweep_locally(const SweepSpec& spec, const std::vector<SweepPoint>& points, const SweepRunOptions& options) {
  SweepRunSummary summary;
  for (const auto& point : points) {
    if (sweep_stop_requested()) {
      summary.interrupted = true;
      break;
    }
    const PointOutcome outcome = run_sweep_point(spec, point, options);
    if (outcome == PointOutcome::kAlreadyComplete) ++summary.already_complete;
    if (outcome == PointOutcome::kCompleted) ++summary.completed;
    if (outcome == PointOutcome::kFailed) ++summary.failed;
    if (outcome == PointOutcome::kTrainingStopped) ++summary.stopped;
    if (outcome == PointOutcome::kInterrupted || sweep_stop_requested()) {
      summary.interrupted = true;
      break;
    }
    if (outcome == PointOutcome::kFailed && options.fail_fast) break;
  }
  return summary;
}

int exit_status(PointOutcome outcome) {
  switch (outcome) {
    case PointOutcome::kAlreadyComplete:
    case PointOutcome::kCompleted: return 0;
    case PointOutcome::kFailed: return 1;
    case PointOutcome::kTrainingStopped: return kExitTrainingStopped;
    case PointOutcome::kInterrupted: return 128 + (sweep_stop_signal() ? sweep_stop_signal() : SIGTERM);
  }
  return 1;
}

int exit_status(const SweepRunSummary& summary) {
  if (summary.interrupted) return 128 + (sweep_stop_signal() ? sweep_stop_signal() : SIGINT);
  if (summary.failed > 0) return 1;
  if (summary.stopped > 0) return kExitTrainingStopped;
  return 0;
}

}  // namespace ilf
