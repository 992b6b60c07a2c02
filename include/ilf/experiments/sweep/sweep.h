// Config-driven ablation sweeps: a sweep file (JSON) names a base run config, fixed overrides, axes of
// overrides (grid axes multiply, zip axes advance several keys together), the stages each point runs
// (train, sample, eval) and the metrics to collect. This header parses and validates sweep files,
// expands them into points, runs the stages of a point as child processes with completion markers
// (so an interrupted sweep resumes where it stopped), writes Slurm job-array scripts and collects
// every point's metrics into a table.
//
// Sweep file (all keys are read through ConfigReader, so unknown keys are errors):
//   {
//     "name": "fashion_mnist_loop_location",            // default: the file name without .json
//     "description": "Table 3: loop location and size",
//     "base_config": "configs/fashion_mnist.json",     // relative to the working directory or the sweep file
//     "output": "runs/sweeps/fashion_mnist_loop_location",  // default runs/sweeps/<name>
//     "set": {"sampling.method": "ilf", "sampling.steps": 12},   // overrides of every point
//     "axes": [
//       {"key": "ilf.t_post", "values": ["none", "rescale"], "train": false},
//       {"zip": {"ilf.loop_begin": [0, 4], "ilf.loop_end": [2, 6]}}
//     ],
//     "stages": ["train", "sample", "eval"],
//     "metrics": ["fid", "class_accuracy", "block_forwards", "seconds_per_image", "train.loss"],
//     "eval_num_samples": 1000,
//     "args": {"eval": ["--device", "cuda"]},            // extra arguments of the default stage commands
//     "commands": {"eval": ["sh", "-c", "..."]},         // replaces a stage's command (tests, custom tools)
//     "slurm": {"partition": "gpu", "time": "04:00:00", "gpus_per_task": 1, ...}
//   }
// Axes combine as a grid (the first axis varies slowest). An axis marked "train": false does not
// change training: points that differ only in such axes share one training run.
//
// Output layout under the output folder:
//   train/tNNN_<training overrides>/   ilf_train's --out, plus done_train.json
//   pNNN_<axis values>/                sample.png, metrics.json, logs, done_sample.json, done_eval.json
//   results.csv, results.md            from collect
// A stage runs only when its marker done_<stage>.json is missing; markers are written atomically after
// the stage succeeded and record the overrides, so a folder left by other settings is an error.
#pragma once
#include <cstdint>
#include <iosfwd>
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
  std::string name;               // for messages: "axes[1] (ilf.loop_begin, ilf.loop_end)"
  std::vector<std::string> keys;  // dotted run-config keys
  std::vector<std::vector<Json>> values;  // values[k][i]: the i-th value of keys[k]
  bool affects_training = true;

  size_t size() const { return values.empty() ? 0 : values.front().size(); }
};

struct SweepSlurm {
  std::string partition, account, qos, mem, job_name;
  std::string time = "04:00:00";
  int64_t nodes = 1;
  int64_t gpus_per_task = 1;  // GPUs of one array task (= one point), on each of its nodes
  int64_t cpus_per_task = 8;  // CPUs of each rank
  int64_t max_parallel = 0;   // array throttle (%K); 0 = no limit
  std::vector<std::string> setup;           // shell lines run before the point (module load, ...)
  std::vector<std::string> sbatch_options;  // extra "#SBATCH" options, e.g. "--constraint=h100"
};

struct SweepSpec {
  std::string source;  // the sweep file
  std::string name, description;
  std::string base_config;  // absolute path
  Json base;                // the base config as loaded
  std::vector<std::pair<std::string, Json>> fixed;  // "set", in file order
  std::vector<SweepAxis> axes;
  std::vector<SweepStage> stages;  // in the order train, sample, eval
  std::vector<std::string> metrics;
  int64_t eval_num_samples = 1000;
  std::map<SweepStage, std::vector<std::string>> commands;
  std::map<SweepStage, std::vector<std::string>> args;
  SweepSlurm slurm;
  std::string output;  // the output folder (the CLI's --out replaces it)

  bool has_stage(SweepStage stage) const;
};

// Reads and validates a sweep file: syntax, every key, axes (non-empty, equal zip lengths, no key
// twice), stages, commands, metrics, Slurm settings. Throws ilf::Error naming the file and the bad
// axis or key. The points themselves are checked by expand_sweep.
SweepSpec load_sweep(const std::string& path);
SweepSpec parse_sweep(const Json& sweep, const std::string& source);

// The same sweep as JSON with absolute base_config and output: what `submit` stores beside the
// points so that array tasks see the sweep as it was submitted.
Json sweep_snapshot(const SweepSpec& spec, const Json& original);

struct SweepPoint {
  int64_t index = 0;
  std::string id;  // "p003_ilf.loop_begin=4_ilf.loop_end=7" (folder name)
  std::vector<std::pair<std::string, Json>> values;  // this point's axis values, in axis order
  std::vector<std::string> overrides;        // --set assignments: "set" then the axis values
  std::vector<std::string> train_overrides;  // the same without axes marked "train": false
  int64_t train_index = 0;
  std::string train_id;  // "t001_ilf.loop_begin=4_ilf.loop_end=7"
  Json config;           // the resolved run config (base + overrides)
  std::optional<int64_t> block_forwards;  // per image, from the sampling plan (null without model.family)
};

// Expands the axes into points and checks each point's settings the way the tools will read them
// (the model, ilf, cache, sampling and training sections: unknown keys, bad values, loops outside the
// model); estimates each point's block forwards. Throws ilf::Error naming the axis, key or point.
std::vector<SweepPoint> expand_sweep(const SweepSpec& spec);

