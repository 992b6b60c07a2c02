// Sweep files: parsing and validating a sweep file (every key, the axes, stages, commands, metrics and
// Slurm settings), the snapshot `submit` stores, and the expansion of the axes into points, each checked
// the way the tools will read its run config. Kept apart from running and reporting so that a sweep can
// be read and checked without touching its output folder (see include/ilf/experiments/sweep/spec.h).
#include "ilf/experiments/sweep/spec.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <iomanip>
#include <regex>
#include <set>
#include <sstream>

#include "ilf/config/run_config.h"
#include "ilf/models/dit.h"
#include "ilf/models/pixart.h"
#include "ilf/sampling/sampler.h"
#include "ilf/sampling/solvers.h"
#include "ilf/training/trainer.h"
#include "sweep_internal.h"

namespace ilf {
namespace fs = std::filesystem;
using detail::join;
using detail::value_text;

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

// --- checking a point's run config the way the tools read it ---------------------------------------

// Parses the point's run config as the tools do (every section, unknown keys and bad values) and
// returns the sampling plan's block forwards when the model's family is known. A model folder is
// applied by the tools; its "model" section is not checked here. With `trains`, a Learning-to-Cache
// point whose router its own training writes (training.mode l2c) has no plan until that router exists.
std::optional<int64_t> check_run_config(const Json& config, const std::string& source, bool trains = false) {
  Json checked = config;
  const bool folder =
      checked.is_object() && checked.contains("model") && checked["model"].is_object() && checked["model"].contains("folder");
  if (folder) checked.erase("model");
  const RunConfig run = parse_run_config(checked, source);
  if (folder || !run.model.family) return std::nullopt;
  if (trains && run.training.mode == TrainingMode::kL2C && run.sampling.method == "l2c") return std::nullopt;
  const int64_t depth =
      *run.model.family == "dit" ? DiTConfig::from_spec(run.model).depth : PixArtConfig::from_spec(run.model).depth;
  SolverPtr solver = make_solver(run.sampling.solver);
  return plan_sampling(*make_acceleration_method(run), *solver, run.sampling.options.steps, depth).total_block_forwards;
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

bool SweepSpec::has_stage(SweepStage stage) const { return std::find(stages.begin(), stages.end(), stage) != stages.end(); }

// --- parsing ------------------------------------------------------------------------------------------

SweepSpec load_sweep(const std::string& path) { return parse_sweep(load_json_file(path), path); }

Json read_sweep_json(const std::string& path, const std::string& output, const Json& slurm_replacements) {
  Json json = load_json_file(path);
  if (!json.is_object()) throw Error(path + ": the top level must be a JSON object");
  if (!output.empty()) json["output"] = output;
  for (const auto& [key, value] : slurm_replacements.items()) json["slurm"][key] = value;
  return json;
}

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
    throw r.invalid("base_config", "an existing run config (relative to the working directory or to the sweep file); \"" + base +
                                       "\" does not exist");
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
      throw Error(source + ": " + where +
                  " must have either \"key\" and \"values\" (one setting) or \"zip\" (settings advanced together)");
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
      if (!spec.has_stage(SweepStage::kTrain))
        throw r.invalid(path, "a metric this sweep makes; \"" + m + "\" needs the train stage");
    } else if (m.rfind("plan.", 0) == 0) {
      if (m != "plan.block_forwards") throw r.invalid(path, "\"plan.block_forwards\" (the only plan metric), got \"" + m + "\"");
    } else if (!spec.has_stage(SweepStage::kEval)) {
      throw r.invalid(path, "a metric this sweep makes; \"" + m + "\" comes from metrics.json, which the eval stage writes");
    }
  }
  spec.max_points = r.get<int64_t>("max_points", spec.max_points);
  if (spec.max_points < 1) throw r.invalid("max_points", ">= 1");
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
      if (o.rfind("--", 0) != 0)
        throw r.invalid("slurm.sbatch_options", "long sbatch options such as \"--constraint=h100\", got \"" + o + "\"");
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
                                   {"account", &s.account},
                                   {"qos", &s.qos},
                                   {"mem", &s.mem}})
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

  // The grid's size before any point is made: checked against overflow and the limit.
  int64_t total = 1;
  for (const auto& axis : spec.axes) {
    const auto n = static_cast<int64_t>(axis.size());
    if (n > 0 && total > spec.max_points / n)
      throw Error(spec.source + ": the sweep has more than " + std::to_string(spec.max_points) +
                  " points (the product of its axes' sizes passes it at " + axis.name +
                  "); raise \"max_points\" "
                  "(or ilf_sweep --max-points) if you mean it");
    total *= n;
  }
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
      point.block_forwards = check_run_config(point.config, "run config", spec.has_stage(SweepStage::kTrain));
    } catch (const Error& e) {
      std::vector<std::string> values;
      for (const auto& [key, value] : point.values) values.push_back(key + "=" + value_text(value));
      throw Error(spec.source + ": point " + std::to_string(index) + " (" + join(values, ", ") + ") is not valid: " + e.what());
    }
    points.push_back(std::move(point));
  }
  return points;
}

}  // namespace ilf
