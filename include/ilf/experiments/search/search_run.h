// The schedule search over a run config, what ilf_search runs: the cost and the plan signature of a
// schedule from the sampler's plan, its metrics from sampling the run config's model with the schedule
// (ilf_eval's metrics), the best schedule written back as a run config, and the whole run with its
// reference sampler, state, report and best config in one folder. The search itself (search.h) sees
// only the functions built here.
//
// A search evaluates dozens of schedules of one model, so the model is loaded once per search
// (SearchModel): the backbone, VAE, text encoder and feedback module, the feature extractor and the
// reference set's feature statistics are kept, and each schedule only rebuilds what its overrides
// configure (the acceleration method, the solver and the sampling options). The metrics are those of
// evaluating the schedule's config from scratch.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ilf/experiments/search/search.h"
#include "ilf/pipelines/evaluation.h"

namespace ilf {

// The model the schedules are for, as the tools load it: a run config file with --set overrides, and
// for text-to-image a model folder and a labelled prompts file (see pipelines/evaluation.h).
struct SearchTarget {
  std::string config;
  std::vector<std::string> overrides;
  std::string model_folder, prompts_file;
};

// The schedule's block forwards per image from the sampler's plan (plan_run; needs "model.depth").
CostFunction make_plan_cost(const SearchTarget& target);
// The plan's steps (what each step runs, its times, t_post and reused blocks) and solver, as text.
SignatureFunction make_plan_signature(const SearchTarget& target);

// The target's model on one device for every evaluation of a search, loaded by the first evaluation.
// Assumes what a schedule's overrides change (sampling.*, the ilf.* schedule keys, ilf_cache.mode) never
// changes which weights, VAE, text encoder, feedback module or "eval" section the config names.
class SearchModel {
 public:
  SearchModel(SearchTarget target, std::string device);
  ~SearchModel();
  // ilf_eval's metrics for the schedule, with `request`'s samples, batch, seed and sample files (its
  // device must be this model's).
  nlohmann::json evaluate(const Schedule& schedule, const EvalRequest& request);
  // How often the model was loaded and the reference set judged (1 and 1 after any evaluations).
  int64_t model_loads() const { return model_loads_; }
  int64_t reference_judgements() const;

 private:
  struct Loaded;
  SearchTarget target_;
  std::string device_;
  std::vector<LabelledPrompt> prompts_;
  std::unique_ptr<Loaded> loaded_;
  int64_t model_loads_ = 0;
};

// The evaluator of the search: `model`'s metrics with `request` (labelled with the schedule's key).
Evaluator make_sampling_evaluator(std::shared_ptr<SearchModel> model, const EvalRequest& request);

// Writes the target's config with the schedule applied to `path` (atomically), every relative file path
// in it rewritten relative to the new file's folder, so that `ilf_sample --config path` runs it anywhere.
void write_schedule_config(const SearchTarget& target, const Schedule& schedule, const std::string& path);

// The largest --budget-fraction: 100 times the reference sampler's block forwards (1e308 was an
// undefined float-to-integer conversion).
constexpr double kMaxBudgetFraction = 100;

// Everything ilf_search runs, in OUT, with ilf_search's defaults (the tool binds its flags to these fields):
//   reference_search.json / reference_heldout.json (+ .safetensors): the plain sampler with
//     `reference_steps` steps on both seed sets (the PSNR reference and the baseline row of the report);
//   state.json: the search state (resumable); report.md: the Pareto front and the finalists;
//   best.json: the run config with the best finalist's schedule, ready for ilf_sample --config.
struct SearchRun {
  SearchTarget target = {"configs/fashion_mnist.json", {}, "", ""};
  SearchSpace space;
  SearchOptions options;       // options.budget is replaced when budget_fraction > 0
  double budget_fraction = 0;  // > 0: budget = floor(fraction * the reference sampler's block forwards)
  Objective objective;
  int64_t search_samples = 1000;    // samples per candidate
  uint64_t search_seed = 0;         // noise seed of the search set
  int64_t heldout_samples = 5000;   // samples per finalist
  uint64_t heldout_seed = 1000000;  // noise seed of the held-out set
  int64_t batch = 500;              // samples per sampling batch
  std::string device = "auto";      // "auto": CUDA when the build and machine have it (util/device.h)
  int64_t reference_steps = 20;     // 0 = no reference (then the objective cannot use PSNR)
  std::string out;                  // the output folder
};
// Runs (or resumes) the search in run.out. With budget_fraction > 0 it first sets run.options.budget
// from the reference sampler's cost, so that a report printed afterwards states the budget searched.
SearchResult run_search(SearchRun& run);

}  // namespace ilf
