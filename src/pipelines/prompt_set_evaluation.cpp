// Prompt-set evaluation of one sampling setting (see include/ilf/pipelines/prompt_set_evaluation.h):
// the run of one rank (settings check, resume, generation, per-image metrics, records) and the merge
// of every rank's records into the JSON and the Table 1 row. Ranks never talk to each other: all they
// share is the output folder.
// Over 650 lines: its two seams, the run and the merge, share the records format and its readers
// (settings, torn-line handling, image names), which would otherwise become a third, internal header;
// split there (run / merge / records) when either side grows.
#include "ilf/pipelines/prompt_set_evaluation.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "ilf/error.h"
#include "ilf/eval/clean_fid.h"
#include "ilf/eval/clip.h"
#include "ilf/eval/image_reward.h"
#include "ilf/eval/images.h"
#include "ilf/eval/lpips.h"
#include "ilf/eval/metrics.h"
#include "ilf/io/atomic_file.h"
#include "ilf/io/image.h"
#include "ilf/io/json.h"
#include "ilf/pipelines/sample_files.h"
#include "ilf/pipelines/text_to_image.h"
#include "ilf/util/checks.h"
#include "ilf/util/progress.h"
#include "ilf/util/device.h"

namespace ilf {
namespace fs = std::filesystem;

namespace {

constexpr const char* kPseFormat = "ilf.prompt_set_evaluation";

// The per-image metric keys of the records, in the order means and tables list them.
const std::vector<std::string>& pse_metric_keys() {
  static const std::vector<std::string> keys = {"image_reward",
                                                "clip_score",
                                                "clip_iqa_quality",
                                                "clip_iqa_noisiness",
                                                "clip_iqa_colorfulness",
                                                "clip_iqa_naturalness",
                                                "lpips",
                                                "ssim",
                                                "psnr"};
  return keys;
}

std::optional<std::string> pse_getenv(const std::string& name) {
  const char* v = std::getenv(name.c_str());
  if (!v) return std::nullopt;
  return std::string(v);
}

int64_t pse_parse_count(const std::string& name, const std::string& text) {
  try {
    size_t used = 0;
    const long long v = std::stoll(text, &used, 10);
    if (used != text.size()) throw std::invalid_argument("trailing characters");
    return v;
  } catch (const std::exception&) {
    throw Error("environment variable " + name + " must be an integer, got \"" + text + "\"");
  }
}

std::string pse_image_name(int64_t index, uint64_t seed) {
  char name[64];
  std::snprintf(name, sizeof(name), "%06lld_s%llu.png", static_cast<long long>(index), static_cast<unsigned long long>(seed));
  return name;
}

std::string pse_records_name(int64_t rank, int64_t world_size) {
  char name[64];
  std::snprintf(name, sizeof(name), "rank-%05lld-of-%05lld.jsonl", static_cast<long long>(rank),
                static_cast<long long>(world_size));
  return name;
}

// FNV-1a 64 of the items: a digest of the prompt set that is the same on every machine.
std::string pse_digest(const std::vector<PromptItem>& items) {
  uint64_t h = 1469598103934665603ull;
  auto add = [&h](const std::string& s) {
    for (const unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    h = (h ^ 0xffu) * 1099511628211ull;  // field separator
  };
  for (const PromptItem& item : items) {
    add(item.id);
    add(item.prompt);
    add(item.category);
  }
  char text[32];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(h));
  return text;
}

Json pse_read_json_file(const std::string& path) {
  require_regular_file(path, "evaluation file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot read");
  std::ostringstream text;
  text << in.rdbuf();
  try {
    return parse_json_strict(text.str(), path);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": not valid JSON (" + e.what() + ")");
  }
}

void pse_write_json_file(const std::string& path, const Json& json) {
  write_file_atomically(path, [&](std::ostream& out) { out << json.dump(2) << "\n"; });
}

// Dotted paths where `a` and `b` differ ("sampling.steps: 20 here, 12 stored").
void pse_differences(const Json& stored, const Json& now, const std::string& path, std::vector<std::string>& out) {
  if (stored.is_object() && now.is_object()) {
    std::set<std::string> keys;
    for (const auto& item : stored.items()) keys.insert(item.key());
    for (const auto& item : now.items()) keys.insert(item.key());
    for (const auto& key : keys) {
      const std::string sub = path.empty() ? key : path + "." + key;
      const bool in_stored = stored.contains(key), in_now = now.contains(key);
      if (in_stored && in_now)
        pse_differences(stored[key], now[key], sub, out);
      else
        out.push_back(sub + (in_now ? " (not in the stored settings)" : " (only in the stored settings)"));
    }
    return;
  }
  if (stored != now) {
    auto shorten = [](std::string s) { return s.size() > 60 ? s.substr(0, 57) + "..." : s; };
    out.push_back(path + ": " + shorten(now.dump()) + " now, " + shorten(stored.dump()) + " stored");
  }
}

// One records file: its complete lines parsed. `torn_offset`: where the valid prefix ends when the
// last line is torn (no newline, or not JSON); otherwise the file size.
struct PseRecordsFile {
  std::vector<Json> records;
  std::vector<int64_t> line_offsets;  // byte offset where each record's line starts
  int64_t valid_bytes = 0;
};

PseRecordsFile pse_read_records(const std::string& path) {
  PseRecordsFile file;
  std::error_code exists_error;
  if (!std::filesystem::exists(path, exists_error)) return file;  // a rank that has not started yet
  require_regular_file(path, "records file");
  std::ifstream in(path, std::ios::binary);
  if (!in) return file;
  std::ostringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  size_t pos = 0;
  int64_t line_number = 0;
  while (pos < text.size()) {
    ++line_number;
    const size_t newline = text.find('\n', pos);
    const bool last = newline == std::string::npos;
    const std::string line = text.substr(pos, last ? std::string::npos : newline - pos);
    Json record;
    bool ok = false;
    try {
      record = parse_json_strict(line, path);
      ok = record.is_object() && record.contains("index") && record["index"].is_number_integer();
    } catch (const std::exception&) {
      ok = false;
    }
    if (!ok || last) {
      // A torn write leaves a last line without its newline; anything else is corruption.
      if (last) break;
      throw Error(path + ": line " + std::to_string(line_number) + " is not a record (a JSON object with \"index\")");
    }
    file.records.push_back(std::move(record));
    file.line_offsets.push_back(static_cast<int64_t>(pos));
    pos = newline + 1;
    file.valid_bytes = static_cast<int64_t>(pos);
  }
  return file;
}

std::vector<std::string> pse_records_files(const std::string& out_dir) {
  std::vector<std::string> files;
  const fs::path folder = fs::path(out_dir) / "records";
  if (!fs::is_directory(folder)) return files;
  for (const auto& entry : fs::directory_iterator(folder))
    if (entry.is_regular_file() && entry.path().extension() == ".jsonl") files.push_back(entry.path().string());
  std::sort(files.begin(), files.end());
  return files;
}

void pse_append_records(const std::string& path, const std::string& lines) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(path + ": cannot open the records file for appending (" + std::strerror(errno) + ")");
  size_t written = 0;
  while (written < lines.size()) {
    const ssize_t n = ::write(fd, lines.data() + written, lines.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      const std::string reason = std::strerror(errno);
      ::close(fd);
      throw Error(path + ": cannot write the records (" + reason + ")");
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const std::string reason = std::strerror(errno);
    ::close(fd);
    throw Error(path + ": cannot fsync the records (" + reason + ")");
  }
  ::close(fd);
}

// A PNG as a metric image: uint8 (3, H, W) (grey repeated, alpha dropped).
torch::Tensor pse_png_as_metric_image(const std::string& path) {
  const torch::Tensor hwc = read_png(path);
  torch::Tensor rgb = hwc.size(2) >= 3 ? hwc.slice(2, 0, 3) : hwc.slice(2, 0, 1).expand({-1, -1, 3});
  return rgb.permute({2, 0, 1}).contiguous();
}

std::string pse_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  char text[32];
  if (s >= 3600)
    std::snprintf(text, sizeof(text), "%lldh%02lldm", static_cast<long long>(s / 3600), static_cast<long long>(s / 60 % 60));
  else if (s >= 60)
    std::snprintf(text, sizeof(text), "%lldm%02llds", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  else
    std::snprintf(text, sizeof(text), "%llds", static_cast<long long>(s));
  return text;
}

// The metric models a run loads (null when not configured).
struct PseMetricModels {
  ClipModelPtr clip;
  ImageRewardModelPtr image_reward;
  LpipsModelPtr lpips;
  bool fidelity = false;  // LPIPS (when configured), SSIM and PSNR against the reference
};

Json pse_metric_files(const MetricsSection& m) {
  Json files = Json::object();
  const std::pair<const char*, const std::string*> all[] = {{"clip", &m.clip},
                                                            {"image_reward", &m.image_reward},
                                                            {"image_reward_vocab", &m.image_reward_vocab},
                                                            {"image_reward_med_config", &m.image_reward_med_config},
                                                            {"inception", &m.inception},
                                                            {"fid_statistics", &m.fid_statistics},
                                                            {"lpips", &m.lpips}};
  for (const auto& [key, value] : all)
    if (!value->empty()) files[key] = *value;
  return files;
}

void pse_require_file(const std::string& path, const std::string& key, bool folder = false) {
  if (folder ? !fs::is_directory(path) : !fs::is_regular_file(path))
    throw Error(path + ": " + (folder ? "no such folder" : "no such file") + " (\"" + key + "\" in the run config's metrics)");
}

// Whether two folder paths name the same folder (either may not exist yet).
bool pse_same_folder(const fs::path& a, const fs::path& b) {
  auto key = [](const fs::path& p) {
    fs::path k = fs::weakly_canonical(fs::absolute(p)).lexically_normal();
    return k.filename().empty() ? k.parent_path() : k;
  };
  return key(a) == key(b);
}

}  // namespace

