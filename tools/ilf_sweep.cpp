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

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "ilf/error.h"
#include "ilf/io/atomic_file.h"
#include "ilf/io/config.h"
#include "ilf/experiments/sweep/sweep.h"
#include "tool_common.h"

using namespace ilf;
namespace fs = std::filesystem;

namespace {

constexpr int kExitTrainingStopped = 75;

struct CommonArgs {
  std::string sweep_file;
  std::string out;
};

struct SlurmFlags {
  std::string partition, time, account;
  int64_t gpus_per_task = -1, nodes = -1, cpus_per_task = -1, max_parallel = -1;
};

// The sweep file with the command-line replacements applied (validated together by parse_sweep).
Json sweep_json(const CommonArgs& common, const SlurmFlags* slurm) {
  Json json = load_json_file(common.sweep_file);
  if (!json.is_object()) throw Error(common.sweep_file + ": the top level must be a JSON object");
  if (!common.out.empty()) json["output"] = common.out;
  if (slurm) {
    if (!slurm->partition.empty()) json["slurm"]["partition"] = slurm->partition;
    if (!slurm->time.empty()) json["slurm"]["time"] = slurm->time;
    if (!slurm->account.empty()) json["slurm"]["account"] = slurm->account;
    if (slurm->gpus_per_task >= 0) json["slurm"]["gpus_per_task"] = slurm->gpus_per_task;
    if (slurm->nodes >= 0) json["slurm"]["nodes"] = slurm->nodes;
    if (slurm->cpus_per_task >= 0) json["slurm"]["cpus_per_task"] = slurm->cpus_per_task;
    if (slurm->max_parallel >= 0) json["slurm"]["max_parallel"] = slurm->max_parallel;
  }
  return json;
}

std::vector<std::string> split_words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> words;
  std::string w;
  while (in >> w) words.push_back(w);
  return words;
}

std::string quoted(const std::string& word) {
  std::string out = "'";
  for (char c : word) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs a command through the shell and returns its standard output; throws on a non-zero exit.
std::string capture(const std::vector<std::string>& argv) {
  std::string command;
  for (const auto& a : argv) command += (command.empty() ? "" : " ") + quoted(a);
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) throw Error("cannot run " + command);
  std::string output;
  char buffer[4096];
  size_t n;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
  const int status = pclose(pipe);
  if (status != 0) throw Error(command + " failed (status " + std::to_string(status) + "): " + output);
  return output;
}

int plan_command(const CommonArgs& common, bool as_json) {
  const SweepSpec spec = parse_sweep(sweep_json(common, nullptr), common.sweep_file);
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
  const SweepSpec spec = parse_sweep(sweep_json(common, nullptr), common.sweep_file);
  const auto points = expand_sweep(spec);
  SweepRunOptions options;
  options.tools_dir = tools_dir.empty() ? executable_dir() : tools_dir;
  options.train_launcher = split_words(launcher);
  options.fail_fast = fail_fast;
  install_sweep_signal_handlers();

  if (point_index >= 0) {
    if (point_index >= static_cast<int64_t>(points.size()))
      throw Error("--point " + std::to_string(point_index) + ": the sweep has points 0.." + std::to_string(points.size() - 1));
    const PointOutcome outcome = run_sweep_point(spec, points[point_index], options);
    switch (outcome) {
      case PointOutcome::kAlreadyComplete:
      case PointOutcome::kCompleted: return 0;
      case PointOutcome::kFailed: return 1;
      case PointOutcome::kTrainingStopped: return kExitTrainingStopped;
      case PointOutcome::kInterrupted: return 128 + (sweep_stop_signal() ? sweep_stop_signal() : SIGTERM);
    }
    return 1;
  }
  std::cout << "sweep " << spec.name << ": " << points.size() << " points in " << spec.output << std::endl;
  const SweepRunSummary summary = run_sweep_locally(spec, points, options);
  std::cout << "sweep " << spec.name << ": " << summary.already_complete << " already complete, " << summary.completed
            << " completed now, " << summary.failed << " failed, " << summary.stopped << " stopped early"
            << (summary.interrupted ? "; interrupted (run again to finish the missing points)" : "") << std::endl;
  if (summary.interrupted) return 128 + (sweep_stop_signal() ? sweep_stop_signal() : SIGINT);
  if (summary.failed > 0) return 1;
  if (summary.stopped > 0) return kExitTrainingStopped;
  return 0;
}

