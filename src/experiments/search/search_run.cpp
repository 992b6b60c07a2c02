// The run-config side of the schedule search (see include/ilf/experiments/search/search_run.h): what
// turns a schedule into a plan, a plan signature, metrics and a config file, and ilf_search's whole run.
// It exists apart from the search (search.cpp) because everything here loads configs and models, which
// the search and its tests do not need; the model is loaded once per search here (SearchModel).
#include "ilf/experiments/search/search_run.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <memory>
#include <optional>
#include <sstream>
#include <utility>

#include <spdlog/spdlog.h>

#include "ilf/accel/registry.h"
#include "ilf/error.h"
#include "ilf/io/atomic_file.h"
#include "ilf/io/config.h"
#include "ilf/pipelines/loading.h"
#include "ilf/sampling/solvers.h"
#include "ilf/util/device.h"

namespace ilf {

namespace {

std::vector<std::string> with_schedule(const SearchTarget& target, const Schedule& s) {
  std::vector<std::string> overrides = target.overrides;
  for (const auto& o : s.overrides()) overrides.push_back(o);
  return overrides;
}

// Rewrites every relative path in `j` that the config at `source` resolves to an existing file (the rule
// of resolve_config_path: the working directory first, then beside the config) relative to `folder`.
void rebase_paths(Json& j, const std::filesystem::path& source_dir, const std::filesystem::path& folder) {
  namespace fs = std::filesystem;
  if (j.is_object() || j.is_array()) {
    for (auto& v : j) rebase_paths(v, source_dir, folder);
    return;
  }
  if (!j.is_string()) return;
  const std::string value = j.get<std::string>();
  const fs::path p(value);
  if (value.find_first_of("/.") == std::string::npos || p.is_absolute()) return;  // not a relative path
  std::error_code ec;
  fs::path found;
  if (fs::exists(p, ec))
    found = p;
  else if (fs::exists(source_dir / p, ec))
    found = source_dir / p;
  else
    return;
  j = fs::relative(fs::absolute(found), fs::absolute(folder)).string();
}

}  // namespace

CostFunction make_plan_cost(const SearchTarget& target) {
  return [target](const Schedule& s) {
    const LoadedRunConfig loaded = load_tool_config(target.config, with_schedule(target, s), target.model_folder);
    return plan_run(loaded.config).at("total_block_forwards").get<int64_t>();
  };
}

SignatureFunction make_plan_signature(const SearchTarget& target) {
  return [target](const Schedule& s) {
    const LoadedRunConfig loaded = load_tool_config(target.config, with_schedule(target, s), target.model_folder);
    const nlohmann::json plan = plan_run(loaded.config);
    // The plan does not show the strength, which changes the samples of every feedback step.
    return nlohmann::json{{"solver", plan.at("solver")}, {"steps", plan.at("steps")}, {"strength", s.normalized().strength}}
        .dump();
  };
}

// --- The model, loaded once per search ---

// One of the two models (by whether the target has prompts), the feedback module once a schedule used
// it, and the judge's reference.
struct SearchModel::Loaded {
  std::optional<ClassToImageModel> class_to_image;
  std::optional<TextToImageModel> text_to_image;
  FeedbackModule feedback{nullptr};
  EvalReference reference;
};

SearchModel::SearchModel(SearchTarget target, std::string device) : target_(std::move(target)), device_(std::move(device)) {
  if (!target_.prompts_file.empty()) prompts_ = read_labelled_prompts(target_.prompts_file);
}

SearchModel::~SearchModel() = default;

int64_t SearchModel::reference_judgements() const { return loaded_ ? loaded_->reference.reference_judgements : 0; }

nlohmann::json SearchModel::evaluate(const Schedule& schedule, const EvalRequest& request) {
  // Compared as devices: "auto" and the device it resolves to are the same.
  if (request.device != device_ && resolve_device(request.device) != resolve_device(device_))
    throw Error("schedule search: an evaluation on " + request.device + " with the model loaded on " + device_);
  const LoadedRunConfig loaded = load_tool_config(target_.config, with_schedule(target_, schedule), target_.model_folder);
  const RunConfig& config = loaded.config;
  const torch::Device device = resolve_device(device_);
  if (!loaded_) {  // what the first evaluation loads, as ilf_eval would for its config
    const auto t0 = std::chrono::steady_clock::now();
    auto l = std::make_unique<Loaded>();
    if (prompts_.empty()) {
      l->class_to_image = load_class_to_image_model(config, device);
      l->feedback = l->class_to_image->sampling.feedback;
    } else {
      l->text_to_image = load_text_to_image_model(config, device, loaded.folder ? &*loaded.folder : nullptr);
      l->feedback = l->text_to_image->sampling.feedback;
    }
    l->reference = load_eval_reference(config, device);
    loaded_ = std::move(l);
    ++model_loads_;
    spdlog::info("schedule search: model and feature extractor loaded in {:.2f} s (kept for every candidate)",
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  Loaded& l = *loaded_;
  // The schedule's sampling, as load_sampling builds it, with the feedback module loaded only once.
  const Backbone& backbone = l.class_to_image ? *l.class_to_image->backbone : *l.text_to_image->backbone;
  const bool uses_feedback = find_acceleration_method(config.sampling.method).uses_feedback_module;
  if (uses_feedback && !l.feedback) l.feedback = load_feedback_module(config, backbone, device);
  SamplingSetup sampling;
  if (uses_feedback) sampling.feedback = l.feedback;
  sampling.method = make_acceleration_method(config, uses_feedback ? l.feedback.get() : nullptr);
  sampling.solver = make_solver(config.sampling.solver);
  if (l.class_to_image) {
    l.class_to_image->sampling = std::move(sampling);
    l.class_to_image->options = config.sampling.options;
    return evaluate_class_to_image(*l.class_to_image, config, request, l.reference);
  }
  l.text_to_image->sampling = std::move(sampling);
  l.text_to_image->options = config.sampling.options;
  return evaluate_text_to_image(*l.text_to_image, loaded, prompts_, request, l.reference);
}

Evaluator make_sampling_evaluator(std::shared_ptr<SearchModel> model, const EvalRequest& request) {
  return [model, request](const Schedule& s) {
    EvalRequest r = request;
    r.label = s.key();
    return model->evaluate(s, r);
  };
}

void write_schedule_config(const SearchTarget& target, const Schedule& schedule, const std::string& path) {
  namespace fs = std::filesystem;
  Json j = read_run_config_json(target.config, with_schedule(target, schedule));
  if (!target.model_folder.empty()) j["model"]["folder"] = target.model_folder;
  const fs::path folder = fs::absolute(fs::path(path)).parent_path();
  rebase_paths(j, fs::path(target.config).parent_path(), folder);
  fs::create_directories(folder);
  write_file_atomically(path, [&](std::ostream& o) { o << j.dump(2) << "\n"; });
}

namespace {

// The reference sampler on one seed set: evaluated once, its metrics and samples kept in OUT.
nlohmann::json reference_run(const SearchRun& run, SearchModel& model, const Schedule& reference, EvalRequest request,
                             const std::string& name) {
  namespace fs = std::filesystem;
  const std::string metrics_file = (fs::path(run.out) / (name + ".json")).string();
  request.write_samples = (fs::path(run.out) / (name + ".safetensors")).string();
  if (fs::exists(metrics_file) && fs::exists(request.write_samples)) return load_json_file(metrics_file);
  request.label = reference.key();
  const nlohmann::json m = model.evaluate(reference, request);
  write_file_atomically(metrics_file, [&](std::ostream& o) { o << m.dump(2) << "\n"; });
  return m;
}

}  // namespace

SearchResult run_search(SearchRun& run) {
  namespace fs = std::filesystem;
  if (run.out.empty()) throw Error("ilf_search: --out (the output folder) is required");
  if (run.objective.needs_reference() && run.reference_steps < 1)
    throw Error("ilf_search: the objective uses PSNR, which needs --reference-steps >= 1");
  fs::create_directories(run.out);
  const CostFunction cost = make_plan_cost(run.target);
  Schedule reference;
  reference.steps = run.reference_steps;
  std::ostringstream fraction;
  fraction << run.budget_fraction;
  if (!(run.budget_fraction >= 0 && run.budget_fraction <= kMaxBudgetFraction))
    throw Error("ilf_search: --budget-fraction must be a number from 0 to 100 (got " + fraction.str() + ")");
  if (run.budget_fraction > 0) {
    if (run.reference_steps < 1) throw Error("ilf_search: --budget-fraction needs --reference-steps >= 1");
    const double budget = std::floor(run.budget_fraction * static_cast<double>(cost(reference)));
    if (!(budget >= 1 && budget < 9.2e18))  // the conversion below is defined only in range
      throw Error("ilf_search: --budget-fraction " + fraction.str() + " gives a budget of " + std::to_string(budget) +
                  " block forwards (at least 1 is needed)");
    run.options.budget = static_cast<int64_t>(budget);
  }
  spdlog::info("schedule search: budget {} block forwards per image, objective {}, {} evaluations of {} samples",
               run.options.budget, run.objective.describe(), run.options.evaluations, run.search_samples);

  EvalRequest search, heldout;
  search.num_samples = run.search_samples, search.seed = run.search_seed;
  heldout.num_samples = run.heldout_samples, heldout.seed = run.heldout_seed;
  for (auto* r : {&search, &heldout}) r->batch = run.batch, r->device = run.device;
  const auto model = std::make_shared<SearchModel>(run.target, run.device);
  std::vector<EvaluatedSchedule> references;
  if (run.reference_steps > 0) {
    for (auto* request : {&search, &heldout}) {
      const std::string name = request == &search ? "reference_search" : "reference_heldout";
      EvaluatedSchedule r;
      r.schedule = reference;
      r.block_forwards = cost(reference);
      r.metrics = reference_run(run, *model, reference, *request, name);
      request->reference_samples = (fs::path(run.out) / (name + ".safetensors")).string();
      references.push_back(r);
    }
    spdlog::info("reference ({}): FID {:.2f} on the search seeds", reference.key(), references[0].metrics.value("fid", 0.0));
  }
  auto logged = [](const Evaluator& evaluate, const char* what) {
    return [evaluate, what](const Schedule& s) {
      const nlohmann::json m = evaluate(s);
      spdlog::info("{} {}: FID {:.2f}, accuracy {:.1f}%", what, s.key(), m.value("fid", 0.0),
                   100 * m.value("class_accuracy", 0.0));
      return m;
    };
  };
  const SearchResult result = run_schedule_search(run.space, run.options, run.objective, cost,
                                                  logged(make_sampling_evaluator(model, search), "candidate"),
                                                  logged(make_sampling_evaluator(model, heldout), "held-out"),
                                                  (fs::path(run.out) / "state.json").string(), make_plan_signature(run.target));

  std::string report = search_report_markdown(result, run.objective, run.options);
  if (!references.empty()) {
    std::ostringstream o;
    o << "\nThe reference, " << reference.key() << " (" << references[0].block_forwards << " block forwards): FID "
      << metric_cell(references[0].metrics, "fid", 1, 2) << " / " << metric_cell(references[1].metrics, "fid", 1, 2)
      << ", class accuracy " << metric_cell(references[0].metrics, "class_accuracy", 100, 1) << "% / "
      << metric_cell(references[1].metrics, "class_accuracy", 100, 1) << "% on the search / held-out seeds.\n";
    report += o.str();
  }
  write_file_atomically((fs::path(run.out) / "report.md").string(), [&](std::ostream& o) { o << report; });
  if (!result.finalists.empty())
    write_schedule_config(run.target, result.finalists.front().schedule, (fs::path(run.out) / "best.json").string());
  return result;
}

}  // namespace ilf
