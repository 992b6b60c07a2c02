// The schedule search proper, which knows nothing about models: candidates proposed by a small
// evolutionary search (structured starting points, then mutations of the best so far), each priced by
// a cost function and pruned against the budget before it is evaluated, twins under a plan signature
// skipped, the state written after every evaluation so that a killed search resumes into the same
// result, the finalists re-evaluated on held-out seeds, and the Pareto front and report. The cost,
// signature and evaluator come from search_run.cpp (a run config) or from the tests (a toy objective).
#include "ilf/experiments/search/search.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <random>
#include <sstream>

#include "ilf/error.h"
#include "ilf/io/atomic_file.h"
#include "ilf/io/config.h"

namespace ilf {

// --- Proposals ---

namespace {

using Rng = std::mt19937_64;

int64_t draw(Rng& rng, int64_t n) { return static_cast<int64_t>(rng() % static_cast<uint64_t>(n)); }

// Feedback steps of a schedule moved to a new step count, keeping their relative positions.
std::vector<int64_t> remap_steps(const std::vector<int64_t>& steps, int64_t from, int64_t to) {
  std::vector<int64_t> out;
  for (int64_t k : steps)
    out.push_back(from <= 1 ? 0
                            : std::llround(static_cast<double>(k) * static_cast<double>(to - 1) / static_cast<double>(from - 1)));
  return out;
}

template <typename T>
const T& pick(const std::vector<T>& choices, Rng& rng) {
  return choices[static_cast<size_t>(draw(rng, static_cast<int64_t>(choices.size())))];
}

// A choice other than `current` where there is one.
template <typename T>
T pick_other(const std::vector<T>& choices, const T& current, Rng& rng) {
  std::vector<T> others;
  for (const T& c : choices)
    if (c != current) others.push_back(c);
  return others.empty() ? current : pick(others, rng);
}

// The anneal parameters, cache modes and strengths, when the space gives more than one value.
bool has_settings_choices(const SearchSpace& space) {
  return space.anneal_floors.size() > 1 || space.anneal_scales.size() > 1 || space.cache_modes.size() > 1 ||
         space.strengths.size() > 1;
}

Schedule mutate(Schedule s, const SearchSpace& space, Rng& rng) {
  const int64_t mutations = std::max<int64_t>(1, draw(rng, 4));  // 1 (half the time), 2 or 3
  for (int64_t i = 0; i < mutations; ++i) {
    // Toggling a step is half of the mutations; in a space with setting choices a quarter change one.
    const int64_t kind = draw(rng, has_settings_choices(space) ? 8 : 6);
    switch (kind < 3 ? 0 : kind - 2) {
      case 0: {  // toggle one step's feedback
        const int64_t k = draw(rng, s.steps);
        auto it = std::find(s.feedback_steps.begin(), s.feedback_steps.end(), k);
        if (it == s.feedback_steps.end())
          s.feedback_steps.push_back(k);
        else
          s.feedback_steps.erase(it);
        break;
      }
      case 1: {  // one or two steps more or fewer
        const int64_t delta = (draw(rng, 2) ? 1 : -1) * (1 + draw(rng, 2));
        const int64_t to = std::clamp(s.steps + delta, space.min_steps, space.max_steps);
        s.feedback_steps = remap_steps(s.feedback_steps, s.steps, to);
        s.steps = to;
        break;
      }
      case 2:  // another t_post rule
        s.t_post = space.t_post_rules[static_cast<size_t>(draw(rng, static_cast<int64_t>(space.t_post_rules.size())))];
        break;
      case 3:  // move one feedback step to a neighbour
        if (!s.feedback_steps.empty()) {
          int64_t& k = s.feedback_steps[static_cast<size_t>(draw(rng, static_cast<int64_t>(s.feedback_steps.size())))];
          k = std::clamp<int64_t>(k + (draw(rng, 2) ? 1 : -1), 0, s.steps - 1);
        }
        break;
      default:  // another anneal floor, anneal scale, cache mode or strength
        switch (draw(rng, 4)) {
          case 0: s.anneal.floor = pick_other(space.anneal_floors, s.anneal.floor, rng); break;
          case 1: s.anneal.scale = pick_other(space.anneal_scales, s.anneal.scale, rng); break;
          case 2: s.cache = pick_other(space.cache_modes, s.cache, rng); break;
          default: s.strength = pick_other(space.strengths, s.strength, rng);
        }
    }
  }
  // A schedule that gains feedback while its rule is none gets a rule from the space.
  if (!s.feedback_steps.empty() && s.t_post == TPostRule::kNone &&
      std::find(space.t_post_rules.begin(), space.t_post_rules.end(), TPostRule::kNone) == space.t_post_rules.end())
    s.t_post = space.t_post_rules.front();
  return s.normalized();
}

Schedule random_schedule(const SearchSpace& space, Rng& rng) {
  Schedule s;
  s.steps = space.min_steps + draw(rng, space.max_steps - space.min_steps + 1);
  for (int64_t k = 0; k < s.steps; ++k)
    if (draw(rng, 5) == 0) s.feedback_steps.push_back(k);
  s.t_post = space.t_post_rules[static_cast<size_t>(draw(rng, static_cast<int64_t>(space.t_post_rules.size())))];
  if (has_settings_choices(space)) {
    s.anneal.floor = pick(space.anneal_floors, rng);
    s.anneal.scale = pick(space.anneal_scales, rng);
    s.cache = pick(space.cache_modes, rng);
    s.strength = pick(space.strengths, rng);
  }
  return s.normalized();
}

template <typename T>
bool contains(const std::vector<T>& v, const T& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

bool in_space(const Schedule& s, const SearchSpace& space) {
  if (s.steps < space.min_steps || s.steps > space.max_steps) return false;
  if (!s.feedback_steps.empty() && (!contains(space.t_post_rules, s.t_post) || !contains(space.cache_modes, s.cache) ||
                                    !contains(space.strengths, s.strength)))
    return false;
  // Anneal parameters come from the space's lists; the paper's (the structured seeds') are always allowed.
  if (s.t_post == TPostRule::kAnneal && !s.anneal.is_default() &&
      (!contains(space.anneal_floors, s.anneal.floor) || !contains(space.anneal_scales, s.anneal.scale)))
    return false;
  return std::all_of(s.feedback_steps.begin(), s.feedback_steps.end(), [&](int64_t k) { return k >= 0 && k < s.steps; });
}

nlohmann::json settings_json(const SearchSpace& space, const SearchOptions& options, const Objective& objective) {
  std::vector<std::string> rules;
  for (TPostRule r : space.t_post_rules) rules.push_back(to_string(r));
  nlohmann::json j = {{"budget", options.budget},
                      {"min_steps", space.min_steps},
                      {"max_steps", space.max_steps},
                      {"t_post_rules", rules},
                      {"initial", options.initial},
                      {"seed", options.seed},
                      {"objective", {{"fid", objective.fid}, {"accuracy", objective.accuracy}, {"psnr", objective.psnr}}}};
  // Written only when searched, so that state files of searches without them stay valid.
  const SearchSpace defaults;
  if (space.anneal_floors != defaults.anneal_floors) j["anneal_floors"] = space.anneal_floors;
  if (space.anneal_scales != defaults.anneal_scales) j["anneal_scales"] = space.anneal_scales;
  if (space.cache_modes != defaults.cache_modes) j["cache_modes"] = space.cache_modes;
  if (space.strengths != defaults.strengths) j["strengths"] = space.strengths;
  return j;
}

nlohmann::json to_json(const EvaluatedSchedule& e) {
  return {{"schedule", e.schedule.to_json()}, {"block_forwards", e.block_forwards}, {"score", e.score}, {"metrics", e.metrics}};
}

EvaluatedSchedule from_json(const nlohmann::json& j) {
  EvaluatedSchedule e;
  e.schedule = Schedule::from_json(j.at("schedule"));
  e.block_forwards = j.at("block_forwards").get<int64_t>();
  e.score = j.at("score").get<double>();
  e.metrics = j.at("metrics");
  return e;
}

void save_state(const std::string& path, const nlohmann::json& settings, const SearchResult& r) {
  nlohmann::json j = {{"format", "ilf.schedule_search"}, {"settings", settings}};
  j["candidates"] = nlohmann::json::array();
  for (const auto& e : r.candidates) j["candidates"].push_back(to_json(e));
  j["finalists"] = nlohmann::json::array();
  for (const auto& e : r.finalists) j["finalists"].push_back(to_json(e));
  write_file_atomically(path, [&](std::ostream& o) { o << j.dump(1) << "\n"; });
}

SearchResult load_state(const std::string& path, const nlohmann::json& settings) {
  SearchResult r;
  if (!std::filesystem::exists(path)) return r;
  const nlohmann::json j = load_json_file(path);
  if (j.value("format", "") != "ilf.schedule_search")
    throw Error(path + ": not a schedule search state (\"format\" must be \"ilf.schedule_search\")");
  if (j.at("settings") != settings)
    throw Error(path + ": written by a search with other settings (" + j.at("settings").dump() + ", now " + settings.dump() +
                "); resume with the same settings or use another output folder");
  try {
    for (const auto& c : j.at("candidates")) r.candidates.push_back(from_json(c));
    for (const auto& c : j.at("finalists")) r.finalists.push_back(from_json(c));
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": malformed search state (" + e.what() + ")");
  }
  return r;
}

}  // namespace

std::vector<Schedule> seed_schedules(const SearchSpace& space, int64_t budget, const CostFunction& cost) {
  using Pattern = std::function<std::vector<int64_t>(int64_t)>;
  const std::vector<std::pair<Pattern, std::vector<TPostRule>>> patterns = {
      {[](int64_t n) {
         return std::vector<int64_t>{0, 1, n - 2, n - 1};
       },
       {TPostRule::kAnneal, TPostRule::kRescale}},
      {[](int64_t n) {
         return std::vector<int64_t>{0, n - 1};
       },
       {TPostRule::kAnneal}},
      {[](int64_t) {
         return std::vector<int64_t>{0, 1};
       },
       {TPostRule::kAnneal}},
      {[](int64_t n) {
         return std::vector<int64_t>{n - 2, n - 1};
       },
       {TPostRule::kAnneal}},
      {[](int64_t n) {
         std::vector<int64_t> v;
         for (int64_t k = 0; k < n; k += 2) v.push_back(k);
         return v;
       },
       {TPostRule::kAnneal}},
      {[](int64_t) { return std::vector<int64_t>{}; }, {TPostRule::kNone}},
  };
  std::vector<Schedule> seeds;
  for (const auto& [pattern, rules] : patterns)
    for (TPostRule rule : rules)
      for (int64_t n = space.max_steps; n >= std::max<int64_t>(space.min_steps, 2); --n) {
        Schedule s;
        s.steps = n;
        s.feedback_steps = pattern(n);
        s.t_post = rule;
        s.cache = space.cache_modes.front();
        s.strength = space.strengths.front();
        s = s.normalized();
        if (!in_space(s, space) || cost(s) > budget) continue;
        const bool seen = std::any_of(seeds.begin(), seeds.end(), [&](const Schedule& o) { return o.key() == s.key(); });
        if (!seen) seeds.push_back(s);
        break;
      }
  return seeds;
}

SearchResult run_schedule_search(const SearchSpace& space, const SearchOptions& options, const Objective& objective,
                                 const CostFunction& cost, const Evaluator& on_search_seeds, const Evaluator& on_heldout_seeds,
                                 const std::string& state_file, const SignatureFunction& signature) {
  if (space.min_steps < 1 || space.max_steps < space.min_steps)
    throw Error("search space: steps must satisfy 1 <= min_steps <= max_steps");
  if (space.t_post_rules.empty()) throw Error("search space: no t_post rule to choose from");
  if (space.anneal_floors.empty() || space.anneal_scales.empty() || space.cache_modes.empty() || space.strengths.empty())
    throw Error("search space: no anneal floor, anneal scale, cache mode or strength to choose from");
  if (options.budget < 1 || options.evaluations < 1 || options.finalists < 0 || options.initial < 0)
    throw Error("search options: budget and evaluations must be >= 1, initial and finalists >= 0");
  const nlohmann::json settings = settings_json(space, options, objective);
  SearchResult result = load_state(state_file, settings);

  std::map<std::string, int64_t> costs;  // key -> block forwards (the plan, computed once)
  auto cost_of = [&](const Schedule& s) {
    auto it = costs.find(s.key());
    return it != costs.end() ? it->second : (costs[s.key()] = cost(s));
  };
  std::map<std::string, std::string> signatures;  // key -> signature (computed once)
  auto signature_of = [&](const Schedule& s) {
    auto it = signatures.find(s.key());
    return it != signatures.end() ? it->second : (signatures[s.key()] = signature(s));
  };
  // Evaluated already: the same schedule, or one that samples the same.
  auto evaluated = [&](const Schedule& s) {
    return std::any_of(result.candidates.begin(), result.candidates.end(), [&](const EvaluatedSchedule& e) {
      return e.schedule.key() == s.key() || (signature && signature_of(e.schedule) == signature_of(s));
    });
  };
  auto admissible = [&](const Schedule& s) { return in_space(s, space) && !evaluated(s) && cost_of(s) <= options.budget; };
  const std::vector<Schedule> seeds = seed_schedules(space, options.budget, cost_of);

  // Proposal i depends only on (seed, i) and the candidates before it: a resumed search proposes what an
  // uninterrupted one would have.
  auto propose = [&](int64_t i) -> Schedule {
    if (i < options.initial)
      for (const Schedule& s : seeds)
        if (admissible(s)) return s;
    Rng rng(options.seed * 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(i));
    // Parents: the best so far half of the time, otherwise one of the best four.
    std::vector<EvaluatedSchedule> ranked = result.candidates;
    std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.score < b.score; });
    for (int attempt = 0; attempt < 2000 && !ranked.empty(); ++attempt) {
      const int64_t elite = std::min<int64_t>(4, static_cast<int64_t>(ranked.size()));
      const auto& parent = ranked[static_cast<size_t>(draw(rng, 2) ? 0 : draw(rng, elite))];
      const Schedule child = mutate(parent.schedule, space, rng);
      if (admissible(child)) return child;
    }
    for (int attempt = 0; attempt < 20000; ++attempt) {
      const Schedule s = random_schedule(space, rng);
      if (admissible(s)) return s;
    }
    throw Error("schedule search: no schedule left to evaluate within the budget of " + std::to_string(options.budget) +
                " block forwards after " + std::to_string(result.candidates.size()) + " evaluations");
  };

  for (auto i = static_cast<int64_t>(result.candidates.size()); i < options.evaluations; ++i) {
    EvaluatedSchedule e;
    e.schedule = propose(i);
    e.block_forwards = cost_of(e.schedule);
    e.metrics = on_search_seeds(e.schedule);
    e.score = objective.score(e.metrics);
    result.candidates.push_back(e);
    save_state(state_file, settings, result);
  }

  // The finalists: the best candidates by score (earlier first on ties), again on the held-out seeds.
  std::vector<EvaluatedSchedule> ranked = result.candidates;
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) { return a.score < b.score; });
  ranked.resize(std::min<size_t>(ranked.size(), static_cast<size_t>(options.finalists)));
  for (const auto& candidate : ranked) {
    const bool done = std::any_of(result.finalists.begin(), result.finalists.end(),
                                  [&](const auto& f) { return f.schedule.key() == candidate.schedule.key(); });
    if (done) continue;
    EvaluatedSchedule f = candidate;
    f.metrics = on_heldout_seeds(f.schedule);
    f.score = objective.score(f.metrics);
    result.finalists.push_back(f);
    save_state(state_file, settings, result);
  }
  std::stable_sort(result.finalists.begin(), result.finalists.end(),
                   [](const auto& a, const auto& b) { return a.score < b.score; });
  return result;
}

