// ilf_sweep: config-driven ablation sweeps over the ILF tools (see include/ilf/experiments/sweep/sweep.h for the
// sweep-file format and the output layout).
//   ilf_sweep plan    SWEEP [--json]                 the points: overrides, folders, block forwards, state
//   ilf_sweep run     SWEEP --local                  every incomplete point, one after another (resumes)
//   ilf_sweep run     SWEEP --point N                one point (what each Slurm array task runs)
//   ilf_sweep submit  SWEEP [--partition P] [--time T] [--gpus-per-task G] [--dry-run]
//                                                    an sbatch job-array script, submitted with sbatch
//   ilf_sweep collect SWEEP [--markdown FILE] [--csv FILE]
//                                                    every point's metrics as CSV and a Markdown table
// Every subcommand takes --out DIR (default: the sweep file's "output"). The sweep file and every
// point are validated before anything runs. Exit status of run: 0 done, 1 a stage failed, 75 training
// stopped before its last step (run again to continue), 128 + signal when interrupted.
#include <CLI/CLI.hpp>

#include <filesystem>
#include <iostream>
#include <sstream>

#include "ilf/error.h"
#include "ilf/experiments/sweep/sweep.h"
#include "ilf/io/json.h"
#include "tool_common.h"

using namespace ilf;
namespace fs = std::filesystem;

namespace {

struct CommonArgs {
  std::string sweep_file;
  std::string out;
  std::vector<std::string> overrides;  // --set key=value: added to the sweep file's "set" (every point)
  int64_t max_points = -1;             // --max-points: replaces the sweep file's "max_points"
};

// The sweep file's JSON with the command line's replacements: --out, --set, --max-points and the Slurm flags.
Json sweep_json(const CommonArgs& common, const Json& slurm_replacements = Json::object()) {
  Json json = read_sweep_json(common.sweep_file, common.out, slurm_replacements);
  for (const std::string& assignment : common.overrides) {
    const auto eq = assignment.find('=');
    if (eq == std::string::npos || eq == 0) throw Error("--set " + assignment + ": expected key=value, e.g. sampling.steps=10");
    const std::string key = assignment.substr(0, eq), text = assignment.substr(eq + 1);
    Json value;
    try {
      value = parse_json_strict(text, "--set " + key);
    } catch (const nlohmann::json::parse_error&) {
      value = text;  // a bare string, as the other tools read it
    }
    if (json.contains("set") && !json["set"].is_object()) break;  // parse_sweep names the bad "set"
    json["set"][key] = value;
  }
  if (common.max_points > 0) json["max_points"] = common.max_points;
  return json;
}

struct SlurmFlags {
  std::string partition, time, account;
  int64_t gpus_per_task = -1, nodes = -1, cpus_per_task = -1, max_parallel = -1;

  // The flags given, as replacements of the sweep file's "slurm" keys.
  Json replacements() const {
    Json slurm = Json::object();
    if (!partition.empty()) slurm["partition"] = partition;
    if (!time.empty()) slurm["time"] = time;
    if (!account.empty()) slurm["account"] = account;
    if (gpus_per_task >= 0) slurm["gpus_per_task"] = gpus_per_task;
    if (nodes >= 0) slurm["nodes"] = nodes;
    if (cpus_per_task >= 0) slurm["cpus_per_task"] = cpus_per_task;
    if (max_parallel >= 0) slurm["max_parallel"] = max_parallel;
    return slurm;
  }
};

SweepSpec read_spec(const CommonArgs& common) { return parse_sweep(sweep_json(common), common.sweep_file); }

std::vector<std::string> split_words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> words;
  std::string w;
  while (in >> w) words.push_back(w);
  return words;
}

int plan_command(const CommonArgs& common, bool as_json) {
  const SweepSpec spec = read_spec(common);
  const auto points = expand_sweep(spec);
  if (as_json)
    std::cout << plan_json(spec, points).dump(2) << std::endl;
  else
    std::cout << plan_text(spec, points);
  return 0;
}

int run_command(const CommonArgs& common, bool local, int64_t point_index, bool fail_fast, const std::string& launcher,
                const std::string& tools_dir) {
  if (local == (point_index >= 0)) throw Error("run: give either --local (all points here) or --point N (one point)");
  const SweepSpec spec = read_spec(common);
  const auto points = expand_sweep(spec);
  SweepRunOptions options;
  options.tools_dir = tools_dir.empty() ? executable_dir() : tools_dir;
  options.train_launcher = split_words(launcher);
  options.fail_fast = fail_fast;
  install_sweep_signal_handlers();
  if (point_index >= 0) {
    if (point_index >= static_cast<int64_t>(points.size()))
      throw Error("--point " + std::to_string(point_index) + ": the sweep has points 0.." + std::to_string(points.size() - 1));
    return exit_status(run_sweep_point(spec, points[point_index], options));
  }
  std::cout << "sweep " << spec.name << ": " << points.size() << " points in " << spec.output << std::endl;
  const SweepRunSummary summary = run_sweep_locally(spec, points, options);
  std::cout << "sweep " << spec.name << ": " << summary.already_complete << " already complete, " << summary.completed
            << " completed now, " << summary.failed << " failed, " << summary.stopped << " stopped early"
            << (summary.interrupted ? "; interrupted (run again to finish the missing points)" : "") << std::endl;
  return exit_status(summary);
}

