// What a training run writes for people to watch it, besides checkpoints and weights: the
// metrics.jsonl log (one JSON line per logged step, cut back to the checkpoint's step when a run
// resumes so that the file never holds a step twice) and sample grids of the EMA model. Kept apart
// from the Trainer's loop so that the file formats live in one place and the loop only says when.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "ilf/feedback/feedback.h"
#include "ilf/io/config.h"
#include "ilf/models/backbone.h"
#include "ilf/training/datasets.h"
#include "ilf/training/ema.h"

namespace ilf {

// The sample grids' settings (training.sample_images, sample_steps, sample_guidance, seed).
struct SampleGridOptions {
  int64_t images = 16;    // the first `images` samples of the data set give the conditions
  int64_t steps = 20;     // DPM-Solver++(2M) steps
  double guidance = 1.0;  // classifier-free guidance scale
  uint64_t seed = 0;      // the run's seed: the grid's noise is the same at every step
};

class RunOutput {
 public:
  explicit RunOutput(std::string out_dir);

  const std::string& folder() const { return out_dir_; }
  std::string metrics_path() const;  // out/metrics.jsonl

  // Appends `line` (one JSON object) to metrics.jsonl and flushes it.
  void append_metrics(const Json& line) const;

  // Keeps the metrics of steps <= last_step (a resumed run logs the later steps again); lines that
  // do not parse (cut short by a kill) are dropped. The file is rewritten atomically.
  void truncate_metrics(int64_t last_step) const;

  // Writes out/samples/step-<step>.png: a grid of DPM-Solver++(2M) samples of `backbone` (with
  // `feedback` when given: ILF sampling on its loop) with the EMA weights swapped in, the conditions
  // of the first samples of `dataset` and noise fixed by the seed. Skipped (one log line, once) when
  // the data are not pixels (1 or 3 channels). The backbone's train/eval mode is restored.
  void write_sample_grid(int64_t step, Backbone& backbone, FeedbackModuleImpl* feedback, ParameterEma& ema, Dataset& dataset,
                         const SampleGridOptions& options, const torch::Device& device) const;

 private:
  std::string out_dir_;
};

// "h:mm:ss" for a duration in seconds ("?" when negative or not finite).
std::string format_duration(double seconds);

// Peak memory in MiB: CUDA caching allocator's peak allocation on a CUDA device (builds with NCCL),
// otherwise the process's peak resident set size.
double peak_memory_mb(const torch::Device& device);

}  // namespace ilf
