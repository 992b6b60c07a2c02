// Training checkpoints in one atomically written safetensors file (see include/ilf/training/checkpoint.h).
// Layout: tensors "trainable/<name>", "ema/<name>", "adam/<name>/exp_avg", "adam/<name>/exp_avg_sq",
// "rng/cpu"; metadata "format" = "ilf.training_checkpoint", "step", "epoch", "step_in_epoch",
// "mode", "config" (JSON text), "adam_steps" (JSON object name -> step) and "checksum"
// ("crc32:<8 hex digits>" over every other metadata entry and every tensor's name, dtype, shape and
// bytes, in name order), verified on load so that a flipped bit is refused instead of resumed.
#include "ilf/training/checkpoint.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <spdlog/spdlog.h>
#include <system_error>

#include <zlib.h>

#include <ATen/CPUGeneratorImpl.h>

#include "ilf/error.h"
#include "ilf/io/json.h"

namespace ilf {
namespace fs = std::filesystem;
namespace {

const std::regex kCheckpointName(R"(checkpoint-(\d+)\.safetensors)");

std::string checkpoint_name(int64_t step) {
  char name[64];
  std::snprintf(name, sizeof(name), "checkpoint-%08lld.safetensors", static_cast<long long>(step));
  return name;
}

constexpr const char* kChecksumKey = "checksum";

uLong crc_bytes(uLong crc, const void* data, size_t size) {
  const auto* p = static_cast<const Bytef*>(data);
  while (size > 0) {
    const auto n = static_cast<uInt>(std::min<size_t>(size, 1u << 30));
    crc = crc32(crc, p, n);
    p += n;
    size -= n;
  }
  return crc;
}

uLong crc_text(uLong crc, const std::string& text) { return crc_bytes(crc, text.c_str(), text.size() + 1); }  // with the NUL

// The checksum of a checkpoint's content: metadata (except the checksum itself) and tensors, in name order.
std::string content_checksum(const Metadata& metadata, const TensorMap& tensors) {
  uLong crc = crc32(0L, Z_NULL, 0);
  for (const auto& [key, value] : metadata) {
    if (key == kChecksumKey) continue;
    crc = crc_text(crc_text(crc, key), value);
  }
  for (const auto& [name, tensor] : tensors) {
    const torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
    crc = crc_text(crc, name);
    crc = crc_text(crc, c10::toString(t.scalar_type()));
    for (const int64_t d : t.sizes()) crc = crc_text(crc, std::to_string(d));
    crc = crc_bytes(crc, t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size());
  }
  char text[32];
  std::snprintf(text, sizeof(text), "crc32:%08lx", static_cast<unsigned long>(crc & 0xffffffffUL));
  return text;
}

// A non-negative decimal integer filling all of `text`, or an ilf::Error naming the file and the field.
int64_t metadata_count(const std::string& path, const std::string& key, const std::string& text) {
  int64_t value = -1;
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value, 10);
  if (ec != std::errc() || ptr != text.data() + text.size() || text.empty() || value < 0)
    throw Error(path + ": corrupt checkpoint metadata \"" + key + "\": expected an integer >= 0, got \"" + text + "\"");
  return value;
}

}  // namespace

std::vector<std::string> list_checkpoints(const std::string& folder) {
  std::vector<std::pair<int64_t, std::string>> found;
  if (!fs::is_directory(folder)) return {};
  for (const auto& entry : fs::directory_iterator(folder)) {
    std::smatch match;
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || !std::regex_match(name, match, kCheckpointName)) continue;
    const std::string digits = match[1].str();
    int64_t step = -1;
    const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), step, 10);
    if (ec != std::errc() || ptr != digits.data() + digits.size()) {
      // Not a step this code writes (e.g. 20 digits): skipped, so that it cannot block every resume.
      spdlog::warn("{}: skipped: the step in the name is not an integer of 64 bits", entry.path().string());
      continue;
    }
    found.emplace_back(step, entry.path().string());
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
  Metadata metadata{{"format", "ilf.training_checkpoint"},
                    {"step", std::to_string(checkpoint.step)},
                    {"epoch", std::to_string(checkpoint.epoch)},
                    {"step_in_epoch", std::to_string(checkpoint.step_in_epoch)},
                    {"mode", checkpoint.mode},
                    {"config", checkpoint.config_json},
                    {"adam_steps", adam_steps.dump()}};
  metadata[kChecksumKey] = content_checksum(metadata, tensors);
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