int submit_command(const CommonArgs& common, const SlurmFlags& flags, bool dry_run, const std::string& sbatch) {
  const Json json = sweep_json(common, &flags);
  const SweepSpec spec = parse_sweep(json, common.sweep_file);
  const auto points = expand_sweep(spec);

  const fs::path out = fs::absolute(spec.output).lexically_normal();
  fs::create_directories(out / "slurm");
  const std::string snapshot_path = (out / "sweep.json").string();
  write_file_atomically(snapshot_path, [&](std::ostream& o) { o << sweep_snapshot(spec, json).dump(2) << "\n"; });
  SbatchPaths paths;
  paths.ilf_sweep = (fs::path(executable_dir()) / "ilf_sweep").string();
  paths.sweep_file = snapshot_path;
  paths.work_dir = fs::current_path().string();
  const std::string script = make_sbatch_script(spec, points, paths);
  const std::string script_path = (out / "slurm" / (spec.name + ".sbatch")).string();
  write_file_atomically(script_path, [&](std::ostream& o) { o << script; });
  fs::permissions(script_path, fs::perms::owner_exec | fs::perms::group_exec, fs::perm_options::add);
  std::cout << "wrote " << script_path << " (" << points.size() << " array tasks) and " << snapshot_path << std::endl;

  const SlurmWaves waves = slurm_waves(spec, points);
  if (waves.trainers.empty() && waves.others.empty()) {
    std::cout << "all " << points.size() << " points are complete; nothing to submit" << std::endl;
    return 0;
  }
  // The trainers with the script's resources; the others need one GPU (they sample and evaluate).
  std::vector<std::vector<std::string>> commands;
  if (!waves.trainers.empty())
    commands.push_back({sbatch, "--parsable", "--array=" + slurm_array_spec(waves.trainers, spec.slurm.max_parallel), script_path});
  if (!waves.others.empty()) {
    std::vector<std::string> command = {sbatch, "--parsable", "--array=" + slurm_array_spec(waves.others, spec.slurm.max_parallel)};
    if (spec.slurm.gpus_per_task > 1 || spec.slurm.nodes > 1)
      for (const char* option : {"--nodes=1", "--ntasks-per-node=1", "--gpus-per-node=1"}) command.push_back(option);
    if (!waves.trainers.empty()) {
      command.push_back("--dependency=afterok:{trainers}");
      command.push_back("--kill-on-invalid-dep=yes");
    }
    command.push_back(script_path);
    commands.push_back(command);
  }
  if (dry_run) {
    std::cout << "\n" << script << "\nwould run:\n";
    for (const auto& command : commands) {
      std::cout << " ";
      for (const auto& a : command) std::cout << " " << a;
      std::cout << "\n";
    }
    std::cout << "(" << waves.trainers.size() << " points that train, " << waves.others.size() << " that sample/evaluate)"
              << std::endl;
    return 0;
  }
  auto job_id = [](const std::string& output) {
    std::string id = output.substr(0, output.find_first_of(";\n"));
    if (id.empty() || id.find_first_not_of("0123456789") != std::string::npos)
      throw Error("sbatch printed no job id: \"" + output + "\"");
    return id;
  };
  std::ofstream jobs((out / "slurm" / "jobs.txt").string(), std::ios::app);
  std::string trainers_job;
  for (auto command : commands) {
    const bool trainers = !waves.trainers.empty() && trainers_job.empty();
    for (auto& a : command)
      if (a == "--dependency=afterok:{trainers}") a = "--dependency=afterok:" + trainers_job;
    const std::string id = job_id(capture(command));
    std::cout << "submitted job array " << id << " (points " << slurm_array_spec(trainers ? waves.trainers : waves.others, 0)
              << (trainers ? ", which train" : trainers_job.empty() ? "" : ", after " + trainers_job) << ")" << std::endl;
    jobs << id << "\n";
    if (trainers) trainers_job = id;
  }
  return 0;
}

int collect_command(const CommonArgs& common, const std::string& csv_path, const std::string& markdown_path,
                    bool require_complete) {
  const SweepSpec spec = parse_sweep(sweep_json(common, nullptr), common.sweep_file);
  const auto points = expand_sweep(spec);
  const SweepTable table = collect_sweep(spec, points);
  const std::string csv = table_to_csv(table);
  const std::string markdown = table_to_markdown(spec, table);
  fs::create_directories(spec.output);
  std::vector<std::pair<std::string, const std::string*>> outputs = {
      {(fs::path(spec.output) / "results.csv").string(), &csv}, {(fs::path(spec.output) / "results.md").string(), &markdown}};
  if (!csv_path.empty()) outputs.emplace_back(csv_path, &csv);
  if (!markdown_path.empty()) outputs.emplace_back(markdown_path, &markdown);
  for (const auto& [path, text] : outputs) {
    if (fs::path(path).has_parent_path()) fs::create_directories(fs::path(path).parent_path());
    write_file_atomically(path, [&](std::ostream& o) { o << *text; });
  }
  std::cout << markdown;
  std::cerr << "ilf_sweep: " << table.complete_points << " of " << points.size() << " points complete; wrote";
  for (const auto& [path, text] : outputs) std::cerr << " " << path;
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
    sub->add_option("--out", common.out, "output folder (default: the sweep file's \"output\")");
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