int submit_command(const CommonArgs& common, const SlurmFlags& flags, bool dry_run, const std::string& sbatch) {
  const Json json = sweep_json(common, flags.replacements());
  const SweepSpec spec = parse_sweep(json, common.sweep_file);
  SlurmSubmitOptions options;
  options.ilf_sweep = (fs::path(executable_dir()) / "ilf_sweep").string();
  options.work_dir = fs::current_path().string();
  options.sbatch = sbatch;
  options.dry_run = dry_run;
  submit_sweep(spec, json, expand_sweep(spec), options, std::cout);
  return 0;
}

int collect_command(const CommonArgs& common, const std::string& csv_path, const std::string& markdown_path,
                    bool require_complete) {
  const SweepSpec spec = read_spec(common);
  const auto points = expand_sweep(spec);
  const SweepTable table = collect_sweep(spec, points);
  const std::vector<std::string> written = write_sweep_results(spec, table, csv_path, markdown_path);
  std::cout << table_to_markdown(spec, table);
  std::cerr << "ilf_sweep: " << table.complete_points << " of " << points.size() << " points complete; wrote";
  for (const auto& path : written) std::cerr << " " << path;
  std::cerr << std::endl;
  if (require_complete && table.complete_points != static_cast<int64_t>(points.size())) {
    std::cerr << "ilf_sweep: error: " << points.size() - table.complete_points << " points are incomplete" << std::endl;
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ilf_sweep: ablation sweeps over the ILF tools, here or as Slurm job arrays"};
  app.require_subcommand(1);
  CommonArgs common;
  auto add_common = [&](CLI::App* sub) {
    sub->add_option("sweep", common.sweep_file, "sweep file (JSON)")->required();
    sub->add_option("--out", common.out, "output folder (default: the sweep file's \"output\")")->check(cli::NonEmpty);
    sub->add_option("--set", common.overrides,
                    "override a config value of every point, key.path=value (repeatable; added to the sweep's \"set\")");
    sub->add_option("--max-points", common.max_points,
                    "most points the sweep may expand to (replaces \"max_points\"; default " +
                        std::to_string(kDefaultMaxSweepPoints) + ")")
        ->transform(cli::Count);
  };

  bool as_json = false;
  CLI::App* plan = app.add_subcommand("plan", "list the points: overrides, folders, estimated block forwards, state");
  add_common(plan);
  plan->add_flag("--json", as_json, "print the plan as JSON, with every point's resolved config");

  bool local = false, fail_fast = false;
  int64_t point = -1;
  std::string launcher, tools_dir;
  CLI::App* run = app.add_subcommand("run", "run the stages of the incomplete points (skips complete ones)");
  add_common(run);
  run->add_flag("--local", local, "run every incomplete point here, one after another");
  run->add_option("--point", point, "run only this point (its index; Slurm array tasks use this)");
  run->add_flag("--fail-fast", fail_fast, "stop at the first failed point (default: go on with the next ones)");
  run->add_option("--train-launcher", launcher, "prefix of the train command, e.g. \"srun --ntasks=8\"");
  run->add_option("--tools", tools_dir, "folder of ilf_train, ilf_sample, ilf_eval (default: ilf_sweep's own)");

  SlurmFlags flags;
  bool dry_run = false;
  std::string sbatch = "sbatch";
  CLI::App* submit = app.add_subcommand("submit", "write the sbatch job-array script and submit the incomplete points");
  add_common(submit);
  submit->add_option("--partition", flags.partition, "Slurm partition (replaces slurm.partition)");
  submit->add_option("--time", flags.time, "time limit per point, e.g. 04:00:00 (replaces slurm.time)");
  submit->add_option("--gpus-per-task", flags.gpus_per_task, "GPUs per array task = per point (replaces slurm.gpus_per_task)");
  submit->add_option("--nodes", flags.nodes, "nodes per point (replaces slurm.nodes)");
  submit->add_option("--cpus-per-task", flags.cpus_per_task, "CPUs per rank (replaces slurm.cpus_per_task)");
  submit->add_option("--account", flags.account, "Slurm account (replaces slurm.account)");
  submit->add_option("--max-parallel", flags.max_parallel, "at most this many array tasks at once (replaces slurm.max_parallel)");
  submit->add_flag("--dry-run", dry_run, "write and print the script and the sbatch commands; submit nothing");
  submit->add_option("--sbatch", sbatch, "the sbatch program")->capture_default_str();

  std::string csv_path, markdown_path;
  bool require_complete = false;
  CLI::App* collect = app.add_subcommand("collect", "gather every point's metrics into OUT/results.csv and OUT/results.md");
  add_common(collect);
  collect->add_option("--csv", csv_path, "also write the CSV here");
  collect->add_option("--markdown", markdown_path, "also write the Markdown table here (e.g. docs/results/NAME.md)");
  collect->add_flag("--require-complete", require_complete, "exit with status 1 when a point is incomplete");

  if (const int code = cli::parse(app, argc, argv, "ilf_sweep"); code >= 0) return code;
  try {
    if (plan->parsed()) return plan_command(common, as_json);
    if (run->parsed()) return run_command(common, local, point, fail_fast, launcher, tools_dir);
    if (submit->parsed()) return submit_command(common, flags, dry_run, sbatch);
    if (collect->parsed()) return collect_command(common, csv_path, markdown_path, require_complete);
  } catch (...) {
    return cli::report_error("ilf_sweep");
  }
  return 1;
}
