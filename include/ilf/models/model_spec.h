// What a run config says about the backbone's architecture (its "model" section), as typed values
// that may be absent: a backbone is built from the weights' own shapes completed by these settings
// (weights.h), or from these settings alone (pretraining from scratch). The config layer fills this
// struct; the models layer never reads JSON. Messages name the config file and the key, as
// `run.json: "model.num_heads" must be ...`.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "ilf/error.h"

namespace ilf {

struct ModelSpec {
  std::string source = "config";  // where the settings came from (a file name), for messages
  std::string prefix = "model";   // their JSON path

  std::optional<std::string> family;   // "dit" or "pixart"
  std::optional<std::string> variant;  // PixArt: "alpha", "alpha_ms" or "sigma"
  std::optional<int64_t> input_size, patch_size, in_channels, hidden_size, depth, num_heads;
  std::optional<double> mlp_ratio;
  std::optional<int64_t> num_classes;                         // DiT
  std::optional<bool> learn_sigma;                            // DiT
  std::optional<bool> pred_sigma;                             // PixArt
  std::optional<int64_t> caption_channels, model_max_length;  // PixArt
  std::optional<double> lewei_scale, pe_interpolation;        // PixArt pos-embed scales
  std::optional<bool> qk_norm, kv_compress;                   // PixArt-Sigma options

  // `source: "model.<field>" must be <expectation>` (the format of every config error).
  Error invalid(const std::string& field, const std::string& expectation) const {
    return Error(source + ": \"" + key(field) + "\" must be " + expectation);
  }
  std::string key(const std::string& field) const { return prefix + "." + field; }
  // "run.json: model", the prefix of DiTConfig / PixArtConfig::validate messages.
  std::string where() const { return source + ": " + prefix; }
};

}  // namespace ilf