EvalShard eval_shard(std::optional<int64_t> rank_flag, std::optional<int64_t> world_size_flag,
                     const EvalEnvironment& lookup_arg) {
  const EvalEnvironment lookup = lookup_arg ? lookup_arg : EvalEnvironment(pse_getenv);
  EvalShard shard;
  auto var = [&](const std::string& name) { return pse_parse_count(name, *lookup(name)); };
  std::string what;
  if (rank_flag || world_size_flag) {
    if (!rank_flag || !world_size_flag) throw Error("--rank and --world-size go together");
    shard = {*rank_flag, *world_size_flag, "flags"};
    what = "--rank / --world-size";
  } else if (lookup("RANK") || lookup("WORLD_SIZE")) {
    if (!lookup("RANK") || !lookup("WORLD_SIZE")) throw Error("torchrun launch: RANK and WORLD_SIZE must both be set");
    shard = {var("RANK"), var("WORLD_SIZE"), "torchrun"};
    what = "RANK / WORLD_SIZE";
  } else if (lookup("SLURM_ARRAY_TASK_ID") && lookup("SLURM_ARRAY_TASK_COUNT")) {
    const int64_t min = lookup("SLURM_ARRAY_TASK_MIN") ? var("SLURM_ARRAY_TASK_MIN") : 0;
    const int64_t tasks = lookup("SLURM_NTASKS") ? var("SLURM_NTASKS") : 1;
    const int64_t task = lookup("SLURM_PROCID") ? var("SLURM_PROCID") : 0;
    if (tasks < 1 || task < 0 || task >= tasks)
      throw Error("SLURM_PROCID " + std::to_string(task) + " outside [0, SLURM_NTASKS = " + std::to_string(tasks) + ")");
    shard = {(var("SLURM_ARRAY_TASK_ID") - min) * tasks + task, var("SLURM_ARRAY_TASK_COUNT") * tasks, "slurm_array"};
    what = "SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN / SLURM_ARRAY_TASK_COUNT (an array with steps 1 from its minimum)";
  } else if (lookup("SLURM_PROCID") && lookup("SLURM_NTASKS")) {
    shard = {var("SLURM_PROCID"), var("SLURM_NTASKS"), "slurm"};
    what = "SLURM_PROCID / SLURM_NTASKS";
  } else {
    return shard;
  }
  if (lookup("LOCAL_RANK"))
    shard.local_rank = var("LOCAL_RANK");
  else if (lookup("SLURM_LOCALID"))
    shard.local_rank = var("SLURM_LOCALID");
  if (shard.world_size < 1) throw Error(what + ": the world size must be >= 1, got " + std::to_string(shard.world_size));
  if (shard.rank < 0 || shard.rank >= shard.world_size)
    throw Error(what + ": rank " + std::to_string(shard.rank) + " outside [0, " + std::to_string(shard.world_size) + ")");
  return shard;
}

