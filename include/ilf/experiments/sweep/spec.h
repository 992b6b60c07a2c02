// Sweep files and their points: the parsed, validated sweep (SweepSpec) and its expansion into points
// (SweepPoint), each with its --set overrides, its training run and its resolved run config. Everything
// the other parts of a sweep (running, Slurm, collecting) work from; see sweep.h for the file format.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ilf/io/config.h"

namespace ilf {

enum class SweepStage { kTrain, kSample, kEval };
std::string to_string(SweepStage stage);

// One axis: a single key ("key" + "values") or several keys advanced together ("zip").
struct SweepAxis {
  std::string name;                       // for messages: "axes[1] (ilf.loop_begin, ilf.loop_end)"
  std::vector<std::string> keys;          // dotted run-config keys
  std::vector<std::vector<Json>> values;  // values[k][i]: the i-th value of keys[k]
  bool affects_training = true;

  size_t size() const { return values.empty() ? 0 : values.front().size(); }
};

struct SweepSlurm {
  std::string partition, account, qos, mem, job_name;
  std::string time = "04:00:00";
  int64_t nodes = 1;
  int64_t gpus_per_task = 1;                // GPUs of one array task (= one point), on each of its nodes
  int64_t cpus_per_task = 8;                // CPUs of each rank
  int64_t max_parallel = 0;                 // array throttle (%K); 0 = no limit
  std::vector<std::string> setup;           // shell lines run before the point (module load, ...)
  std::vector<std::string> sbatch_options;  // extra "#SBATCH" options, e.g. "--constraint=h100"
};

// The most points a sweep may expand to unless its file's "max_points" (or ilf_sweep --max-points)
// says more: the grid's size is the product of its axes, computed (with an overflow check) before any
// point is made.
constexpr int64_t kDefaultMaxSweepPoints = 100000;

struct SweepSpec {
  std::string source;  // the sweep file
  std::string name, description;
  std::string base_config;                          // absolute path
  Json base;                                        // the base config as loaded
  std::vector<std::pair<std::string, Json>> fixed;  // "set", in file order
  std::vector<SweepAxis> axes;
  std::vector<SweepStage> stages;  // in the order train, sample, eval
  std::vector<std::string> metrics;
  int64_t eval_num_samples = 1000;
  std::map<SweepStage, std::vector<std::string>> commands;
  std::map<SweepStage, std::vector<std::string>> args;
  SweepSlurm slurm;
  std::string output;                           // the output folder (the CLI's --out replaces it)
  int64_t max_points = kDefaultMaxSweepPoints;  // "max_points" (the CLI's --max-points replaces it)

  bool has_stage(SweepStage stage) const;
};

// Reads and validates a sweep file: syntax, every key, axes (non-empty, equal zip lengths, no key
// twice), stages, commands, metrics, Slurm settings. Throws ilf::Error naming the file and the bad
// axis or key. The points themselves are checked by expand_sweep.
SweepSpec load_sweep(const std::string& path);
// The sweep file's JSON with the command line's replacements: "output" (when `output` is not empty) and
// the "slurm" keys of `slurm_replacements` (an object); parse_sweep validates them with the file.
Json read_sweep_json(const std::string& path, const std::string& output, const Json& slurm_replacements = Json::object());
SweepSpec parse_sweep(const Json& sweep, const std::string& source);

// The same sweep as JSON with absolute base_config and output: what `submit` stores beside the
// points so that array tasks see the sweep as it was submitted.
Json sweep_snapshot(const SweepSpec& spec, const Json& original);

struct SweepPoint {
  int64_t index = 0;
  std::string id;                                    // "p003_ilf.loop_begin=4_ilf.loop_end=7" (folder name)
  std::vector<std::pair<std::string, Json>> values;  // this point's axis values, in axis order
  std::vector<std::string> overrides;                // --set assignments: "set" then the axis values
  std::vector<std::string> train_overrides;          // the same without axes marked "train": false
  int64_t train_index = 0;
  std::string train_id;                   // "t001_ilf.loop_begin=4_ilf.loop_end=7"
  Json config;                            // the resolved run config (base + overrides)
  std::optional<int64_t> block_forwards;  // per image, from the sampling plan (null without model.family)
};

// Expands the axes into points and checks each point's settings the way the tools will read them
// (the model, ilf, cache, sampling and training sections: unknown keys, bad values, loops outside the
// model); estimates each point's block forwards. Throws ilf::Error naming the axis, key or point.
std::vector<SweepPoint> expand_sweep(const SweepSpec& spec);

// "key=value" for --set (strings unquoted unless they would parse as another JSON value).
std::string override_assignment(const std::string& key, const Json& value);

}  // namespace ilf
