// Slurm job arrays for a sweep: the sbatch script (one point per array task) and how `submit` splits the
// incomplete points into arrays.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "ilf/experiments/sweep/spec.h"

namespace ilf {

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

struct SlurmSubmitOptions {
  std::string ilf_sweep;          // absolute path of the ilf_sweep executable the tasks run
  std::string work_dir;           // where the tasks run
  std::string sbatch = "sbatch";  // the sbatch program
  bool dry_run = false;           // write and print the script and the sbatch commands; submit nothing
};

// `ilf_sweep submit`: writes OUT/sweep.json (sweep_snapshot of `sweep_json`) and
// OUT/slurm/<name>.sbatch, then submits the incomplete points as up to two job arrays (the trainers,
// then the others with afterok on them) and appends the job ids to OUT/slurm/jobs.txt. Progress and,
// for a dry run, the script and commands go to `log`. Throws ilf::Error when sbatch fails.
void submit_sweep(const SweepSpec& spec, const Json& sweep_json, const std::vector<SweepPoint>& points,
                  const SlurmSubmitOptions& options, std::ostream& log);

}  // namespace ilf