PromptSetEvalSummary run_prompt_set_evaluation(const LoadedRunConfig& loaded, const PromptSetEvalRequest& request,
                                               const EvalShard& shard) {
  const RunConfig& config = loaded.config;
  if (request.out_dir.empty()) throw Error("--out-dir is required");
  if (request.batch < 1) throw Error("--batch must be >= 1");
  if (request.limit < 0) throw Error("--limit must be >= 0");
  if (shard.world_size < 1 || shard.rank < 0 || shard.rank >= shard.world_size)
    throw Error("rank " + std::to_string(shard.rank) + " outside [0, " + std::to_string(shard.world_size) + ")");

  // Inputs first, all checked before anything is written: the prompt set, the metric files, the reference.
  PromptSet set = read_prompt_set(request.prompt_set, request.format);
  if (request.limit > 0 && static_cast<int64_t>(set.items.size()) > request.limit)
    set.items.resize(static_cast<size_t>(request.limit));
  const auto total = static_cast<int64_t>(set.items.size());
  const MetricsSection& metrics = config.metrics;
  if (!metrics.clip.empty()) pse_require_file(metrics.clip, "metrics.clip", true);
  for (const auto& [key, path] : {std::pair<std::string, std::string>{"metrics.image_reward", metrics.image_reward},
                                  {"metrics.image_reward_vocab", metrics.image_reward_vocab},
                                  {"metrics.image_reward_med_config", metrics.image_reward_med_config},
                                  {"metrics.inception", metrics.inception},
                                  {"metrics.fid_statistics", metrics.fid_statistics},
                                  {"metrics.lpips", metrics.lpips}})
    if (!path.empty()) pse_require_file(path, key);
  if (!metrics.fid_statistics.empty()) (void)read_fid_statistics(metrics.fid_statistics);  // wrong shapes fail now

  const fs::path out(request.out_dir);
  fs::path normal = fs::absolute(out).lexically_normal();
  if (normal.filename().empty()) normal = normal.parent_path();  // "runs/x/" -> "runs/x"
  const std::string label = !request.label.empty() ? request.label : normal.filename().string();
  Json reference = nullptr;
  bool fidelity = false;
  if (!request.reference_dir.empty()) {
    const bool self = pse_same_folder(out, request.reference_dir);
    if (self) {  // the reference setting itself (a sweep's first point): no fidelity metrics, same table header
      reference = {{"dir", request.reference_dir}, {"label", label}, {"self", true}};
    } else {
      const std::string ref_settings = (fs::path(request.reference_dir) / "settings.json").string();
      if (!fs::exists(ref_settings))
        throw Error("--reference-dir " + request.reference_dir + ": no settings.json (not an ilf_eval_prompts output folder)");
      const Json ref = pse_read_json_file(ref_settings);
      if (!ref.contains("prompt_set") || !ref.contains("seed") || ref["seed"] != Json(request.seed) ||
          ref["prompt_set"].value("digest", "") != pse_digest(set.items) ||
          ref["prompt_set"].value("items", int64_t{-1}) != total)
        throw Error(ref_settings +
                    ": the reference run has another prompt set, --limit or --seed than this one (its same-index images would "
                    "not be same-seed images of the same prompts)");
      reference = {{"dir", request.reference_dir}, {"label", ref.value("label", std::string())}};
      fidelity = true;
    }
  }

  // The model and the metric models (bad files fail here, before any output).
  // One GPU per process: "cuda" means the process's own device on a node with several.
  torch::Device device = resolve_device(request.device);
  if (device.is_cuda() && request.device.find(':') == std::string::npos)
    device = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(shard.local_rank));
  TextToImageModel model = load_text_to_image_model(config, device, loaded.folder ? &*loaded.folder : nullptr);
  PseMetricModels models;
  if (!metrics.clip.empty()) models.clip = load_clip_model(metrics.clip, device);
  if (!metrics.image_reward.empty())
    models.image_reward =
        load_image_reward({metrics.image_reward, metrics.image_reward_vocab, metrics.image_reward_med_config}, device);
  if (fidelity && !metrics.lpips.empty()) models.lpips = load_lpips(metrics.lpips, device);
  models.fidelity = fidelity;

  // settings.json: written by the first rank, compared by every later one.
  Json settings = {
      {"format", kPseFormat},
      {"version", 1},
      {"label", label},
      {"config", config.json},
      {"generation", text_to_image_png_settings(loaded, model, std::nullopt, "")},
      {"prompt_set",
       {{"file", request.prompt_set}, {"format", to_string(set.format)}, {"items", total}, {"digest", pse_digest(set.items)}}},
      {"seed", request.seed},
      {"batch", request.batch},
      {"limit", request.limit},
      {"device", device.is_cuda() ? "cuda" : device.str()},
      {"reference", reference},
      {"metrics", pse_metric_files(metrics)}};
  fs::create_directories(out / "images");
  fs::create_directories(out / "records");
  const std::string settings_path = (out / "settings.json").string();
  if (!fs::exists(settings_path)) pse_write_json_file(settings_path, settings);
  {
    Json stored = pse_read_json_file(settings_path);
    Json stored_cmp = stored, now_cmp = settings;
    if (stored_cmp.contains("prompt_set") && stored_cmp["prompt_set"].is_object()) stored_cmp["prompt_set"].erase("file");
    now_cmp["prompt_set"].erase("file");
    std::vector<std::string> diffs;
    pse_differences(stored_cmp, now_cmp, "", diffs);
    if (!diffs.empty()) {
      std::string list;
      for (size_t i = 0; i < diffs.size() && i < 6; ++i) list += (i ? "; " : "") + diffs[i];
      if (diffs.size() > 6) list += "; ... (" + std::to_string(diffs.size()) + " in all)";
      throw Error(settings_path + ": this folder holds a run with other settings (" + list +
                  "); use another --out-dir or the same settings");
    }
  }
  if (shard.world_size == 1) remove_stale_temporary_files((out / "images").string());  // others may be live elsewhere

  // Resume: the items with records in any rank's file; this rank's file cut after its last whole batch.
  const std::string records_path = (out / "records" / pse_records_name(shard.rank, shard.world_size)).string();
  {
    const PseRecordsFile own = pse_read_records(records_path);
    int64_t keep = own.valid_bytes;
    if (!own.records.empty()) {  // the last batch in the file must be whole
      const int64_t last_batch = own.records.back()["index"].get<int64_t>() / request.batch;
      const int64_t batch_size = std::min(request.batch, total - last_batch * request.batch);
      int64_t count = 0;
      size_t first = own.records.size();
      for (size_t i = own.records.size(); i-- > 0;) {
        if (own.records[i]["index"].get<int64_t>() / request.batch != last_batch) break;
        ++count;
        first = i;
      }
      if (count < batch_size) keep = own.line_offsets[first];
    }
    if (fs::exists(records_path) && static_cast<int64_t>(fs::file_size(records_path)) != keep) {
      if (::truncate(records_path.c_str(), static_cast<off_t>(keep)) != 0)
        throw Error(records_path + ": cannot cut off the unfinished last batch (" + std::strerror(errno) + ")");
    }
  }
  std::vector<char> done(static_cast<size_t>(total), 0);
  for (const std::string& file : pse_records_files(request.out_dir))
    for (const Json& record : pse_read_records(file).records) {
      const int64_t index = record["index"].get<int64_t>();
      if (index >= 0 && index < total) done[static_cast<size_t>(index)] = 1;
    }

  const int64_t batches = (total + request.batch - 1) / request.batch;
  std::vector<int64_t> todo;
  PromptSetEvalSummary summary;
  summary.items = total;
  summary.records = records_path;
  for (int64_t k = shard.rank; k < batches; k += shard.world_size) {
    const int64_t begin = k * request.batch, end = std::min(total, begin + request.batch);
    summary.shard_items += end - begin;
    bool whole = true;
    for (int64_t i = begin; i < end; ++i) whole = whole && done[static_cast<size_t>(i)];
    if (whole)
      summary.skipped_items += end - begin;
    else
      todo.push_back(k);
  }
  int64_t todo_items = 0;
  for (const int64_t k : todo) todo_items += std::min(total, (k + 1) * request.batch) - k * request.batch;

  const Json png_settings = text_to_image_png_settings(loaded, model, std::nullopt, request.config_label);
  Progress progress(request.quiet ? Progress::Mode::kQuiet : Progress::Mode::kAuto);
  const auto started = std::chrono::steady_clock::now();
  torch::NoGradGuard no_grad;
  for (const int64_t k : todo) {
    const int64_t begin = k * request.batch, end = std::min(total, begin + request.batch), n = end - begin;
    TextToImageRequest generation;
    for (int64_t i = begin; i < end; ++i) {
      generation.prompts.push_back(set.items[static_cast<size_t>(i)].prompt);
      generation.seeds.push_back(request.seed + static_cast<uint64_t>(i));
    }
    const auto t0 = std::chrono::steady_clock::now();
    const TextToImageResult result = generate(model, generation);
    const torch::Tensor images = result.images.to(torch::kCPU);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const torch::Tensor pixels = metric_images_from_unit_range(images);  // what the PNGs hold

    std::vector<Json> records(static_cast<size_t>(n));
    for (int64_t j = 0; j < n; ++j) {
      const int64_t i = begin + j;
      const PromptItem& item = set.items[static_cast<size_t>(i)];
      const uint64_t seed = request.seed + static_cast<uint64_t>(i);
      Json png = png_settings;
      png["prompt"] = item.prompt;
      png["prompt_id"] = item.id;
      if (!item.category.empty()) png["category"] = item.category;
      png["seed"] = seed;
      png["index"] = i;
      png["block_forwards"] = result.sampling.block_forwards;
      png["width"] = result.requested.width;
      png["height"] = result.requested.height;
      png["sampled_size"] = {result.generated.width, result.generated.height};
      write_png((out / "images" / pse_image_name(i, seed)).string(), images[j],
                {{"Software", "ilf_eval_prompts"}, {"ilf", png.dump()}});
      records[static_cast<size_t>(j)] = {{"index", i},
                                         {"id", item.id},
                                         {"prompt", item.prompt},
                                         {"category", item.category},
                                         {"seed", seed},
                                         {"batch", k},
                                         {"seconds", seconds / static_cast<double>(n)},
                                         {"block_forwards", result.sampling.block_forwards}};
    }
    // A score that is NaN or Inf would be written as null and silently left out of the means: refused,
    // naming the metric and the items (the metric models' weights are checked at load, so this guards the
    // computation itself; no test reaches it from outside).
    auto put = [&](const std::string& key, const torch::Tensor& values) {
      require_finite(values, key + " scores of items " + std::to_string(begin) + " .. " + std::to_string(end - 1));
      const torch::Tensor v = values.to(torch::kCPU, torch::kFloat64).contiguous();
      for (int64_t j = 0; j < n; ++j) records[static_cast<size_t>(j)][key] = v[j].item<double>();
    };
    if (models.image_reward) put("image_reward", image_reward_scores(*models.image_reward, pixels, generation.prompts));
    if (models.clip) {
      // 100 x cosine per image, unclamped: torchmetrics' CLIPScore clamps the mean at 0 (pse_means), not each image.
      put("clip_score", clip_scores_unclamped(*models.clip, pixels, generation.prompts));
      const torch::Tensor iqa = clip_iqa_scores(*models.clip, pixels);
      for (int64_t c = 0; c < 4; ++c) put(std::string("clip_iqa_") + kClipIqaColumns[c], iqa.select(1, c));
    }
    if (models.fidelity) {
      std::vector<torch::Tensor> refs;
      for (int64_t i = begin; i < end; ++i) {
        const std::string path =
            (fs::path(request.reference_dir) / "images" / pse_image_name(i, request.seed + static_cast<uint64_t>(i))).string();
        if (!fs::exists(path))
          throw Error(path + ": the reference run has no image for item " + std::to_string(i) +
                      " (finish the reference run first)");
        refs.push_back(pse_png_as_metric_image(path));
        if (refs.back().sizes() != pixels[i - begin].sizes())
          throw Error(path + ": the reference image is " + c10::str(refs.back().sizes()) + ", this run's " +
                      c10::str(pixels[i - begin].sizes()));
      }
      const torch::Tensor references = torch::stack(refs);
      if (models.lpips) put("lpips", lpips_distances(*models.lpips, pixels, references));
      put("ssim", ssim_per_image(pixels, references));
      for (int64_t j = 0; j < n; ++j) {
        const double psnr = mean_psnr(pixels[j].unsqueeze(0).to(torch::kFloat32) / 127.5 - 1,
                                      references[j].unsqueeze(0).to(torch::kFloat32) / 127.5 - 1);
        records[static_cast<size_t>(j)]["psnr"] = std::isfinite(psnr) ? Json(psnr) : Json(nullptr);
      }
    }
    std::string lines;
    for (const Json& record : records) lines += record.dump() + "\n";
    pse_append_records(records_path, lines);
    summary.generated_items += n;
    const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const double eta =
        elapsed / static_cast<double>(summary.generated_items) * static_cast<double>(todo_items - summary.generated_items);
    progress.update("ilf_eval_prompts: rank " + std::to_string(shard.rank) + "/" + std::to_string(shard.world_size) + ": " +
                        std::to_string(summary.generated_items) + "/" + std::to_string(todo_items) + " images, " +
                        pse_duration(elapsed) + " elapsed, eta " + pse_duration(eta),
                    summary.generated_items, todo_items);
  }
  // Complete when every item has a record now (this rank's and what the others had written).
  for (const std::string& file : pse_records_files(request.out_dir))
    for (const Json& record : pse_read_records(file).records) {
      const int64_t index = record["index"].get<int64_t>();
      if (index >= 0 && index < total) done[static_cast<size_t>(index)] = 1;
    }
  summary.complete = std::all_of(done.begin(), done.end(), [](char d) { return d != 0; });
  return summary;
}