TrainingCheckpoint load_checkpoint(const std::string& path, bool allow_unchecked) {
  const SafetensorsFile file = read_safetensors(path);
  auto meta = [&](const std::string& key) -> const std::string& {
    auto it = file.metadata.find(key);
    if (it == file.metadata.end()) throw Error(path + ": not a training checkpoint (metadata \"" + key + "\" missing)");
    return it->second;
  };
  if (meta("format") != "ilf.training_checkpoint")
    throw Error(path + ": not a training checkpoint (format \"" + meta("format") + "\")");
  // Integrity first: a checkpoint whose bytes changed after it was written is refused, not resumed.
  if (auto it = file.metadata.find(kChecksumKey); it != file.metadata.end()) {
    const std::string actual = content_checksum(file.metadata, file.tensors);
    if (actual != it->second)
      throw Error(path + ": checksum mismatch (stored " + it->second + ", content " + actual +
                  "): the file was corrupted after it was written");
  } else if (!allow_unchecked) {
    throw UncheckedCheckpointError(path +
                                   ": the checkpoint carries no \"checksum\" (written before ILF checked them, or the "
                                   "key was removed): its integrity cannot be verified; resume from it anyway with "
                                   "--allow-unchecked-checkpoint");
  } else {
    spdlog::warn("{}: the checkpoint carries no checksum; loading it unverified (--allow-unchecked-checkpoint)", path);
  }
  TrainingCheckpoint out;
  out.step = metadata_count(path, "step", meta("step"));
  out.epoch = metadata_count(path, "epoch", meta("epoch"));
  out.step_in_epoch = metadata_count(path, "step_in_epoch", meta("step_in_epoch"));
  out.mode = meta("mode");
  out.config_json = meta("config");
  nlohmann::json adam_steps;
  try {
    adam_steps = parse_json_strict(meta("adam_steps"), path + ": metadata \"adam_steps\"");
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": corrupt checkpoint metadata \"adam_steps\" (" + e.what() + ")");
  }
  if (!adam_steps.is_object()) throw Error(path + ": corrupt checkpoint metadata \"adam_steps\": expected a JSON object");
  auto strip = [](const std::string& name, const std::string& prefix) { return name.substr(prefix.size()); };
  for (const auto& [name, value] : file.tensors) {
    if (name.rfind("trainable/", 0) == 0) {
      out.trainable[strip(name, "trainable/")] = value;
    } else if (name.rfind("ema/", 0) == 0) {
      out.ema[strip(name, "ema/")] = value;
    } else if (name == "rng/cpu") {
      out.cpu_rng_state = value;
      // A state the generator refuses ("Invalid mt19937 state") is a corrupt checkpoint, found here
      // (naming the file, so that a resume falls back) rather than after the weights were restored.
      try {
        auto probe = at::detail::createCPUGenerator();
        probe.set_state(value);
      } catch (const c10::Error& e) {
        throw Error(path + ": corrupt checkpoint tensor \"rng/cpu\": not a valid CPU generator state (" +
                    e.what_without_backtrace() + ")");
      }
    } else if (name.rfind("adam/", 0) != 0) {
      throw Error(path + ": unexpected tensor \"" + name + "\" in a training checkpoint");
    }
  }
  for (auto it = adam_steps.begin(); it != adam_steps.end(); ++it) {
    AdamState state;
    if (!it.value().is_number_unsigned() || it.value().get<uint64_t>() > static_cast<uint64_t>(out.step))
      throw Error(path + ": corrupt checkpoint metadata \"adam_steps\": \"" + it.key() + "\" must be an integer in [0, " +
                  std::to_string(out.step) + "] (the checkpoint's step), got " + it.value().dump());
    state.step = it.value().get<int64_t>();
    state.exp_avg = require_tensor(file.tensors, "adam/" + it.key() + "/exp_avg", path);
    state.exp_avg_sq = require_tensor(file.tensors, "adam/" + it.key() + "/exp_avg_sq", path);
    out.optimizer[it.key()] = state;
  }
  return out;
}

}  // namespace ilf
