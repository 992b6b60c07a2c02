// Ablation sweeps: sweep-file parsing and validation, point expansion, stage execution with
// completion markers, Slurm job-array scripts and metric collection (see include/ilf/experiments/sweep/sweep.h).
#include "ilf/experiments/sweep/sweep.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
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
#include <regex>
#include <set>
#include <sstream>

#include "ilf/io/atomic_file.h"
#include "ilf/io/run_config.h"
#include "ilf/models/dit.h"
#include "ilf/models/pixart.h"
#include "ilf/sampling/sampler.h"
#include "ilf/sampling/solvers.h"
#include "ilf/training/trainer.h"

extern char** environ;

namespace ilf {
namespace fs = std::filesystem;

namespace {

const std::vector<SweepStage>& all_stages() {
  static const std::vector<SweepStage> stages = {SweepStage::kTrain, SweepStage::kSample, SweepStage::kEval};
  return stages;
}

std::optional<SweepStage> stage_from_name(const std::string& name) {
  for (SweepStage s : all_stages())
    if (to_string(s) == name) return s;
  return std::nullopt;
}

std::string join(const std::vector<std::string>& parts, const std::string& separator) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? separator : "") + parts[i];
  return out;
}

// A shell-readable rendering of a command line (for logs and messages).
std::string shell_quote(const std::string& word) {
  if (!word.empty() && word.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-+=./:,@%") ==
                           std::string::npos)
    return word;
  std::string out = "'";
  for (char c : word) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string command_text(const std::vector<std::string>& argv) {
  std::vector<std::string> quoted;
  for (const auto& a : argv) quoted.push_back(shell_quote(a));
  return join(quoted, " ");
}

// A value as it appears in folder names and tables: strings bare, everything else as compact JSON.
std::string value_text(const Json& value) { return value.is_string() ? value.get<std::string>() : value.dump(); }

// Folder-name-safe text: keeps letters, digits and . _ = + -; lists become a-b-c.
std::string folder_safe(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '=' || c == '+' || c == '-')
      out += c;
    else if (c == '[' || c == ']' || c == '{' || c == '}' || c == '"')
      continue;
    else if (out.empty() || out.back() != '-')
      out += '-';
  }
  return out;
}

uint32_t fnv1a(const std::string& text) {
  uint32_t h = 2166136261u;
  for (unsigned char c : text) h = (h ^ c) * 16777619u;
  return h;
}

// "<prefix><index>_<key>=<value>_...", shortened with a hash when very long.
std::string readable_id(char prefix, int64_t index, int width, const std::vector<std::pair<std::string, Json>>& values) {
  std::ostringstream s;
  s << prefix << std::setw(width) << std::setfill('0') << index;
  for (const auto& [key, value] : values) {
    std::string v = folder_safe(value_text(value));
    s << "_" << key << "=" << (v.empty() ? "empty" : v);
  }
  std::string id = s.str();
  constexpr size_t kMaxLength = 150;
  if (id.size() > kMaxLength) {
    std::ostringstream h;
    h << std::hex << std::setw(8) << std::setfill('0') << fnv1a(id);
    id = id.substr(0, kMaxLength - 9) + "_" + h.str();
  }
  return id;
}

// The dotted key must start with a run-config section.
void check_key(const SweepSpec& spec, const std::string& key, const std::string& where) {
  const auto& sections = run_config_sections();
  const std::string section = key.substr(0, key.find('.'));
  bool bad_shape = key.empty() || key.front() == '.' || key.back() == '.' || key.find("..") != std::string::npos;
  if (bad_shape || std::find(sections.begin(), sections.end(), section) == sections.end())
    throw Error(spec.source + ": " + where + ": key \"" + key + "\" is not a run-config key (it must start with one of " +
                join(sections, ", ") + ", e.g. ilf.loop_begin)");
}

std::vector<std::string> string_list(ConfigReader& r, const std::string& path, const std::string& what) {
  const Json v = r.require<Json>(path);
  if (!v.is_array()) throw r.invalid(path, "an array of " + what + ", got " + v.dump());
  std::vector<std::string> out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string() || v[i].get<std::string>().empty())
      throw r.invalid(path + "[" + std::to_string(i) + "]", "a non-empty string (" + what + "), got " + v[i].dump());
    out.push_back(v[i].get<std::string>());
  }
  return out;
}

// Stage-keyed string lists: {"eval": ["..."], ...}.
std::map<SweepStage, std::vector<std::string>> stage_lists(ConfigReader& r, const SweepSpec& spec, const std::string& section,
                                                           const std::string& what) {
  std::map<SweepStage, std::vector<std::string>> out;
  if (!r.has(section)) return out;
  const Json v = r.require<Json>(section);
  if (!v.is_object()) throw r.invalid(section, "an object {\"train\"|\"sample\"|\"eval\": [" + what + "]}");
  for (const auto& item : v.items()) {
    const auto stage = stage_from_name(item.key());
    if (!stage) throw r.invalid(section + "." + item.key(), "named after a stage: train, sample or eval");
    if (!spec.has_stage(*stage))
      throw r.invalid(section + "." + item.key(), "a stage listed in \"stages\" (this sweep does not run " + item.key() + ")");
    auto list = string_list(r, section + "." + item.key(), what);
    if (list.empty() && section == "commands") throw r.invalid(section + "." + item.key(), "a non-empty command");
    out[*stage] = std::move(list);
  }
  return out;
}

