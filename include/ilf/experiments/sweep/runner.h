// Running a sweep's points: the folders and completion markers of each point and training, the stage
// commands run as child processes (locally one after another, or one point per Slurm array task), and
// the signal handling that stops a running stage cleanly so that the sweep resumes later.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "ilf/experiments/sweep/spec.h"

namespace ilf {

// Folders and markers.
std::string point_dir(const SweepSpec& spec, const SweepPoint& point);
std::string train_dir(const SweepSpec& spec, const SweepPoint& point);
std::string stage_dir(const SweepSpec& spec, const SweepPoint& point, SweepStage stage);
std::string marker_path(const SweepSpec& spec, const SweepPoint& point, SweepStage stage);
// Whether the stage's marker exists; throws ilf::Error when it records other overrides.
bool stage_complete(const SweepSpec& spec, const SweepPoint& point, SweepStage stage);
std::vector<SweepStage> missing_stages(const SweepSpec& spec, const SweepPoint& point);

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

// Exit status of `ilf_sweep run` for training that stopped before its last step (run again to continue).
constexpr int kExitTrainingStopped = 75;

// Runs the missing stages of one point. A point folder is locked while it runs (flock), so two
// runners never work on the same point or training at once (the second waits).
PointOutcome run_sweep_point(const SweepSpec& spec, const SweepPoint& point, const SweepRunOptions& options);

struct SweepRunSummary {
  int64_t already_complete = 0, completed = 0, failed = 0, stopped = 0;
  bool interrupted = false;
};
// Exit status of `ilf_sweep run`: 0 done (or already complete), 1 a stage failed, kExitTrainingStopped
// when training stopped early, 128 + the signal received when interrupted.
int exit_status(PointOutcome outcome);
int exit_status(const SweepRunSummary& summary);

// Runs the points one after another (skipping complete ones) until all ran or a stop was requested.
SweepRunSummary run_sweep_locally(const SweepSpec& spec, const std::vector<SweepPoint>& points, const SweepRunOptions& options);

// SIGINT / SIGTERM handlers for the CLI: forward the signal to the running stage's process group, then
// stop. Stages run in their own process group and get SIGTERM if ilf_sweep dies.
void install_sweep_signal_handlers();
bool sweep_stop_requested();
int sweep_stop_signal();  // the signal received, 0 when none

// The folder of this executable (/proc/self/exe), where the other ILF tools are built.
std::string executable_dir();

}  // namespace ilf