namespace {

std::string pse_cell(const Json& value, const char* format) {
  if (value.is_null() || !value.is_number()) return "—";
  char text[64];
  std::snprintf(text, sizeof(text), format, value.get<double>());
  return text;
}

Json pse_means(const std::vector<const Json*>& records) {
  Json means = Json::object();
  double seconds = 0, forwards = 0;
  for (const Json* r : records) {
    seconds += (*r)["seconds"].get<double>();
    forwards += (*r)["block_forwards"].get<double>();
  }
  const auto n = static_cast<double>(records.size());
  means["seconds_per_image"] = seconds / n;
  const double bf = forwards / n;
  means["block_forwards"] = bf == std::floor(bf) ? Json(static_cast<int64_t>(bf)) : Json(bf);
  for (const std::string& key : pse_metric_keys()) {
    double sum = 0;
    int64_t count = 0;
    for (const Json* r : records) {  // index order
      const auto it = r->find(key);
      if (it == r->end() || !it->is_number()) continue;
      sum += it->get<double>();
      ++count;
    }
    if (count > 0) means[key] = sum / static_cast<double>(count);
  }
  // CLIPScore as torchmetrics computes it over a set: max(mean of 100 x cosine, 0).
  if (means.contains("clip_score")) means["clip_score"] = std::max(means["clip_score"].get<double>(), 0.0);
  return means;
}

}  // namespace