void check_slurm_time(ConfigReader& r, const std::string& path, const std::string& value) {
  static const std::regex pattern(R"(^((\d+-)?\d+(:\d{1,2}){0,2}|UNLIMITED|INFINITE)$)");
  if (!std::regex_match(value, pattern))
    throw r.invalid(path, "a Slurm time limit such as \"04:00:00\", \"2-00:00:00\" or minutes, got \"" + value + "\"");
}

// A Slurm time limit in seconds ("90", "30:00", "04:00:00", "2-00:00:00", ...); none for UNLIMITED.
std::optional<int64_t> slurm_time_seconds(const std::string& text) {
  if (text == "UNLIMITED" || text == "INFINITE") return std::nullopt;
  int64_t days = 0;
  std::string rest = text;
  const size_t dash = text.find('-');
  if (dash != std::string::npos) {
    days = std::stoll(text.substr(0, dash));
    rest = text.substr(dash + 1);
  }
  std::vector<int64_t> parts;
  std::stringstream s(rest);
  std::string part;
  while (std::getline(s, part, ':')) parts.push_back(std::stoll(part));
  int64_t seconds = 0;
  if (dash != std::string::npos) {  // days-hours[:minutes[:seconds]]
    const int64_t scale[] = {3600, 60, 1};
    for (size_t i = 0; i < parts.size() && i < 3; ++i) seconds += parts[i] * scale[i];
  } else if (parts.size() == 1) {  // minutes
    seconds = parts[0] * 60;
  } else if (parts.size() == 2) {  // minutes:seconds
    seconds = parts[0] * 60 + parts[1];
  } else {  // hours:minutes:seconds
    seconds = parts[0] * 3600 + parts[1] * 60 + parts[2];
  }
  return days * 86400 + seconds;
}

// --- checking a point's run config the way the tools read it ---------------------------------------

// Reads the sections the sweep can check (model, ilf, cache, sampling, training) like the tools do and
// reports unknown keys and bad values; returns the sampling plan's block forwards when the model's
// family is known.
std::optional<int64_t> check_run_config(const Json& config, const std::string& source) {
  const auto& sections = run_config_sections();
  for (const auto& item : config.items())
    if (std::find(sections.begin(), sections.end(), item.key()) == sections.end())
      throw Error(source + ": unknown top-level key \"" + item.key() + "\" (expected one of " + join(sections, ", ") + ")");
  Json checked = Json::object();
  for (const char* section : {"model", "ilf", "cache", "sampling", "training"})
    if (config.contains(section)) checked[section] = config[section];
  ConfigReader r(checked, source);
  const SamplingOptions sampling = sampling_options_from_config(r);
  const SolverOptions solver_options = SolverOptions::from_config(r, "sampling");
  r.choice("ilf.init", "copy", {"copy", "random"});
  r.get<std::string>("ilf.feedback_weights", "");
  if (r.has("training")) training_options_from_config(r);
  std::optional<int64_t> depth;
  if (r.has("model.family") && !r.has("model.folder")) {
    const std::string family = r.choice("model.family", "dit", {"dit", "pixart"});
    depth = family == "dit" ? DiTConfig::from_config(r, "model").depth : PixArtConfig::from_config(r, "model").depth;
  } else if (r.has("model")) {
    r.mark_used("model");  // completed from the weights or a model folder by the tools; not checked here
  }
  r.check_all_used();
  if (!depth) return std::nullopt;
  SolverPtr solver = make_solver(solver_options);
  return plan_sampling(sampling, *solver, *depth).total_block_forwards;
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
  if (write(log_fd, header.data(), header.size()) < 0) { /* the log is best effort */ }

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
    setpgid(0, 0);  // its own process group, so that a forwarded signal reaches its children too
    prctl(PR_SET_PDEATHSIG, SIGTERM);  // the stage dies with ilf_sweep
    if (getppid() != parent) _exit(1);
    const int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, 0);
    dup2(log_fd, 1);
    dup2(log_fd, 2);
    execvpe(arg_ptrs[0], arg_ptrs.data(), env_ptrs.data());
    if (write(2, exec_error.data(), exec_error.size()) < 0) { /* nothing left to report to */ }
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

std::optional<Json> read_json_object(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  try {
    Json j = Json::parse(in);
    if (j.is_object()) return j;
  } catch (const nlohmann::json::exception&) {
  }
  return std::nullopt;
}

const Json* find_dotted(const Json& root, const std::string& path) {
  const Json* node = &root;
  std::stringstream s(path);
  std::string part;
  while (std::getline(s, part, '.')) {
    if (!node->is_object() || !node->contains(part)) return nullptr;
    node = &(*node)[part];
  }
  return node;
}

std::string training_mode(const SweepPoint& point) {
  const Json* mode = find_dotted(point.config, "training.mode");
  return mode && mode->is_string() ? mode->get<std::string>() : "ilf";
}