std::vector<EvaluatedSchedule> pareto_front(const std::vector<EvaluatedSchedule>& candidates) {
  std::vector<EvaluatedSchedule> sorted = candidates;
  std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
    return a.block_forwards != b.block_forwards ? a.block_forwards < b.block_forwards : a.score < b.score;
  });
  std::vector<EvaluatedSchedule> front;
  for (const auto& c : sorted)
    if (front.empty() || c.score < front.back().score) front.push_back(c);
  return front;
}

std::string metric_cell(const nlohmann::json& m, const char* name, double scale, int precision) {
  if (!m.contains(name) || !m[name].is_number()) return "-";
  std::ostringstream o;
  o.setf(std::ios::fixed);
  o.precision(precision);
  o << m[name].get<double>() * scale;
  return o.str();
}

namespace {

void table(std::ostringstream& o, const std::vector<EvaluatedSchedule>& rows) {
  o << "| block forwards | schedule | score | FID | class accuracy % | PSNR dB | samples |\n"
       "|---:|---|---:|---:|---:|---:|---:|\n";
  for (const auto& r : rows) {
    std::ostringstream score;
    score.setf(std::ios::fixed);
    score.precision(2);
    score << r.score;
    o << "| " << r.block_forwards << " | " << r.schedule.key() << " | " << score.str() << " | "
      << metric_cell(r.metrics, "fid", 1, 2) << " | " << metric_cell(r.metrics, "class_accuracy", 100, 1) << " | "
      << metric_cell(r.metrics, "psnr_vs_reference", 1, 1) << " | " << r.metrics.value("num_samples", 0) << " |\n";
  }
}

}  // namespace

std::string search_report_markdown(const SearchResult& result, const Objective& objective, const SearchOptions& options) {
  std::ostringstream o;
  o << "Objective (lower is better): " << objective.describe() << "; budget " << options.budget << " block forwards per image; "
    << result.candidates.size() << " candidates evaluated.\n\n";
  o << "Pareto front on the search seeds (block forwards vs score):\n\n";
  table(o, pareto_front(result.candidates));
  o << "\nFinalists on the held-out seeds, best first:\n\n";
  table(o, result.finalists);
  return o.str();
}
}  // namespace ilf
