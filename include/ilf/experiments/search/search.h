// Schedule search (ilf_search): the best ILF sampling schedule for a trained feedback module under a
// budget of block forwards per image. A schedule is the step count, the set of steps that run the
// inner loop with feedback, the t_post rule with its parameters and optionally caching on the steps
// without feedback (docs/design.md, "Schedule search"). Every candidate is
// priced by the sampler's own plan arithmetic before anything is sampled, so nothing over the budget is
// ever evaluated; candidates are evaluated on a search seed set, proposed by a small evolutionary
// search (a parent among the best so far, one to three mutations) with a fixed number of evaluations, and the best
// few re-evaluated on a held-out seed set. The state is saved after every evaluation, so a killed
// search resumes where it stopped and proposes exactly what an uninterrupted one would have.
//
// This header is the search itself, which knows nothing about models: it takes a cost function (the plan)
// and an evaluator (metrics JSON for a schedule). search_run.h builds those from a run config for
// ilf_search (its model loaded once per search); the tests plant a known best in a toy objective.
#pragma once
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "ilf/feedback/schedule.h"

namespace ilf {

// One candidate ILF schedule. Without feedback steps it is the plain sampler (method "baseline").
struct Schedule {
  int64_t steps = 10;
  std::vector<int64_t> feedback_steps;    // sorted, unique, in [0, steps)
  TPostRule t_post = TPostRule::kAnneal;  // ignored (kept kNone) without feedback steps
  AnnealParams anneal;                    // used by t_post anneal (kept at the defaults otherwise)
  std::string cache;                      // "": none; "alternate", "outside" or "forecast": method ilf_cache's mode
  double strength = 1.0;                  // ilf.strength, the feedback's multiplier at sampling (1 without feedback)

  // Sorts and deduplicates the steps, drops the rule, caching and strength of a plain schedule and the
  // anneal parameters of other rules.
  Schedule normalized() const;
  // "10 steps, feedback 0,1,8,9, anneal" (unique per normalized schedule; the state file's key), with
  // " (floor 20, scale 0.5)" for anneal parameters other than the paper's, ", cache outside" and
  // ", strength 0.5" for a strength other than 1.
  std::string key() const;
  // The run-config overrides that select it: sampling.method (baseline, ilf or ilf_cache), sampling.steps,
  // ilf.t_post, ilf.feedback_steps, ilf.strength (always: a config's own strength does not leak into the
  // search), and where they differ from the defaults ilf.anneal_floor, ilf.anneal_scale and
  // ilf_cache.mode. Caching "alternate" uses the config's "cache" section, "forecast" its "taylorseer" one.
  std::vector<std::string> overrides() const;
  nlohmann::json to_json() const;
  static Schedule from_json(const nlohmann::json& j);  // throws ilf::Error on malformed entries
};

// What a candidate may be.
// The anneal parameters, cache modes and strengths are searched only when given more than the default
// value; the first cache mode and strength are the structured starting points'.
struct SearchSpace {
  int64_t min_steps = 4, max_steps = 24;
  std::vector<TPostRule> t_post_rules = {TPostRule::kNone, TPostRule::kUniform, TPostRule::kRescale, TPostRule::kAnneal};
  std::vector<double> anneal_floors = {10.0};
  std::vector<double> anneal_scales = {1.0};
  std::vector<std::string> cache_modes = {""};  // "" (none), "alternate", "outside", "forecast"
  std::vector<double> strengths = {1.0};        // the feedback as trained
};

// Comma-separated lists of the ilf_search flags, checked: t_post rules, numbers >= 0, cache modes
// ("none", "alternate", "outside", "forecast"). Throws ilf::Error naming `flag` and the bad entry.
std::vector<TPostRule> parse_t_post_list(const std::string& flag, const std::string& text);
std::vector<double> parse_number_list(const std::string& flag, const std::string& text);
std::vector<std::string> parse_cache_mode_list(const std::string& flag, const std::string& text);
// The lists written back in the flags' syntax (what the parse functions read; ilf_search's defaults).
std::string format_t_post_list(const std::vector<TPostRule>& rules);
std::string format_number_list(const std::vector<double>& values);
std::string format_cache_mode_list(const std::vector<std::string>& modes);

// The score to minimise: fid * FID - accuracy * (class accuracy in percent) - psnr * (PSNR in dB to the
// reference samples). Parsed from "fid", "accuracy", "psnr" or weights "fid=1,accuracy=0.5".
struct Objective {
  double fid = 1, accuracy = 0, psnr = 0;

