// Training checkpoints in one atomically written safetensors file (see include/ilf/training/checkpoint.h).
// Layout: tensors "trainable/<name>", "ema/<name>", "adam/<name>/exp_avg", "adam/<name>/exp_avg_sq",
// "rng/cpu"; metadata "format" = "ilf.training_checkpoint", "step", "epoch", "step_in_epoch",
// "mode", "config" (JSON text) and "adam_steps" (JSON object name -> step).
#include "ilf/training/checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>

#include "ilf/error.h"

namespace ilf {
namespace fs = std::filesystem;
namespace {

const std::regex kCheckpointName(R"(checkpoint-(\d+)\.safetensors)");

std::string checkpoint_name(int64_t step) {
  char name[64];
  std::snprintf(name, sizeof(name), "checkpoint-%08lld.safetensors", static_cast<long long>(step));
  return name;
}

}  // namespace

std::vector<std::string> list_checkpoints(const std::string& folder) {
  std::vector<std::pair<int64_t, std::string>> found;
  if (!fs::is_directory(folder)) return {};
  for (const auto& entry : fs::directory_iterator(folder)) {
    std::smatch match;
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && std::regex_match(name, match, kCheckpointName))
      found.emplace_back(std::stoll(match[1].str()), entry.path().string());
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> paths;
  for (auto& f : found) paths.push_back(f.second);
  return paths;
}

std::string latest_checkpoint(const std::string& folder) {
  const auto all = list_checkpoints(folder);
  return all.empty() ? std::string() : all.back();
}

std::string save_checkpoint(const std::string& folder, const TrainingCheckpoint& checkpoint, int64_t keep) {
  if (keep < 1) throw Error("save_checkpoint: keep must be >= 1");
  fs::create_directories(folder);
  TensorMap tensors;
  nlohmann::json adam_steps = nlohmann::json::object();
  for (const auto& [name, value] : checkpoint.trainable) tensors["trainable/" + name] = value;
  for (const auto& [name, value] : checkpoint.ema) tensors["ema/" + name] = value;
  for (const auto& [name, state] : checkpoint.optimizer) {
    tensors["adam/" + name + "/exp_avg"] = state.exp_avg;
    tensors["adam/" + name + "/exp_avg_sq"] = state.exp_avg_sq;
    adam_steps[name] = state.step;
  }
  if (checkpoint.cpu_rng_state.defined()) tensors["rng/cpu"] = checkpoint.cpu_rng_state;
  const Metadata metadata{{"format", "ilf.training_checkpoint"},
                          {"step", std::to_string(checkpoint.step)},
                          {"epoch", std::to_string(checkpoint.epoch)},
                          {"step_in_epoch", std::to_string(checkpoint.step_in_epoch)},
                          {"mode", checkpoint.mode},
                          {"config", checkpoint.config_json},
                          {"adam_steps", adam_steps.dump()}};
  const std::string path = (fs::path(folder) / checkpoint_name(checkpoint.step)).string();
  write_safetensors(path, tensors, metadata);  // atomic: temporary file, flush, fsync, rename

  // Only now that the new file is in place: drop the oldest beyond `keep`, and temporary files a
  // killed writer may have left behind.
  auto all = list_checkpoints(folder);
  for (size_t i = 0; i + static_cast<size_t>(keep) < all.size(); ++i) fs::remove(all[i]);
  for (const auto& entry : fs::directory_iterator(folder)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("checkpoint-", 0) == 0 && name.find(".safetensors.tmp.") != std::string::npos) fs::remove(entry.path());
  }
  return path;
}

TrainingCheckpoint load_checkpoint(const std::string& path) {
  const SafetensorsFile file = read_safetensors(path);
  auto meta = [&](const std::string& key) -> const std::string& {
    auto it = file.metadata.find(key);
    if (it == file.metadata.end()) throw Error(path + ": not a training checkpoint (metadata \"" + key + "\" missing)");
    return it->second;
  };
  if (meta("format") != "ilf.training_checkpoint")
    throw Error(path + ": not a training checkpoint (format \"" + meta("format") + "\")");
  TrainingCheckpoint out;
  try {
    out.step = std::stoll(meta("step"));
    out.epoch = std::stoll(meta("epoch"));
    out.step_in_epoch = std::stoll(meta("step_in_epoch"));
  } catch (const std::logic_error&) {
    throw Error(path + ": corrupt step/epoch metadata");
  }
  out.mode = meta("mode");
  out.config_json = meta("config");
  nlohmann::json adam_steps;
  try {
    adam_steps = nlohmann::json::parse(meta("adam_steps"));
  } catch (const std::exception&) {
    throw Error(path + ": corrupt adam_steps metadata");
  }
  auto strip = [](const std::string& name, const std::string& prefix) { return name.substr(prefix.size()); };
  for (const auto& [name, value] : file.tensors) {
    if (name.rfind("trainable/", 0) == 0) {
      out.trainable[strip(name, "trainable/")] = value;
    } else if (name.rfind("ema/", 0) == 0) {
      out.ema[strip(name, "ema/")] = value;
    } else if (name == "rng/cpu") {
      out.cpu_rng_state = value;
    } else if (name.rfind("adam/", 0) != 0) {
      throw Error(path + ": unexpected tensor \"" + name + "\" in a training checkpoint");
    }
  }
  for (auto it = adam_steps.begin(); it != adam_steps.end(); ++it) {
    AdamState state;
    state.step = it.value().get<int64_t>();
    state.exp_avg = require_tensor(file.tensors, "adam/" + it.key() + "/exp_avg", path);
    state.exp_avg_sq = require_tensor(file.tensors, "adam/" + it.key() + "/exp_avg_sq", path);
    out.optimizer[it.key()] = state;
  }
  return out;
}

}  // namespace ilf
