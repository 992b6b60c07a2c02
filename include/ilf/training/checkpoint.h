// Training checkpoints: everything needed to continue a run exactly (trainable weights, their EMA,
// the AdamW state, the step, the RNG state, the data position and the resolved config), in one
// safetensors file <folder>/checkpoint-<step>.safetensors written atomically (temporary file, flush,
// fsync, rename), so a crash never leaves a partial file under a checkpoint name. The newest
// `keep` files are kept, older ones removed after the new one is in place.
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

#include "ilf/error.h"
#include "ilf/io/safetensors.h"

namespace ilf {

// AdamW's per-parameter state.
struct AdamState {
  int64_t step = 0;
  torch::Tensor exp_avg;     // first moment, like the parameter
  torch::Tensor exp_avg_sq;  // second moment, like the parameter
};

struct TrainingCheckpoint {
  int64_t step = 0;   // optimizer steps completed
  int64_t epoch = 0;  // data position of the next step
  int64_t step_in_epoch = 0;
  std::string mode;                            // "ilf" or "pretrain"
  std::string config_json;                     // the resolved config the run used
  TensorMap trainable;                         // name -> current value (float32)
  TensorMap ema;                               // name -> EMA value
  std::map<std::string, AdamState> optimizer;  // name -> AdamW state (absent before the first step)
  torch::Tensor cpu_rng_state;                 // the default CPU generator's state (uint8)
};

// Writes <folder>/checkpoint-<step, 8 digits>.safetensors atomically and removes all but the newest
// `keep` checkpoints (keep >= 1). Returns the path written.
std::string save_checkpoint(const std::string& folder, const TrainingCheckpoint& checkpoint, int64_t keep);

// A checkpoint without its "checksum" metadata: not corrupt as far as anyone can tell, but unverifiable.
struct UncheckedCheckpointError : Error {
  using Error::Error;
};

// Reads a checkpoint written by save_checkpoint; throws ilf::Error naming the file if it is not one
// (checksum mismatch, bad metadata, an RNG state the generator refuses). A checkpoint without a
// "checksum" is refused with UncheckedCheckpointError unless `allow_unchecked` (then a warning).
TrainingCheckpoint load_checkpoint(const std::string& path, bool allow_unchecked = false);

// The checkpoint files in `folder`, oldest first (by step); empty if none or no folder. A name whose
// step does not fit 64 bits (checkpoint-99999999999999999999.safetensors) is skipped with a warning.
std::vector<std::string> list_checkpoints(const std::string& folder);

// The newest checkpoint in `folder`, or "" when there is none.
std::string latest_checkpoint(const std::string& folder);

}  // namespace ilf