Json merge_prompt_set_evaluation(const PromptSetMergeRequest& request) {
  const fs::path out(request.out_dir);
  const std::string settings_path = (out / "settings.json").string();
  if (!fs::exists(settings_path))
    throw Error(settings_path + ": missing (--out-dir " + request.out_dir + " is not an ilf_eval_prompts output folder)");
  const Json settings = pse_read_json_file(settings_path);
  if (settings.value("format", "") != kPseFormat) throw Error(settings_path + ": not the settings of a prompt-set evaluation");
  const int64_t total = settings["prompt_set"]["items"].get<int64_t>();

  // Every rank's records, the first record of each index kept (a recomputed batch repeats its records).
  const std::vector<std::string> files = pse_records_files(request.out_dir);
  std::vector<Json> by_index(static_cast<size_t>(total));
  std::set<std::pair<int64_t, int64_t>> rank_files;  // (world size, rank)
  for (const std::string& file : files) {
    long long r = -1, w = -1;
    if (std::sscanf(fs::path(file).filename().string().c_str(), "rank-%lld-of-%lld.jsonl", &r, &w) == 2)
      rank_files.insert({w, r});
    for (Json& record : pse_read_records(file).records) {
      const int64_t index = record["index"].get<int64_t>();
      if (index < 0 || index >= total)
        throw Error(file + ": a record of item " + std::to_string(index) + ", outside the set's " + std::to_string(total) +
                    " items");
      if (by_index[static_cast<size_t>(index)].is_null()) by_index[static_cast<size_t>(index)] = std::move(record);
    }
  }
  std::vector<int64_t> missing;
  for (int64_t i = 0; i < total; ++i)
    if (by_index[static_cast<size_t>(i)].is_null()) missing.push_back(i);
  if (!missing.empty()) {
    std::string list;
    for (size_t i = 0; i < missing.size() && i < 10; ++i) list += (i ? ", " : "") + std::to_string(missing[i]);
    if (missing.size() > 10) list += ", ...";
    std::string ranks;
    std::set<int64_t> worlds;
    for (const auto& [w, r] : rank_files) worlds.insert(w);
    const int64_t batch = settings["batch"].get<int64_t>();
    for (const int64_t w : worlds) {
      std::set<int64_t> absent;
      for (const int64_t i : missing)
        if (!rank_files.count({w, (i / batch) % w})) absent.insert((i / batch) % w);
      for (const int64_t r : absent) ranks += (ranks.empty() ? "" : ", ") + pse_records_name(r, w);
    }
    throw Error(request.out_dir + ": " + std::to_string(missing.size()) + " of " + std::to_string(total) +
                " items have no record (items " + list + ")" +
                (files.empty()   ? std::string("; no records files under records/")
                 : ranks.empty() ? std::string("; the ranks that had them did not finish (rerun them to resume)")
                                 : "; missing records files: " + ranks));
  }

  std::vector<const Json*> all;
  std::map<std::string, std::vector<const Json*>> categories;
  for (const Json& r : by_index) {
    all.push_back(&r);
    const std::string category = r.value("category", std::string());
    if (!category.empty()) categories[category].push_back(&r);
  }
  Json merged = {{"format", kPseFormat}, {"label", settings.value("label", std::string())}, {"items", total}};
  merged["settings"] = settings;
  merged["means"] = pse_means(all);
  Json counts = {{"items", total}};
  for (const std::string& key : pse_metric_keys()) {
    int64_t c = 0;
    for (const Json* r : all) c += r->contains(key) && (*r)[key].is_number() ? 1 : 0;
    if (c > 0 || (key == "psnr" && settings["reference"].is_object() && !settings["reference"].value("self", false)))
      counts["with_" + key] = c;
  }
  merged["counts"] = counts;

  // FID, from the PNGs, when the settings name the Inception file and the reference statistics.
  merged["fid"] = nullptr;
  const Json& metric_files = settings["metrics"];
  if (metric_files.contains("inception") && metric_files.contains("fid_statistics")) {
    if (total < 2) throw Error(request.out_dir + ": FID needs at least 2 images");
    const FeatureStatistics reference = read_fid_statistics(metric_files["fid_statistics"].get<std::string>());
    CleanFidExtractorPtr extractor =
        load_clean_fid_extractor(metric_files["inception"].get<std::string>(), resolve_device(request.device));
    std::vector<torch::Tensor> features;
    Progress progress(request.quiet ? Progress::Mode::kQuiet : Progress::Mode::kAuto);
    const int64_t chunk = 50;
    for (int64_t begin = 0; begin < total; begin += chunk) {
      std::vector<torch::Tensor> images;
      for (int64_t i = begin; i < std::min(total, begin + chunk); ++i) {
        const Json& r = by_index[static_cast<size_t>(i)];
        images.push_back(pse_png_as_metric_image((out / "images" / pse_image_name(i, r["seed"].get<uint64_t>())).string()));
      }
      features.push_back(clean_fid_features(*extractor, torch::stack(images)).to(torch::kCPU));
      progress.update(
          "ilf_eval_prompts merge: FID features " + std::to_string(std::min(total, begin + chunk)) + "/" + std::to_string(total),
          std::min(total, begin + chunk), total);
    }
    merged["fid"] = frechet_distance(feature_statistics(torch::cat(features)), reference);
  }
  if (!categories.empty()) {
    Json per = Json::object();
    for (const auto& [category, records] : categories)
      per[category] = {{"items", static_cast<int64_t>(records.size())}, {"means", pse_means(records)}};
    merged["categories"] = per;
  }
  merged["reference"] = settings["reference"].is_object() ? settings["reference"]["label"] : Json(nullptr);
  merged["records"] = by_index;

  const std::string json_path = request.out_json.empty() ? (out / "merged.json").string() : request.out_json;
  const std::string md_path = request.markdown.empty() ? (out / "table1_row.md").string() : request.markdown;
  pse_write_json_file(json_path, merged);
  const std::string table = table1_markdown(merged);
  write_file_atomically(md_path, [&](std::ostream& o) { o << table; });
  return merged;
}

