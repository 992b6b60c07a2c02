// Reading and checking text-to-image model folders, and completing run configs with them
// (see include/ilf/pipelines/model_folder.h).
#include "ilf/pipelines/model_folder.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <vector>

#include "ilf/error.h"
#include "ilf/io/atomic_file.h"
#include "ilf/io/config.h"
#include "ilf/models/vae.h"
#include "ilf/util/strings.h"

namespace ilf {

namespace fs = std::filesystem;

const TextToImageFamily& text_to_image_family(const std::string& name) {
  static const std::vector<TextToImageFamily> families = {
      {"pixart_alpha", kSdVaeLatentScale, 120, {"alpha", "alpha_ms"}},  // T5 captions of 120 tokens
      {"pixart_sigma", kSdxlVaeLatentScale, 300, {"sigma"}},            // T5 captions of 300 tokens
  };
  for (const auto& f : families)
    if (f.name == name) return f;
  throw Error("unknown text-to-image family \"" + name + "\" (expected pixart_alpha or pixart_sigma)");
}

const TextToImageFamily& text_to_image_family_of_variant(const std::string& variant) {
  return text_to_image_family(variant == "sigma" ? "pixart_sigma" : "pixart_alpha");
}

namespace {

// An optional file entry of model.json resolved against the folder; a missing file is a problem.
std::string read_file_entry(ConfigReader& reader, const fs::path& folder, const std::string& key, bool required,
                            std::vector<std::string>& problems) {
  if (!reader.has(key)) {
    if (required) problems.push_back("\"" + key + "\" is missing");
    return "";
  }
  const fs::path value = reader.require<std::string>(key);
  const fs::path path = value.is_absolute() ? value : folder / value;
  std::error_code ec;
  if (!fs::exists(path, ec))
    problems.push_back("\"" + key + "\": " + path.string() + " does not exist");
  else if (!fs::is_regular_file(path, ec))  // a folder, a fifo (would block the load), a device
    problems.push_back("\"" + key + "\": " + path.string() + " is not a regular file");
  return path.lexically_normal().string();
}

}  // namespace

ModelFolder read_model_folder(const std::string& folder) {
  ModelFolder m;
  m.path = folder;
  m.manifest = (fs::path(folder) / "model.json").string();
  if (!fs::is_directory(folder))
    throw Error(folder +
                ": the model folder does not exist (or is not a folder); scripts/export_pixart_model_folder.py "
                "makes one from a PixArt checkpoint (docs/text-to-image.md)");
  if (!fs::exists(m.manifest))
    throw Error(m.manifest + ": missing; a model folder needs a model.json (scripts/export_pixart_model_folder.py writes one)");
  ConfigReader reader(load_json_file(m.manifest), m.manifest);
  std::vector<std::string> problems;

  const std::string format = reader.get<std::string>("format", "ilf.text_to_image_model");
  if (format != "ilf.text_to_image_model")
    problems.push_back("\"format\" is \"" + format + "\", expected \"ilf.text_to_image_model\"");
  const TextToImageFamily* family = nullptr;
  if (!reader.has("family")) {
    problems.push_back("\"family\" is missing (pixart_alpha or pixart_sigma)");
  } else {
    m.family = reader.require<std::string>("family");
    try {
      family = &text_to_image_family(m.family);
    } catch (const Error& e) {
      problems.push_back(std::string("\"family\": ") + e.what());
    }
  }
  for (const char* key : {"resolution", "latent_scale", "max_caption_length"})
    if (!reader.has(key)) problems.push_back(std::string("\"") + key + "\" is missing");
  m.resolution = reader.get<int64_t>("resolution", 0);
  m.latent_scale = reader.get<double>("latent_scale", 0.0);
  m.max_caption_length = reader.get<int64_t>("max_caption_length", 0);
  if (reader.has("resolution") && m.resolution <= 0) problems.push_back("\"resolution\" must be > 0");
  if (reader.has("max_caption_length") && m.max_caption_length <= 0) problems.push_back("\"max_caption_length\" must be > 0");
  // A folder with its own VAE says so with "vae_downsampling" (and "image_channels"); then its latent
  // scale is that VAE's. Otherwise the VAE is the family's (SD / SDXL) and so is the scale.
  m.custom_vae = reader.has("vae_downsampling");
  m.vae_downsampling = reader.get<int64_t>("vae_downsampling", kVaeDownsampling);
  m.image_channels = reader.get<int64_t>("image_channels", 3);
  if (m.vae_downsampling < 1 || m.vae_downsampling > 64)
    problems.push_back("\"vae_downsampling\" must be an integer from 1 to 64");
  if (m.image_channels != 1 && m.image_channels != 3) problems.push_back("\"image_channels\" must be 1 or 3");
  if (reader.has("latent_scale") && !(m.latent_scale >= kMinLatentScale && m.latent_scale <= kMaxLatentScale))
    problems.push_back("\"latent_scale\" must be a number from 1e-4 to 1e4 (got " + number_text(m.latent_scale) + ")");
  if (family && !m.custom_vae && reader.has("latent_scale") && std::abs(m.latent_scale - family->latent_scale) > 1e-9)
    problems.push_back("\"latent_scale\" is " + number_text(m.latent_scale) + " but " + family->name + " latents use " +
                       number_text(family->latent_scale) + (family->name == "pixart_alpha" ? " (SD VAE)" : " (SDXL VAE)"));

  if (!reader.has("model") || !reader.json()["model"].is_object()) {
    problems.push_back("\"model\" must be an object with the backbone settings (variant, input_size, depth, num_heads, ...)");
  } else {
    m.model = reader.json()["model"];
    reader.mark_used("model");  // validated when the backbone is built from it
    if (family && m.model.contains("variant")) {
      const Json& variant = m.model["variant"];
      const auto& allowed = family->variants;
      if (!variant.is_string() || std::find(allowed.begin(), allowed.end(), variant.get<std::string>()) == allowed.end())
        problems.push_back("\"model.variant\" is " + variant.dump() + ", which is not a " + family->name + " variant (" + [&] {
          std::string s;
          for (const auto& v : allowed) s += (s.empty() ? "" : " or ") + v;
          return s;
        }() + ")");
    }
    if (m.model.contains("input_size") && m.model["input_size"].is_number_integer() && m.resolution > 0 &&
        m.model["input_size"].get<int64_t>() * m.vae_downsampling != m.resolution)
      problems.push_back("\"resolution\" " + std::to_string(m.resolution) + " is not " + std::to_string(m.vae_downsampling) +
                         " (vae_downsampling) x model.input_size (" + m.model["input_size"].dump() + ")");
  }

  const fs::path dir(folder);
  m.backbone = read_file_entry(reader, dir, "backbone", true, problems);
  m.feedback = read_file_entry(reader, dir, "feedback", false, problems);
  m.text_encoder = read_file_entry(reader, dir, "text_encoder", true, problems);
  m.tokenizer = read_file_entry(reader, dir, "tokenizer", true, problems);
  m.vae_decoder = read_file_entry(reader, dir, "vae_decoder", true, problems);
  m.vae_encoder = read_file_entry(reader, dir, "vae_encoder", false, problems);
  m.tokenizer_check = read_file_entry(reader, dir, "tokenizer_check", false, problems);
  for (const auto& [key, path] : {std::pair<const char*, const std::string*>{"backbone", &m.backbone},
                                  {"feedback", &m.feedback},
                                  {"text_encoder", &m.text_encoder},
                                  {"tokenizer", &m.tokenizer},
                                  {"vae_decoder", &m.vae_decoder},
                                  {"vae_encoder", &m.vae_encoder},
                                  {"tokenizer_check", &m.tokenizer_check}})
    if (!path->empty()) m.files[key] = *path;
  if (reader.has("checksums")) {
    const Json checksums = reader.require<Json>("checksums");
    static const std::regex kCrc(R"(crc32:[0-9a-f]{8})");
    if (!checksums.is_object()) {
      problems.push_back("\"checksums\" must be an object {\"backbone\": \"crc32:<8 hex digits>\", ...}");
    } else {
      for (const auto& [key, value] : checksums.items()) {
        if (!m.files.count(key))
          problems.push_back("\"checksums." + key + "\": not a file entry of this model.json");
        else if (!value.is_string() || !std::regex_match(value.get<std::string>(), kCrc))
          problems.push_back("\"checksums." + key + "\" must be \"crc32:<8 lower-case hex digits>\", got " + value.dump());
        else
          m.checksums[key] = value.get<std::string>();
      }
    }
  }
  m.device = reader.get<std::string>("device", "");
  if (!m.device.empty()) {
    try {
      torch::Device parsed(m.device);
    } catch (const c10::Error&) {
      problems.push_back("\"device\" is \"" + m.device + "\", expected cpu or cuda");
    }
  }

  try {
    reader.check_all_used();
  } catch (const Error& e) {
    problems.push_back(e.what());
  }
  if (!problems.empty()) {
    std::string list;
    for (const auto& p : problems) list += "\n  - " + p;
    throw Error(m.manifest + ": the model folder is incomplete or inconsistent:" + list);
  }
  return m;
}

std::string file_crc32(const std::string& path) {
  require_regular_file(path, "model file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot read the file");
  uLong crc = crc32(0L, Z_NULL, 0);
  std::vector<char> buffer(size_t{1} << 22);
  while (in) {
    in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
    const std::streamsize n = in.gcount();
    if (n > 0) crc = crc32(crc, reinterpret_cast<const Bytef*>(buffer.data()), static_cast<uInt>(n));
  }
  if (in.bad()) throw Error(path + ": read error");
  char text[32];
  std::snprintf(text, sizeof(text), "crc32:%08lx", static_cast<unsigned long>(crc & 0xffffffffUL));
  return text;
}

void verify_model_folder_files(const ModelFolder& folder) {
  static std::mutex mutex;
  static std::set<std::string> verified;
  std::lock_guard<std::mutex> lock(mutex);
  if (verified.count(folder.manifest)) return;
  if (folder.checksums.empty()) {
    spdlog::warn(
        "{}: records no \"checksums\" of its files; they are not verified (the scripts that make model "
        "folders record them)",
        folder.manifest);
  } else {
    for (const auto& [key, expected] : folder.checksums) {
      const std::string& path = folder.files.at(key);
      const std::string actual = file_crc32(path);
      if (actual != expected)
        throw Error(path + ": the file \"" + key + "\" of the model folder does not match the checksum " + folder.manifest +
                    " records (" + expected + ", the file has " + actual + "): it was corrupted or replaced");
    }
  }
  verified.insert(folder.manifest);
}

std::string model_folder_path(const Json& config, const std::string& config_source, const std::string& folder) {
  const std::string source = config_source.empty() ? "the run config" : config_source;
  if (!config.is_object() || !config.contains("model") || !config["model"].is_object() || !config["model"].contains("folder"))
    return folder;
  const Json& named = config["model"]["folder"];
  if (!named.is_string()) throw Error(source + ": \"model.folder\" must be a string (a model folder)");
  return folder.empty() ? resolve_config_path(ConfigReader(config, config_source), named.get<std::string>()) : folder;
}

std::optional<ModelFolder> apply_model_folder(Json& config, const std::string& config_source, const std::string& folder) {
  const std::string source = config_source.empty() ? "the run config" : config_source;
  if (!config.is_object()) throw Error(source + ": the run config must be a JSON object");
  if (config.contains("model") && !config["model"].is_object()) throw Error(source + ": \"model\" must be an object");
  const std::string path = model_folder_path(config, config_source, folder);
  if (config.contains("model")) config["model"].erase("folder");
  if (path.empty()) return std::nullopt;
  ModelFolder m = read_model_folder(path);

  // A file: the config's own entry wins. A setting: the config's must agree with the folder's.
  auto set_file = [&](const std::string& section, const std::string& key, const std::string& value) {
    if (value.empty()) return;
    Json& s = section.empty() ? config : config[section];
    if (s.is_null()) s = Json::object();
    if (!s.is_object()) throw Error(source + ": \"" + section + "\" must be an object");
    const std::string name = section.empty() ? key : section + "." + key;
    if (s.contains(key) && !s[key].is_null()) {
      spdlog::info("{}: {} = {} (instead of the model folder's {})", source, name, s[key].dump(), value);
      return;
    }
    s[key] = value;
  };
  auto set_value = [&](const std::string& section, const std::string& key, const Json& value, const std::string& field) {
    Json& s = config[section];
    if (s.is_null()) s = Json::object();
    if (!s.is_object()) throw Error(source + ": \"" + section + "\" must be an object");
    if (s.contains(key) && s[key] != value)
      throw Error(source + ": \"" + section + "." + key + "\" is " + s[key].dump() + " but the model folder's " + m.manifest +
                  " says " + field + " = " + value.dump());
    s[key] = value;
  };

  set_file("", "weights", m.backbone);
  set_file("ilf", "feedback_weights", m.feedback);
  for (const auto& [key, value] : m.model.items()) set_value("model", key, value, "model." + key);
  set_value("model", "model_max_length", m.max_caption_length, "max_caption_length");
  set_file("text", "encoder", m.text_encoder);
  set_file("text", "tokenizer", m.tokenizer);
  set_value("text", "max_length", m.max_caption_length, "max_caption_length");
  if (!m.device.empty()) set_value("text", "encoder_device", m.device, "device");
  set_file("vae", "decoder", m.vae_decoder);
  set_file("vae", "encoder", m.vae_encoder);
  set_value("vae", "scale_factor", m.latent_scale, "latent_scale");
  if (m.custom_vae) set_value("vae", "downsampling", m.vae_downsampling, "vae_downsampling");
  return m;
}

}  // namespace ilf
