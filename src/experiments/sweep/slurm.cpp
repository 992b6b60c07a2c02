// Slurm job arrays: the sbatch script that runs one point per array task (training through srun on all
// the task's ranks, requeued when it stops at the time limit), the array specifications, and the split
// of the incomplete points into a training wave and a sample/eval wave, and their submission with sbatch
// (see include/ilf/experiments/sweep/slurm.h).
#include "ilf/experiments/sweep/slurm.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <ostream>
#include <filesystem>
#include <optional>
#include <set>
#include <sstream>

#include "ilf/error.h"
#include "ilf/experiments/sweep/runner.h"
#include "ilf/io/atomic_file.h"
#include "sweep_internal.h"

namespace ilf {
namespace fs = std::filesystem;
using detail::join;
using detail::shell_quote;

namespace {

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

}  // namespace

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

namespace {

// Runs a command through the shell and returns its standard output; throws on a non-zero exit.
std::string capture(const std::vector<std::string>& argv) {
  std::string command;
  for (const auto& a : argv) command += (command.empty() ? "" : " ") + shell_quote(a);
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

std::string job_id(const std::string& sbatch_output) {
  std::string id = sbatch_output.substr(0, sbatch_output.find_first_of(";\n"));
  if (id.empty() || id.find_first_not_of("0123456789") != std::string::npos)
    throw Error("sbatch printed no job id: \"" + sbatch_output + "\"");
  return id;
}

}  // namespace

void submit_sweep(const SweepSpec& spec, const Json& sweep_json, const std::vector<SweepPoint>& points,
                  const SlurmSubmitOptions& options, std::ostream& log) {
  const fs::path out = fs::absolute(spec.output).lexically_normal();
  fs::create_directories(out / "slurm");
  const std::string snapshot_path = (out / "sweep.json").string();
  write_file_atomically(snapshot_path, [&](std::ostream& o) { o << sweep_snapshot(spec, sweep_json).dump(2) << "\n"; });
  SbatchPaths paths;
  paths.ilf_sweep = options.ilf_sweep;
  paths.sweep_file = snapshot_path;
  paths.work_dir = options.work_dir;
  const std::string script = make_sbatch_script(spec, points, paths);
  const std::string script_path = (out / "slurm" / (spec.name + ".sbatch")).string();
  write_file_atomically(script_path, [&](std::ostream& o) { o << script; });
  fs::permissions(script_path, fs::perms::owner_exec | fs::perms::group_exec, fs::perm_options::add);
  log << "wrote " << script_path << " (" << points.size() << " array tasks) and " << snapshot_path << std::endl;

  const SlurmWaves waves = slurm_waves(spec, points);
  if (waves.trainers.empty() && waves.others.empty()) {
    log << "all " << points.size() << " points are complete; nothing to submit" << std::endl;
    return;
  }
  // The trainers with the script's resources; the others need one GPU (they sample and evaluate).
  const std::string sbatch = options.sbatch;
  std::vector<std::vector<std::string>> commands;
  if (!waves.trainers.empty())
    commands.push_back(
        {sbatch, "--parsable", "--array=" + slurm_array_spec(waves.trainers, spec.slurm.max_parallel), script_path});
  if (!waves.others.empty()) {
    std::vector<std::string> command = {sbatch, "--parsable",
                                        "--array=" + slurm_array_spec(waves.others, spec.slurm.max_parallel)};
    if (spec.slurm.gpus_per_task > 1 || spec.slurm.nodes > 1)
      for (const char* option : {"--nodes=1", "--ntasks-per-node=1", "--gpus-per-node=1"}) command.push_back(option);
    if (!waves.trainers.empty()) {
      command.push_back("--dependency=afterok:{trainers}");
      command.push_back("--kill-on-invalid-dep=yes");
    }
    command.push_back(script_path);
    commands.push_back(command);
  }
  if (options.dry_run) {
    log << "\n" << script << "\nwould run:\n";
    for (const auto& command : commands) {
      log << " ";
      for (const auto& a : command) log << " " << a;
      log << "\n";
    }
    log << "(" << waves.trainers.size() << " points that train, " << waves.others.size() << " that sample/evaluate)" << std::endl;
    return;
  }
  std::ofstream jobs((out / "slurm" / "jobs.txt").string(), std::ios::app);
  std::string trainers_job;
  for (auto command : commands) {
    const bool trainers = !waves.trainers.empty() && trainers_job.empty();
    for (auto& a : command)
      if (a == "--dependency=afterok:{trainers}") a = "--dependency=afterok:" + trainers_job;
    const std::string id = job_id(capture(command));
    log << "submitted job array " << id << " (points " << slurm_array_spec(trainers ? waves.trainers : waves.others, 0)
        << (trainers               ? ", which train"
            : trainers_job.empty() ? ""
                                   : ", after " + trainers_job)
        << ")" << std::endl;
    jobs << id << "\n";
    if (trainers) trainers_job = id;
  }
}

}  // namespace ilf