std::string table1_markdown(const Json& merged) {
  const Json& means = merged["means"];
  auto mean = [&](const char* key) { return means.contains(key) ? means[key] : Json(nullptr); };
  const std::string reference = merged["reference"].is_string() ? merged["reference"].get<std::string>() : "—";
  std::string forwards = "—";
  if (means.contains("block_forwards"))
    forwards = means["block_forwards"].is_number_integer() ? std::to_string(means["block_forwards"].get<int64_t>())
                                                           : pse_cell(means["block_forwards"], "%.1f");
  std::string label = merged.value("label", std::string());
  for (char& c : label)
    if (c == '|' || c == '\n') c = ' ';
  const std::vector<std::string> cells = {label,
                                          pse_cell(mean("seconds_per_image"), "%.3f"),
                                          forwards,
                                          pse_cell(mean("image_reward"), "%.4f"),
                                          pse_cell(mean("clip_score"), "%.2f"),
                                          pse_cell(merged.value("fid", Json(nullptr)), "%.2f"),
                                          pse_cell(mean("clip_iqa_quality"), "%.4f"),
                                          pse_cell(mean("clip_iqa_noisiness"), "%.4f"),
                                          pse_cell(mean("clip_iqa_colorfulness"), "%.4f"),
                                          pse_cell(mean("clip_iqa_naturalness"), "%.4f"),
                                          pse_cell(mean("lpips"), "%.4f"),
                                          pse_cell(mean("ssim"), "%.4f"),
                                          pse_cell(mean("psnr"), "%.2f")};
  std::string row = "|";
  for (const std::string& c : cells) row += " " + c + " |";
  return "| setting | s/img | block forwards | ImageReward | CLIP | FID | CLIP-IQA Good | Noisy | Colorful | Natural | LPIPS | "
         "SSIM | PSNR (vs " +
         reference + ") |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n" + row + "\n";
}

}  // namespace ilf
