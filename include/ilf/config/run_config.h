// The run config, typed: one JSON file with the sections "model", "weights", "ilf", "sampling",
// "vae", "text", "training", "data", "eval" and one section per acceleration method that has settings
// ("cache", ...), plus `--set key=value` overrides. It is parsed and validated here, once, for every
// tool: each key is read by exactly one function (the section parsers in src/config/run_config.cpp,
// and each acceleration method's own parser in its accel/ file, called from here), every default
// is stated once (in the option structs), and a key nobody reads is an error naming the file and key.
// Settings that need the backbone to be checked (a loop inside the depth, a caption length) are
// checked where the backbone is known, with messages that name the key.
#pragma once
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ilf/accel/registry.h"
#include "ilf/feedback/feedback.h"
#include "ilf/io/config.h"
#include "ilf/models/model_spec.h"
#include "ilf/models/vae.h"
#include "ilf/sampling/sampler.h"
#include "ilf/sampling/solvers.h"
#include "ilf/training/datasets.h"
#include "ilf/training/trainer.h"

namespace ilf {

// Upper bounds of sizes read from a config, checked before anything is allocated (far above every
// published DiT / PixArt; a typo such as depth = 1e9 is an error naming the key, not a bad_alloc).
constexpr int64_t kMaxModelDepth = 1024;
constexpr int64_t kMaxModelHiddenSize = 65536;  // also num_heads and caption_channels
constexpr int64_t kMaxModelInputSize = 16384;   // latent side
constexpr int64_t kMaxModelPatchSize = 256;
constexpr int64_t kMaxModelChannels = 4096;
constexpr int64_t kMaxModelClasses = 10000000;
constexpr int64_t kMaxModelTokens = 65536;  // model_max_length
constexpr int64_t kMaxSamplingSteps = 100000;
constexpr int64_t kMaxTrainingSteps = 1000000000;
constexpr int64_t kMaxTrainTimesteps = 100000;  // num_train_timesteps

// "ilf": the feedback module, shared by training and sampling (its sampling-time schedule, t_post and
// feedback_steps, is the ILF method's own settings).
struct FeedbackSection {
  std::optional<int64_t> loop_begin, loop_end;  // b, e (inclusive); required where a feedback module is used
  FeedbackInit init = FeedbackInit::kCopyLoopEnd;
  std::string weights;  // "feedback_weights", resolved; "" = none

  // The loop when both ends are set.
  std::optional<FeedbackOptions> options() const;
  // The loop, or an ilf::Error naming the missing key and what needs it.
  FeedbackOptions require(const std::string& source, const std::string& needed_by) const;
};

// "sampling": the method, the loop settings and the solver with its options.
struct SamplingSection {
  std::string method = "baseline";  // a registered acceleration method (accel/registry.h)
  SamplingOptions options;          // steps, guidance_scale, guided_channels
  SolverOptions solver;             // solver and its settings
};

// "vae": a latent model's TorchScript VAE.
struct VaeSection {
  std::string decoder, encoder;             // resolved paths; "" = none
  std::optional<double> scale_factor;       // default: the text-to-image family's (pipelines/model_folder.h)
  int64_t downsampling = kVaeDownsampling;  // pixels per latent along each side (the SD VAEs: 8)
};

// "text": the caption encoder of text-to-image models.
struct TextSection {
  std::string encoder, tokenizer;     // TorchScript T5 encoder and its spiece.model, resolved; "" = none
  std::optional<int64_t> max_length;  // default: the backbone's caption length
  bool lowercase = true;
  int64_t cache_size = 64;     // prompts whose embeddings are kept
  std::string encoder_device;  // "" = the device the backbone runs on
};

// "eval": how ilf_eval judges samples.
struct EvalSection {
  std::string feature_extractor = "models/fashion_mnist/classifier.pt";  // TorchScript: features(x), forward(x)
  int64_t crop = 2;                                                      // pixels cropped from each side before judging
  std::string reference_set = "fashion_mnist_test";                      // the real images FID compares with
  std::string dataset_folder = "/usr/share/datasets/fashion-mnist";
};

// "metrics": the metric models of prompt-set evaluations (pipelines/prompt_set_evaluation.h), resolved
// paths; a metric runs only when its file is set ("" = not configured).
struct MetricsSection {
  std::string clip;                     // a Hugging Face CLIPModel folder: CLIP score and CLIP-IQA
  std::string image_reward;             // ImageReward.safetensors (scripts/convert_image_reward.py; needs image_reward_vocab)
  std::string image_reward_vocab;       // BERT vocab.txt
  std::string image_reward_med_config;  // med_config.json; "" = the package's defaults
  std::string inception;                // clean-fid's Inception TorchScript (FID, with fid_statistics)
  std::string fid_statistics;           // the reference set's clean-fid statistics (.npz)
  std::string lpips;                    // LPIPS weights (fidelity to a reference run, with SSIM and PSNR)
};

struct RunConfig {
  std::string source;  // the config file (messages and relative paths); a tool name when there is none
  Json json;           // the JSON after overrides (what training checkpoints record)

  ModelSpec model;
  std::string weights;  // backbone weights, resolved; "" = none (pretraining from scratch)
  FeedbackSection ilf;
  SamplingSection sampling;
  std::map<std::string, MethodSettingsPtr> methods;  // every registered method's settings, by name
  VaeSection vae;
  TextSection text;
  TrainingOptions training;
  DataOptions data;
  EvalSection eval;
  MetricsSection metrics;
  std::vector<std::string> class_names;  // "class_names": a class-conditional model's classes, by label ([] = none)
  std::set<std::string> file_keys;       // the keys that name files or folders (ConfigReader::file_path)

  // The settings of sampling.method.
  const MethodSettings& method_settings() const { return *methods.at(sampling.method); }
};

// Reads a config file (an empty path gives an empty config) and applies the overrides in order.
Json read_run_config_json(const std::string& path, const std::vector<std::string>& overrides);

// Parses and validates every section of `json`; `source` names it in messages and anchors relative
// paths. Throws ilf::Error naming the file and the key for unknown keys, wrong types and bad values.
RunConfig parse_run_config(const Json& json, const std::string& source);

// read_run_config_json + parse_run_config.
RunConfig load_run_config(const std::string& path, const std::vector<std::string>& overrides);

// The top-level sections a run config may have.
std::vector<std::string> run_config_sections();

// Builds the configured acceleration method; `feedback` is the loaded feedback module (null when only
// planning, or for methods that use none).
AccelerationMethodPtr make_acceleration_method(const RunConfig& config, FeedbackModuleImpl* feedback = nullptr);

// The solver settings of a section at `prefix` ("sampling" in run configs): `<prefix>.solver` and the
// settings of the chosen solver (see sampling/solvers.h). Also used by the tests of the solver options.
SolverOptions parse_solver_options(ConfigReader& reader, const std::string& prefix);

}  // namespace ilf