// "key=value" for --set (strings unquoted unless they would parse as another JSON value).
std::string override_assignment(const std::string& key, const Json& value);

// Folders and markers.
std::string point_dir(const SweepSpec& spec, const SweepPoint& point);
std::string train_dir(const SweepSpec& spec, const SweepPoint& point);
std::string stage_dir(const SweepSpec& spec, const SweepPoint& point, SweepStage stage);
std::string marker_path(const SweepSpec& spec, const SweepPoint& point, SweepStage stage);
// Whether the stage's marker exists; throws ilf::Error when it records other overrides.
bool stage_complete(const SweepSpec& spec, const SweepPoint& point, SweepStage stage);
std::vector<SweepStage> missing_stages(const SweepSpec& spec, const SweepPoint& point);

// `plan`: a readable listing and the JSON form (points with resolved configs, folders, estimates).
std::string plan_text(const SweepSpec& spec, const std::vector<SweepPoint>& points);
Json plan_json(const SweepSpec& spec, const std::vector<SweepPoint>& points);

// Running stages. Each stage is one child process with the point's overrides (tools from
// `tools_dir`), its output appended to <folder>/logs/<stage>.log; stdout and stderr of the child are
// never mixed into this process's output. Command placeholders: {bin} {config} {out} {point_dir}
// {train_dir} {id} {index} {stage} {key:<dotted key>}; an argument "{sets}" becomes
// "--set k=v" pairs. The child also sees ILF_SWEEP_STAGE, ILF_SWEEP_POINT, ILF_SWEEP_INDEX,
// ILF_SWEEP_POINT_DIR, ILF_SWEEP_OUT, ILF_SWEEP_CONFIG and ILF_SWEEP_BIN.
struct SweepRunOptions {
  std::string tools_dir;                    // where ilf_train, ilf_sample, ilf_eval are
  std::vector<std::string> train_launcher;  // prefix of the train command, e.g. {"srun", "--ntasks=8"}
  bool fail_fast = false;                   // stop at the first failed point
  std::ostream* log = nullptr;              // progress lines (default std::cout)
};

enum class PointOutcome {
  kAlreadyComplete,
  kCompleted,
  kFailed,           // a stage exited non-zero or did not produce its output
  kTrainingStopped,  // ilf_train stopped before its last step (signal / time limit); resume later
  kInterrupted,      // this process was asked to stop (SIGINT / SIGTERM)
};
std::string to_string(PointOutcome outcome);

// Runs the missing stages of one point. A point folder is locked while it runs (flock), so two
// runners never work on the same point or training at once (the second waits).
PointOutcome run_sweep_point(const SweepSpec& spec, const SweepPoint& point, const SweepRunOptions& options);

struct SweepRunSummary {
  int64_t already_complete = 0, completed = 0, failed = 0, stopped = 0;
  bool interrupted = false;
};
// Runs the points one after another (skipping complete ones) until all ran or a stop was requested.
SweepRunSummary run_sweep_locally(const SweepSpec& spec, const std::vector<SweepPoint>& points,
                                  const SweepRunOptions& options);

// SIGINT / SIGTERM handlers for the CLI: forward the signal to the running stage's process group, then
// stop. Stages run in their own process group and get SIGTERM if ilf_sweep dies.
void install_sweep_signal_handlers();
bool sweep_stop_requested();
int sweep_stop_signal();  // the signal received, 0 when none

// The folder of this executable (/proc/self/exe), where the other ILF tools are built.
std::string executable_dir();

// Slurm. The script runs one point per array task (SLURM_ARRAY_TASK_ID = point index) with
// `ilf_sweep run --point`, launches training through srun on all the task's ranks (MASTER_ADDR and
// MASTER_PORT exported for c10d), and requeues the task when training stopped at the time limit.
struct SbatchPaths {
  std::string ilf_sweep;   // absolute path of the ilf_sweep executable
  std::string sweep_file;  // the sweep file the tasks read (the snapshot in the output folder)
  std::string work_dir;    // where the tasks run (relative paths of the configs resolve from here)
};
std::string make_sbatch_script(const SweepSpec& spec, const std::vector<SweepPoint>& points, const SbatchPaths& paths);

// The incomplete points in two submission waves: `trainers` holds, per missing training run, the first
// point that needs it (these run with the full resources); `others` holds every other incomplete point
// (they only sample and evaluate: one GPU each, and submitted with afterok on the trainers' array when
// there is one, so that their training is done when they start).
struct SlurmWaves {
  std::vector<int64_t> trainers, others;
};
SlurmWaves slurm_waves(const SweepSpec& spec, const std::vector<SweepPoint>& points);
// "0-3,5,7" (+ "%K" when max_parallel > 0).
std::string slurm_array_spec(const std::vector<int64_t>& indices, int64_t max_parallel);

// Collect: one row per point with its axis values, state and metrics. Metric names: a dotted path
// into the point's metrics.json ("fid", "settings.steps"), "train.<key>" (the last value in the
// training's metrics.jsonl) or "plan.block_forwards" (the estimate).
struct SweepTable {
  std::vector<std::string> columns;   // "point", axis keys..., "state", metrics...
  std::vector<std::vector<Json>> rows;  // null = missing
  int64_t complete_points = 0;
};
SweepTable collect_sweep(const SweepSpec& spec, const std::vector<SweepPoint>& points);
std::string table_to_csv(const SweepTable& table);
std::string table_to_markdown(const SweepSpec& spec, const SweepTable& table);

}  // namespace ilf