// The trained weights of the point's training, when they exist: (override key, path).
std::optional<std::pair<std::string, std::string>> trained_weights(const SweepSpec& spec, const SweepPoint& point) {
  if (!spec.has_stage(SweepStage::kTrain)) return std::nullopt;
  const std::string dir = train_dir(spec, point);
  const bool ilf_mode = training_mode(point) != "pretrain";
  std::string path = (fs::path(dir) / (ilf_mode ? "feedback.safetensors" : "backbone.safetensors")).string();
  if (const auto status = read_json_object((fs::path(dir) / "status.json").string()))
    if (status->contains("weights") && (*status)["weights"].is_string() && !(*status)["weights"].get<std::string>().empty())
      path = (*status)["weights"].get<std::string>();
  if (!fs::exists(path)) return std::nullopt;
  return std::make_pair(std::string(ilf_mode ? "ilf.feedback_weights" : "weights"), path);
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
      case SweepStage::kTrain:
        argv = {"{bin}/ilf_train", "--config", "{config}", "{sets}", "--out", "{out}", "--resume"};
        break;
      case SweepStage::kSample:
        argv = {"{bin}/ilf_sample", "--config", "{config}", "{sets}", "--out", "{out}"};
        break;
      case SweepStage::kEval:
        argv = {"{bin}/ilf_eval", "--config",       "{config}", "{sets}", "--num-samples",
                std::to_string(spec.eval_num_samples), "--label",  "{id}",   "--out",
                "{out}"};
        break;
    }
  }
  if (const auto extra = spec.args.find(stage); extra != spec.args.end())
    argv.insert(argv.end(), extra->second.begin(), extra->second.end());

  const std::map<std::string, std::string> fields = {
      {"bin", bin},
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

std::string to_string(SweepStage stage) {
  switch (stage) {
    case SweepStage::kTrain: return "train";
    case SweepStage::kSample: return "sample";
    case SweepStage::kEval: return "eval";
  }
  return "?";
}

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

bool SweepSpec::has_stage(SweepStage stage) const { return std::find(stages.begin(), stages.end(), stage) != stages.end(); }

// --- parsing ------------------------------------------------------------------------------------------

SweepSpec load_sweep(const std::string& path) { return parse_sweep(load_json_file(path), path); }

SweepSpec parse_sweep(const Json& sweep, const std::string& source) {
  ConfigReader r(sweep, source);
  SweepSpec spec;
  spec.source = source;
  spec.name = r.get<std::string>("name", fs::path(source).stem().string());
  if (spec.name.empty() || folder_safe(spec.name) != spec.name)
    throw r.invalid("name", "made of letters, digits, '.', '_', '-' (it names folders and jobs), got \"" + spec.name + "\"");
  spec.description = r.get<std::string>("description", "");

  const std::string base = r.require<std::string>("base_config");
  const std::string resolved = resolve_config_path(r, base);
  if (!fs::exists(resolved))
    throw r.invalid("base_config", "an existing run config (relative to the working directory or to the sweep file); \"" +
                                       base + "\" does not exist");
  spec.base_config = fs::absolute(resolved).lexically_normal().string();
  spec.base = load_json_file(spec.base_config);
  if (!spec.base.is_object()) throw Error(spec.base_config + ": the top level must be a JSON object");
  spec.output = r.get<std::string>("output", "runs/sweeps/" + spec.name);

  // Stages first: other sections refer to them.
  std::set<SweepStage> stage_set;
  for (const auto& name : string_list(r, "stages", "stage names (train, sample, eval)")) {
    const auto stage = stage_from_name(name);
    if (!stage) throw r.invalid("stages", "a list of train, sample and eval; \"" + name + "\" is not a stage");
    if (!stage_set.insert(*stage).second) throw r.invalid("stages", "a list without repeats; \"" + name + "\" appears twice");
  }
  if (stage_set.empty()) throw r.invalid("stages", "at least one of train, sample, eval");
  for (SweepStage s : all_stages())
    if (stage_set.count(s)) spec.stages.push_back(s);

  std::set<std::string> keys_seen;
  if (r.has("set")) {
    const Json set = r.require<Json>("set");
    if (!set.is_object()) throw r.invalid("set", "an object of overrides {\"key.path\": value}, got " + set.dump());
    for (const auto& item : set.items()) {
      check_key(spec, item.key(), "set");
      keys_seen.insert(item.key());
      spec.fixed.emplace_back(item.key(), item.value());
    }
  }

  const Json axes = r.has("axes") ? r.require<Json>("axes") : Json::array();
  if (!axes.is_array()) throw r.invalid("axes", "an array of axes ({\"key\", \"values\"} or {\"zip\": {...}})");
  for (size_t i = 0; i < axes.size(); ++i) {
    const std::string where = "axes[" + std::to_string(i) + "]";
    if (!axes[i].is_object()) throw Error(source + ": " + where + " must be an object {\"key\", \"values\"} or {\"zip\": {...}}");
    ConfigReader a(axes[i], source + ": " + where);
    SweepAxis axis;
    const bool single = a.has("key") || a.has("values");
    if (single == a.has("zip"))
      throw Error(source + ": " + where + " must have either \"key\" and \"values\" (one setting) or \"zip\" (settings advanced together)");
    if (single) {
      const std::string key = a.require<std::string>("key");
      const Json values = a.require<Json>("values");
      if (!values.is_array() || values.empty())
        throw Error(source + ": " + where + " (" + key + "): \"values\" must be a non-empty array, got " + values.dump());
      axis.keys = {key};
      axis.values = {values.get<std::vector<Json>>()};
    } else {
      const Json zip = a.require<Json>("zip");
      if (!zip.is_object() || zip.empty())
        throw Error(source + ": " + where + ": \"zip\" must be an object {\"key\": [values], ...}, got " + zip.dump());
      for (const auto& item : zip.items()) {
        if (!item.value().is_array() || item.value().empty())
          throw Error(source + ": " + where + ": zip key \"" + item.key() + "\" must have a non-empty array of values, got " +
                      item.value().dump());
        axis.keys.push_back(item.key());
        axis.values.push_back(item.value().get<std::vector<Json>>());
      }
      for (size_t k = 1; k < axis.keys.size(); ++k)
        if (axis.values[k].size() != axis.values[0].size())
          throw Error(source + ": " + where + ": zipped keys must have as many values each; \"" + axis.keys[k] + "\" has " +
                      std::to_string(axis.values[k].size()) + " but \"" + axis.keys[0] + "\" has " +
                      std::to_string(axis.values[0].size()));
    }
    axis.name = where + " (" + join(axis.keys, ", ") + ")";
    axis.affects_training = a.get<bool>("train", true);
    a.check_all_used();
    for (size_t k = 0; k < axis.keys.size(); ++k) {
      const std::string& key = axis.keys[k];
      check_key(spec, key, axis.name);
      if (!keys_seen.insert(key).second)
        throw Error(source + ": " + axis.name + ": key \"" + key + "\" is already set by \"set\" or another axis");
      if (!axis.affects_training && key.rfind("training.", 0) == 0)
        throw Error(source + ": " + axis.name + ": \"train\": false, but \"" + key + "\" is a training setting");
    }
    spec.axes.push_back(std::move(axis));
  }

  if (r.has("metrics")) {
    spec.metrics = string_list(r, "metrics", "metric names");
    if (spec.metrics.empty()) throw r.invalid("metrics", "a non-empty list of metric names");
  } else {
    spec.metrics = {"fid", "class_accuracy", "block_forwards", "seconds_per_image"};
    if (!spec.has_stage(SweepStage::kEval)) spec.metrics = {"plan.block_forwards"};
  }
  for (size_t i = 0; i < spec.metrics.size(); ++i) {
    const std::string& m = spec.metrics[i];
    const std::string path = "metrics[" + std::to_string(i) + "]";
    if (m.rfind("train.", 0) == 0) {
      if (!spec.has_stage(SweepStage::kTrain)) throw r.invalid(path, "a metric this sweep makes; \"" + m + "\" needs the train stage");
    } else if (m.rfind("plan.", 0) == 0) {
      if (m != "plan.block_forwards") throw r.invalid(path, "\"plan.block_forwards\" (the only plan metric), got \"" + m + "\"");
    } else if (!spec.has_stage(SweepStage::kEval)) {
      throw r.invalid(path, "a metric this sweep makes; \"" + m + "\" comes from metrics.json, which the eval stage writes");
    }
  }
  spec.eval_num_samples = r.get<int64_t>("eval_num_samples", spec.eval_num_samples);
  if (spec.eval_num_samples < 2) throw r.invalid("eval_num_samples", ">= 2 (FID needs a covariance)");
  spec.commands = stage_lists(r, spec, "commands", "the command and its arguments");
  spec.args = stage_lists(r, spec, "args", "extra arguments");

  SweepSlurm& s = spec.slurm;
  s.partition = r.get<std::string>("slurm.partition", s.partition);
  s.account = r.get<std::string>("slurm.account", s.account);
  s.qos = r.get<std::string>("slurm.qos", s.qos);
  s.mem = r.get<std::string>("slurm.mem", s.mem);
  s.job_name = r.get<std::string>("slurm.job_name", "ilf-sweep-" + spec.name);
  s.time = r.get<std::string>("slurm.time", s.time);
  check_slurm_time(r, "slurm.time", s.time);
  s.nodes = r.get<int64_t>("slurm.nodes", s.nodes);
  if (s.nodes < 1) throw r.invalid("slurm.nodes", ">= 1");
  s.gpus_per_task = r.get<int64_t>("slurm.gpus_per_task", s.gpus_per_task);
  if (s.gpus_per_task < 0) throw r.invalid("slurm.gpus_per_task", ">= 0 (0 = a CPU-only point)");
  s.cpus_per_task = r.get<int64_t>("slurm.cpus_per_task", s.cpus_per_task);
  if (s.cpus_per_task < 1) throw r.invalid("slurm.cpus_per_task", ">= 1");
  s.max_parallel = r.get<int64_t>("slurm.max_parallel", s.max_parallel);
  if (s.max_parallel < 0) throw r.invalid("slurm.max_parallel", ">= 0 (0 = no limit)");
  if (r.has("slurm.setup")) s.setup = string_list(r, "slurm.setup", "shell lines");
  if (r.has("slurm.sbatch_options")) {
    s.sbatch_options = string_list(r, "slurm.sbatch_options", "sbatch options");
    for (const auto& o : s.sbatch_options)
      if (o.rfind("--", 0) != 0) throw r.invalid("slurm.sbatch_options", "long sbatch options such as \"--constraint=h100\", got \"" + o + "\"");
  }
  r.check_all_used();
  return spec;
}

Json sweep_snapshot(const SweepSpec& spec, const Json& original) {
  Json snapshot = original;
  snapshot["name"] = spec.name;
  snapshot["base_config"] = spec.base_config;
  snapshot["output"] = fs::absolute(spec.output).lexically_normal().string();
  Json slurm = original.contains("slurm") ? original["slurm"] : Json::object();
  const SweepSlurm& s = spec.slurm;
  slurm["time"] = s.time;
  slurm["nodes"] = s.nodes;
  slurm["gpus_per_task"] = s.gpus_per_task;
  slurm["cpus_per_task"] = s.cpus_per_task;
  slurm["max_parallel"] = s.max_parallel;
  slurm["job_name"] = s.job_name;
  for (const auto& [key, value] : {std::pair<const char*, const std::string*>{"partition", &s.partition},
                                   {"account", &s.account}, {"qos", &s.qos}, {"mem", &s.mem}})
    if (!value->empty()) slurm[key] = *value;
  snapshot["slurm"] = slurm;
  return snapshot;
}

// --- expansion ----------------------------------------------------------------------------------------

std::string override_assignment(const std::string& key, const Json& value) {
  if (value.is_string()) {
    // The tools parse the text as JSON first: quote strings that would read as something else.
    const std::string text = value.get<std::string>();
    return key + "=" + (Json::accept(text) ? value.dump() : text);
  }
  return key + "=" + value.dump();
}

std::vector<SweepPoint> expand_sweep(const SweepSpec& spec) {
  // The base with "set".
  Json fixed_config = spec.base;
  std::vector<std::string> fixed_overrides;
  for (const auto& [key, value] : spec.fixed) {
    fixed_overrides.push_back(override_assignment(key, value));
    apply_override(fixed_config, fixed_overrides.back());
  }
  // Unknown keys there are reported now; other errors may be fixed by the axes and are left to the points.
  try {
    check_run_config(fixed_config, spec.base_config + " with the sweep's \"set\"");
  } catch (const Error& e) {
    if (std::string(e.what()).find("unknown") != std::string::npos)
      throw Error(spec.source + ": the base config with \"set\" is not valid: " + e.what());
  }
  // Each axis key must be a setting the tools read (caught here, naming the axis, before the points).
  for (const auto& axis : spec.axes) {
    for (size_t k = 0; k < axis.keys.size(); ++k) {
      Json config = fixed_config;
      apply_override(config, override_assignment(axis.keys[k], axis.values[k][0]));
      try {
        check_run_config(config, "run config");
      } catch (const Error& e) {
        const std::string message = e.what();
        if (message.find("unknown key") != std::string::npos)
          throw Error(spec.source + ": " + axis.name + ": key \"" + axis.keys[k] + "\" is not a setting of the ILF tools (" +
                      message + ")");
        // Other errors may come from a value that only makes sense with the rest of its point.
      }
    }
  }

  int64_t total = 1;
  for (const auto& axis : spec.axes) total *= static_cast<int64_t>(axis.size());
  const int width = std::max<int>(3, static_cast<int>(std::to_string(std::max<int64_t>(total - 1, 0)).size()));
  std::vector<SweepPoint> points;
  std::map<std::string, int64_t> training_index;  // training overrides -> index
  std::vector<std::string> training_ids;
  for (int64_t index = 0; index < total; ++index) {
    SweepPoint point;
    point.index = index;
    point.overrides = fixed_overrides;
    point.train_overrides = fixed_overrides;
    std::vector<std::pair<std::string, Json>> train_values;
    // Mixed radix: the last axis varies fastest.
    std::vector<size_t> position(spec.axes.size());
    int64_t rest = index;
    for (size_t a = spec.axes.size(); a-- > 0;) {
      position[a] = static_cast<size_t>(rest % static_cast<int64_t>(spec.axes[a].size()));
      rest /= static_cast<int64_t>(spec.axes[a].size());
    }
    for (size_t a = 0; a < spec.axes.size(); ++a) {
      const SweepAxis& axis = spec.axes[a];
      for (size_t k = 0; k < axis.keys.size(); ++k) {
        const Json& value = axis.values[k][position[a]];
        point.values.emplace_back(axis.keys[k], value);
        point.overrides.push_back(override_assignment(axis.keys[k], value));
        if (axis.affects_training) {
          train_values.emplace_back(axis.keys[k], value);
          point.train_overrides.push_back(point.overrides.back());
        }
      }
    }
    point.id = readable_id('p', index, width, point.values);
    const std::string train_key = join(point.train_overrides, "\n");
    auto found = training_index.find(train_key);
    if (found == training_index.end()) {
      const int64_t t = static_cast<int64_t>(training_ids.size());
      found = training_index.emplace(train_key, t).first;
      training_ids.push_back(readable_id('t', t, width, train_values));
    }
    point.train_index = found->second;
    point.train_id = training_ids[found->second];

    point.config = spec.base;
    for (const auto& o : point.overrides) apply_override(point.config, o);
    try {
      point.block_forwards = check_run_config(point.config, "run config");
    } catch (const Error& e) {
      std::vector<std::string> values;
      for (const auto& [key, value] : point.values) values.push_back(key + "=" + value_text(value));
      throw Error(spec.source + ": point " + std::to_string(index) + " (" + join(values, ", ") + ") is not valid: " + e.what());
    }
    points.push_back(std::move(point));
  }
  return points;
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

// --- plan ---------------------------------------------------------------------------------------------

std::string plan_text(const SweepSpec& spec, const std::vector<SweepPoint>& points) {
  std::vector<std::string> stage_names;
  for (SweepStage s : spec.stages) stage_names.push_back(to_string(s));
  std::set<int64_t> trainings;
  for (const auto& p : points) trainings.insert(p.train_index);
  std::ostringstream out;
  out << "sweep " << spec.name << " (" << spec.source << "): " << points.size() << " point" << (points.size() == 1 ? "" : "s");
  if (spec.has_stage(SweepStage::kTrain)) out << ", " << trainings.size() << " training run" << (trainings.size() == 1 ? "" : "s");
  out << "; stages " << join(stage_names, ", ") << "\n";
  if (!spec.description.empty()) out << "  " << spec.description << "\n";
  out << "base config: " << spec.base_config << "\n";
  if (!spec.fixed.empty()) {
    std::vector<std::string> fixed;
    for (const auto& [key, value] : spec.fixed) fixed.push_back(key + "=" + value_text(value));
    out << "every point: " << join(fixed, " ") << "\n";
  }
  out << "output: " << spec.output << "\n\n";
  out << std::left << std::setw(7) << "index" << std::setw(13) << "block_fwds" << std::setw(27) << "state"
      << "folder\n";
  for (const auto& p : points) {
    const auto missing = missing_stages(spec, p);
    std::string state = "complete";
    if (!missing.empty()) {
      std::vector<std::string> names;
      for (SweepStage s : missing) names.push_back(to_string(s));
      state = "to run: " + join(names, ",");
    }
    out << std::left << std::setw(7) << p.index << std::setw(13)
        << (p.block_forwards ? std::to_string(*p.block_forwards) : std::string("?")) << std::setw(27) << state
        << point_dir(spec, p) << "\n";
    std::vector<std::string> values;
    for (const auto& [key, value] : p.values) values.push_back(key + "=" + value_text(value));
    if (!values.empty()) out << "       " << join(values, " ");
    if (spec.has_stage(SweepStage::kTrain)) out << (values.empty() ? "       " : "  ") << "[training " << p.train_id << "]";
    if (!values.empty() || spec.has_stage(SweepStage::kTrain)) out << "\n";
  }
  return out.str();
}

Json plan_json(const SweepSpec& spec, const std::vector<SweepPoint>& points) {
  std::vector<std::string> stage_names;
  for (SweepStage s : spec.stages) stage_names.push_back(to_string(s));
  Json list = Json::array();
  for (const auto& p : points) {
    Json values = Json::object();
    for (const auto& [key, value] : p.values) values[key] = value;
    std::vector<std::string> missing;
    for (SweepStage s : missing_stages(spec, p)) missing.push_back(to_string(s));
    list.push_back({{"index", p.index},
                    {"id", p.id},
                    {"folder", point_dir(spec, p)},
                    {"values", values},
                    {"overrides", p.overrides},
                    {"training", {{"id", p.train_id}, {"folder", train_dir(spec, p)}, {"overrides", p.train_overrides}}},
                    {"block_forwards", p.block_forwards ? Json(*p.block_forwards) : Json(nullptr)},
                    {"missing_stages", missing},
                    {"config", p.config}});
  }
  return {{"name", spec.name},        {"source", spec.source}, {"base_config", spec.base_config},
          {"output", spec.output},    {"stages", stage_names}, {"metrics", spec.metrics},
          {"points", list}};
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
      problem = result.signal ? "killed by signal " + std::to_string(result.signal) : "exit status " + std::to_string(result.exit_code);
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

// --- Slurm ------------------------------------------------------------------------------------------

SlurmWaves slurm_waves(const SweepSpec& spec, const std::vector<SweepPoint>& points) {
  SlurmWaves waves;
  std::set<int64_t> claimed;  // trainings a trainer point runs
  for (const auto& p : points) {
    if (missing_stages(spec, p).empty()) continue;
    const bool needs_training = spec.has_stage(SweepStage::kTrain) && !stage_complete(spec, p, SweepStage::kTrain);
    if (needs_training && claimed.insert(p.train_index).second)
      waves.trainers.push_back(p.index);
    else
      waves.others.push_back(p.index);
  }
  return waves;
}

std::string slurm_array_spec(const std::vector<int64_t>& indices, int64_t max_parallel) {
  std::vector<std::string> parts;
  for (size_t i = 0; i < indices.size();) {
    size_t j = i;
    while (j + 1 < indices.size() && indices[j + 1] == indices[j] + 1) ++j;
    parts.push_back(j == i ? std::to_string(indices[i]) : std::to_string(indices[i]) + "-" + std::to_string(indices[j]));
    i = j + 1;
  }
  std::string spec = join(parts, ",");
  if (max_parallel > 0) spec += "%" + std::to_string(max_parallel);
  return spec;
}

std::string make_sbatch_script(const SweepSpec& spec, const std::vector<SweepPoint>& points, const SbatchPaths& paths) {
  const SweepSlurm& s = spec.slurm;
  const std::string out_dir = fs::absolute(spec.output).lexically_normal().string();
  std::vector<int64_t> all;
  for (const auto& p : points) all.push_back(p.index);
  const int64_t ranks_per_node = std::max<int64_t>(s.gpus_per_task, 1);
  std::ostringstream o;
  o << "#!/bin/bash\n"
    << "# ilf_sweep job array for the sweep \"" << spec.name << "\" (" << spec.source << "), " << points.size() << " points.\n"
    << "# One array task runs one point: SLURM_ARRAY_TASK_ID is the point index (`ilf_sweep plan` lists them).\n"
    << "# Each task runs the point's missing stages with `ilf_sweep run --point`; training runs on all the\n"
    << "# task's ranks through srun (ilf_train reads SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID and\n"
    << "# rendezvouses at MASTER_ADDR:MASTER_PORT). Before the time limit Slurm sends SIGUSR1 (--signal):\n"
    << "# ilf_train checkpoints and stops, and the task requeues itself to continue from the checkpoint.\n"
    << "#\n"
    << "# `ilf_sweep submit` submits only the incomplete points: one array for the points that train (with\n"
    << "# the resources below), one for the points that only sample and evaluate (one GPU, after the first\n"
    << "# array). By hand: sbatch [--array=LIST] [--partition=P] THIS_FILE; complete points finish at once.\n"
    << "# Edit the paths below if the checkout or the output folder moves.\n"
    << "#SBATCH --job-name=" << s.job_name << "\n"
    << "#SBATCH --array=" << slurm_array_spec(all, s.max_parallel) << "\n"
    << "#SBATCH --nodes=" << s.nodes << "\n"
    << "#SBATCH --ntasks-per-node=" << ranks_per_node << "\n";
  if (s.gpus_per_task > 0) o << "#SBATCH --gpus-per-node=" << s.gpus_per_task << "\n";
  o << "#SBATCH --cpus-per-task=" << s.cpus_per_task << "\n"
    << "#SBATCH --time=" << s.time << "\n";
  if (!s.partition.empty()) o << "#SBATCH --partition=" << s.partition << "\n";
  if (!s.account.empty()) o << "#SBATCH --account=" << s.account << "\n";
  if (!s.qos.empty()) o << "#SBATCH --qos=" << s.qos << "\n";
  if (!s.mem.empty()) o << "#SBATCH --mem=" << s.mem << "\n";
  o << "#SBATCH --output=" << out_dir << "/slurm/%x-%A_%a.out\n"
    << "#SBATCH --open-mode=append\n";
  // The warning before the time limit: 10 minutes, or a tenth of short limits (none below 5 minutes).
  if (const auto limit = slurm_time_seconds(s.time); limit && *limit >= 300)
    o << "#SBATCH --signal=USR1@" << std::min<int64_t>(600, *limit / 10) << "\n";
  o << "#SBATCH --requeue\n";
  for (const auto& option : s.sbatch_options) o << "#SBATCH " << option << "\n";
  o << "\nset -euo pipefail\n"
    << "ILF_SWEEP=" << shell_quote(paths.ilf_sweep) << "\n"
    << "SWEEP=" << shell_quote(paths.sweep_file) << "\n"
    << "OUT=" << shell_quote(out_dir) << "\n"
    << "cd " << shell_quote(paths.work_dir) << "\n";
  if (!s.setup.empty()) {
    o << "\n# Set-up from the sweep file (\"slurm.setup\").\n";
    for (const auto& line : s.setup) o << line << "\n";
  }
  o << "\nexport OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-" << s.cpus_per_task << "}\n"
    << "export MASTER_ADDR=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)\n"
    << "export MASTER_PORT=$((20000 + SLURM_JOB_ID % 20000))\n"
    << "# Fail fast instead of hanging when a rank dies (LibTorch 2.x and 1.x names).\n"
    << "export TORCH_NCCL_ASYNC_ERROR_HANDLING=1 NCCL_ASYNC_ERROR_HANDLING=1\n"
    << "echo \"ilf_sweep: point $SLURM_ARRAY_TASK_ID of " << spec.name
    << " on $SLURM_JOB_NODELIST, $SLURM_NTASKS rank(s), rendezvous $MASTER_ADDR:$MASTER_PORT\"\n"
    << "\nset +e\n"
    << "\"$ILF_SWEEP\" run \"$SWEEP\" --out \"$OUT\" --point \"$SLURM_ARRAY_TASK_ID\" \\\n"
    << "  --train-launcher \"srun --kill-on-bad-exit=1 --ntasks=$SLURM_NTASKS\"\n"
    << "status=$?\n"
    << "set -e\n"
    << "if [ $status -eq 75 ]; then\n"
    << "  echo \"ilf_sweep: training stopped before its last step (time limit); requeueing\"\n"
    << "  scontrol requeue \"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\"\n"
    << "  exit 0\n"
    << "fi\n"
    << "exit $status\n";
  return o.str();
}

// --- collect ----------------------------------------------------------------------------------------

SweepTable collect_sweep(const SweepSpec& spec, const std::vector<SweepPoint>& points) {
  SweepTable table;
  table.columns.push_back("point");
  for (const auto& axis : spec.axes)
    for (const auto& key : axis.keys) table.columns.push_back(key);
  table.columns.push_back("state");
  for (const auto& m : spec.metrics) table.columns.push_back(m);

  for (const auto& p : points) {
    std::vector<Json> row;
    row.push_back(p.id.substr(0, p.id.find('_')));
    for (const auto& [key, value] : p.values) row.push_back(value);
    const auto missing = missing_stages(spec, p);
    if (missing.empty()) {
      ++table.complete_points;
      row.push_back("complete");
    } else {
      std::vector<std::string> names;
      for (SweepStage s : missing) names.push_back(to_string(s));
      row.push_back("missing " + join(names, ","));
    }
    const auto metrics = read_json_object((fs::path(point_dir(spec, p)) / "metrics.json").string());
    std::vector<Json> train_log;
    bool train_log_read = false;
    for (const auto& m : spec.metrics) {
      Json value = nullptr;
      if (m == "plan.block_forwards") {
        if (p.block_forwards) value = *p.block_forwards;
      } else if (m.rfind("train.", 0) == 0) {
        if (!train_log_read) {
          train_log_read = true;
          std::ifstream in((fs::path(train_dir(spec, p)) / "metrics.jsonl").string());
          std::string line;
          while (std::getline(in, line)) {
            try {
              train_log.push_back(Json::parse(line));
            } catch (const nlohmann::json::exception&) {
            }
          }
        }
        for (auto it = train_log.rbegin(); it != train_log.rend(); ++it)
          if (const Json* v = find_dotted(*it, m.substr(6)); v && !v->is_null()) {
            value = *v;
            break;
          }
      } else if (metrics) {
        if (const Json* v = find_dotted(*metrics, m)) value = *v;
      }
      row.push_back(value);
    }
    table.rows.push_back(std::move(row));
  }
  return table;
}

namespace {

std::string csv_field(const Json& v) {
  std::string text = v.is_null() ? "" : value_text(v);
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

std::string markdown_field(const Json& v) {
  if (v.is_null()) return "-";
  if (v.is_number_float()) {
    std::ostringstream s;
    s << std::setprecision(4) << v.get<double>();
    return s.str();
  }
  std::string text = value_text(v);
  std::string out;
  for (char c : text) out += c == '|' ? std::string("\\|") : std::string(1, c == '\n' ? ' ' : c);
  return out;
}

}  // namespace

std::string table_to_csv(const SweepTable& table) {
  std::ostringstream o;
  for (size_t c = 0; c < table.columns.size(); ++c) o << (c ? "," : "") << csv_field(table.columns[c]);
  o << "\n";
  for (const auto& row : table.rows) {
    for (size_t c = 0; c < row.size(); ++c) o << (c ? "," : "") << csv_field(row[c]);
    o << "\n";
  }
  return o.str();
}

std::string table_to_markdown(const SweepSpec& spec, const SweepTable& table) {
  std::vector<std::string> stage_names;
  for (SweepStage s : spec.stages) stage_names.push_back(to_string(s));
  std::ostringstream o;
  o << "# Sweep " << spec.name << "\n\n";
  if (!spec.description.empty()) o << spec.description << "\n\n";
  o << "Sweep file `" << spec.source << "`, base config `" << fs::path(spec.base_config).filename().string() << "`";
  if (!spec.fixed.empty()) {
    std::vector<std::string> fixed;
    for (const auto& [key, value] : spec.fixed) fixed.push_back(key + "=" + value_text(value));
    o << " with `" << join(fixed, " ") << "`";
  }
  o << "; stages " << join(stage_names, ", ") << ". " << table.complete_points << " of " << table.rows.size()
    << " points complete.\n\n";
  o << "|";
  for (const auto& c : table.columns) o << " " << c << " |";
  o << "\n|";
  for (size_t c = 0; c < table.columns.size(); ++c) {
    bool numeric = !table.rows.empty();
    for (const auto& row : table.rows) numeric = numeric && (row[c].is_number() || row[c].is_null());
    o << (numeric ? "---:|" : "---|");
  }
  o << "\n";
  for (const auto& row : table.rows) {
    o << "|";
    for (const auto& v : row) o << " " << markdown_field(v) << " |";
    o << "\n";
  }
  return o.str();
}

}  // namespace ilf