  static Objective parse(const std::string& text);    // throws ilf::Error naming the bad term
  double score(const nlohmann::json& metrics) const;  // throws ilf::Error naming a missing metric
  std::string describe() const;                       // "1*fid - 0.5*accuracy%"
  std::string text() const;                           // what parse reads back: "fid" or "fid=1,accuracy=0.5"
  bool needs_reference() const { return psnr != 0; }
};

struct SearchOptions {
  int64_t budget = 144;      // block forwards per image, at most
  int64_t evaluations = 24;  // candidates evaluated on the search seeds (the fixed evaluation budget)
  int64_t initial = 8;       // the first ones are the structured seeds (see seed_schedules), then mutations
  int64_t finalists = 3;     // the best re-evaluated on the held-out seeds
  uint64_t seed = 0;         // the search's own random choices
};

// Block forwards per image of a schedule (the sampler's plan).
using CostFunction = std::function<int64_t(const Schedule&)>;
// The metrics JSON of a schedule (fid, class_accuracy, psnr_vs_reference, ...).
using Evaluator = std::function<nlohmann::json(const Schedule&)>;
// What the sampler does with a schedule, step by step (make_plan_signature: the plan's steps). Schedules
// with equal signatures draw the same samples (e.g. caching mode "outside" when no feedback step follows
// a plain one, or an anneal floor that never binds), so only the first of them is evaluated.
using SignatureFunction = std::function<std::string(const Schedule&)>;

struct EvaluatedSchedule {
  Schedule schedule;
  int64_t block_forwards = 0;
  double score = 0;
  nlohmann::json metrics;
};

struct SearchResult {
  std::vector<EvaluatedSchedule> candidates;  // in evaluation order, on the search seeds
  std::vector<EvaluatedSchedule> finalists;   // best first, re-evaluated on the held-out seeds
};

// The structured starting points within the budget: for each pattern (feedback on the first and last
// two steps, on the first and last, on the first two, on the last two, on alternate steps, none) the
// largest step count that fits, with the paper's anneal rule (and rescale for the first pattern) and the
// space's first cache mode.
std::vector<Schedule> seed_schedules(const SearchSpace& space, int64_t budget, const CostFunction& cost);

// Runs or resumes the search whose state lives in `state_file` (JSON, written atomically after every
// evaluation). A state file written for other settings (space, options, objective) is refused with a
// message naming it. `on_search_seeds` evaluates candidates, `on_heldout_seeds` the finalists. With a
// `signature`, a schedule that samples like an evaluated one is never proposed.
SearchResult run_schedule_search(const SearchSpace& space, const SearchOptions& options, const Objective& objective,
                                 const CostFunction& cost, const Evaluator& on_search_seeds, const Evaluator& on_heldout_seeds,
                                 const std::string& state_file, const SignatureFunction& signature = {});

// The candidates no other one beats in both block forwards and score (equal counts: the better
// score), sorted by block forwards.
std::vector<EvaluatedSchedule> pareto_front(const std::vector<EvaluatedSchedule>& candidates);

// The report of a result: the Pareto front and the finalists as Markdown tables.
std::string search_report_markdown(const SearchResult& result, const Objective& objective, const SearchOptions& options);
// A metric of an evaluation's JSON times `scale` with `precision` decimals, "-" when it is absent: a cell
// of the report's tables.
std::string metric_cell(const nlohmann::json& metrics, const char* name, double scale, int precision);

}  // namespace ilf
