// Schedule search (see include/ilf/experiments/search/search.h).
#include "ilf/experiments/search/search.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include <spdlog/spdlog.h>

#include "ilf/error.h"
#include "ilf/io/atomic_file.h"
#include "ilf/io/config.h"
#include "ilf/pipelines/loading.h"

namespace ilf {

// --- Schedules ---

Schedule Schedule::normalized() const {
  Schedule s = *this;
  std::sort(s.feedback_steps.begin(), s.feedback_steps.end());
  s.feedback_steps.erase(std::unique(s.feedback_steps.begin(), s.feedback_steps.end()), s.feedback_steps.end());
  if (s.feedback_steps.empty()) {
    s.t_post = TPostRule::kNone;
    s.cache.clear();
    s.strength = 1.0;
  }
  if (s.t_post != TPostRule::kAnneal) s.anneal = AnnealParams{};
  return s;
}

namespace {

std::string number(double v) {
  std::ostringstream o;
  o << v;
  return o.str();
}

}  // namespace

std::string Schedule::key() const {
  const Schedule s = normalized();
  std::string k = std::to_string(s.steps) + " steps, ";
  if (s.feedback_steps.empty()) return k + "no feedback";
  k += "feedback ";
  for (size_t i = 0; i < s.feedback_steps.size(); ++i) k += (i ? "," : "") + std::to_string(s.feedback_steps[i]);
  k += ", " + to_string(s.t_post);
  if (!s.anneal.is_default()) k += " (floor " + number(s.anneal.floor) + ", scale " + number(s.anneal.scale) + ")";
  if (!s.cache.empty()) k += ", cache " + s.cache;
  if (s.strength != 1.0) k += ", strength " + number(s.strength);
  return k;
}

std::vector<std::string> Schedule::overrides() const {
  const Schedule s = normalized();
  if (s.feedback_steps.empty()) return {"sampling.method=baseline", "sampling.steps=" + std::to_string(s.steps)};
  std::vector<std::string> o = {"sampling.method=" + std::string(s.cache.empty() ? "ilf" : "ilf_cache"),
                                "sampling.steps=" + std::to_string(s.steps), "ilf.t_post=" + to_string(s.t_post),
                                "ilf.feedback_steps=" + nlohmann::json{{"mode", "list"}, {"steps", s.feedback_steps}}.dump(),
                                "ilf.strength=" + nlohmann::json(s.strength).dump()};
  if (!s.anneal.is_default()) {
    o.push_back("ilf.anneal_floor=" + nlohmann::json(s.anneal.floor).dump());
    o.push_back("ilf.anneal_scale=" + nlohmann::json(s.anneal.scale).dump());
  }
  if (!s.cache.empty()) o.push_back("ilf_cache.mode=" + s.cache);
  return o;
}

nlohmann::json Schedule::to_json() const {
  const Schedule s = normalized();
  nlohmann::json j = {{"steps", s.steps}, {"feedback_steps", s.feedback_steps}, {"t_post", to_string(s.t_post)}};
  if (!s.anneal.is_default()) j["anneal"] = {{"floor", s.anneal.floor}, {"scale", s.anneal.scale}};
  if (!s.cache.empty()) j["cache"] = s.cache;
  if (s.strength != 1.0) j["strength"] = s.strength;
  return j;
}

Schedule Schedule::from_json(const nlohmann::json& j) {
  try {
    Schedule s;
    s.steps = j.at("steps").get<int64_t>();
    s.feedback_steps = j.at("feedback_steps").get<std::vector<int64_t>>();
    s.t_post = parse_t_post_rule(j.at("t_post").get<std::string>());
    if (j.contains("anneal")) {
      s.anneal.floor = j["anneal"].at("floor").get<double>();
      s.anneal.scale = j["anneal"].at("scale").get<double>();
    }
    s.cache = j.value("cache", "");
    s.strength = j.value("strength", 1.0);
    if (s.cache != "" && s.cache != "alternate" && s.cache != "outside")
      throw Error("a schedule's \"cache\" must be \"alternate\" or \"outside\" (got \"" + s.cache + "\")");
    return s.normalized();
  } catch (const nlohmann::json::exception& e) {
    throw Error(
        "a schedule must be {\"steps\", \"feedback_steps\", \"t_post\"} with optional \"anneal\" {\"floor\", \"scale\"} "
        "and \"cache\", \"strength\" (" +
        std::string(e.what()) + ")");
  }
}

// --- Search-space lists ---

namespace {

std::vector<std::string> split_list(const std::string& flag, const std::string& text) {
  std::vector<std::string> items;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) items.push_back(item);
  if (items.empty()) throw Error(flag + ": expected a comma-separated list, got \"" + text + "\"");
  return items;
}

}  // namespace

std::vector<TPostRule> parse_t_post_list(const std::string& flag, const std::string& text) {
  std::vector<TPostRule> rules;
  for (const auto& name : split_list(flag, text)) {
    try {
      rules.push_back(parse_t_post_rule(name));
    } catch (const Error& e) {
      throw Error(flag + ": " + e.what());
    }
  }
  return rules;
}

std::vector<double> parse_number_list(const std::string& flag, const std::string& text) {
  std::vector<double> values;
  for (const auto& item : split_list(flag, text)) {
    double v = -1;
    size_t used = 0;
    try {
      v = std::stod(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || used != item.size() || !std::isfinite(v) || v < 0)
      throw Error(flag + ": \"" + item + "\" is not a finite number >= 0");
    values.push_back(v);
  }
  return values;
}

std::vector<std::string> parse_cache_mode_list(const std::string& flag, const std::string& text) {
  std::vector<std::string> modes;
  for (const auto& name : split_list(flag, text)) {
    if (name != "none" && name != "alternate" && name != "outside")
      throw Error(flag + ": unknown cache mode \"" + name + "\" (expected none, alternate or outside)");
    modes.push_back(name == "none" ? "" : name);
  }
  return modes;
}

// --- Objective ---

Objective Objective::parse(const std::string& text) {
  if (text == "fid") return {1, 0, 0};
  if (text == "accuracy") return {0, 1, 0};
  if (text == "psnr") return {0, 0, 1};
  Objective o{0, 0, 0};
  std::stringstream terms(text);
  std::string term;
  while (std::getline(terms, term, ',')) {
    const auto eq = term.find('=');
    const std::string name = term.substr(0, eq);
    double weight = 0;
    try {
      size_t used = 0;
      if (eq == std::string::npos) throw std::invalid_argument("no weight");
      weight = std::stod(term.substr(eq + 1), &used);
      if (used != term.size() - eq - 1 || !std::isfinite(weight) || weight < 0) throw std::invalid_argument("bad");
    } catch (const std::exception&) {
      throw Error("--objective: \"" + term + "\" is not name=weight with a finite weight >= 0");
    }
    if (name == "fid")
      o.fid = weight;
    else if (name == "accuracy")
      o.accuracy = weight;
    else if (name == "psnr")
      o.psnr = weight;
    else
      throw Error("--objective: unknown metric \"" + name + "\" (expected fid, accuracy or psnr)");
  }
  if (o.fid == 0 && o.accuracy == 0 && o.psnr == 0)
    throw Error("--objective \"" + text + "\": expected fid, accuracy, psnr or weights like fid=1,accuracy=0.5");
  return o;
}

double Objective::score(const nlohmann::json& m) const {
  auto metric = [&](const char* name) {
    if (!m.contains(name) || !m[name].is_number())
      throw Error(std::string("the objective needs the metric \"") + name + "\", which the evaluation did not report");
    return m[name].get<double>();
  };
  double s = 0;
  if (fid != 0) s += fid * metric("fid");
  if (accuracy != 0) s -= accuracy * 100.0 * metric("class_accuracy");
  if (psnr != 0) s -= psnr * metric("psnr_vs_reference");
  return s;
}

std::string Objective::describe() const {
  std::string s;
  auto add = [&](double w, const std::string& name, bool minus) {
    if (w == 0) return;
    std::ostringstream weight;
    weight << w;
    s += (s.empty() ? (minus ? "-" : "") : (minus ? " - " : " + ")) + (w == 1 ? "" : weight.str() + "*") + name;
  };
  add(fid, "FID", false);
  add(accuracy, "accuracy%", true);
  add(psnr, "PSNR", true);
  return s;
}

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

namespace {

std::string metric_cell(const nlohmann::json& m, const char* name, double scale, int precision) {
  if (!m.contains(name) || !m[name].is_number()) return "-";
  std::ostringstream o;
  o.setf(std::ios::fixed);
  o.precision(precision);
  o << m[name].get<double>() * scale;
  return o.str();
}

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

// --- The search over a run config ---

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

Evaluator make_sampling_evaluator(const SearchTarget& target, const EvalRequest& request) {
  std::vector<LabelledPrompt> prompts;
  if (!target.prompts_file.empty()) prompts = read_labelled_prompts(target.prompts_file);
  return [target, request, prompts](const Schedule& s) {
    EvalRequest r = request;
    r.label = s.key();
    const LoadedRunConfig loaded = load_tool_config(target.config, with_schedule(target, s), target.model_folder);
    return prompts.empty() ? evaluate_class_to_image(loaded.config, r) : evaluate_text_to_image(loaded, prompts, r);
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

}  // namespace ilf

namespace ilf {

namespace {

// The reference sampler on one seed set: evaluated once, its metrics and samples kept in OUT.
nlohmann::json reference_run(const SearchRun& run, const Schedule& reference, EvalRequest request, const std::string& name) {
  namespace fs = std::filesystem;
  const std::string metrics_file = (fs::path(run.out) / (name + ".json")).string();
  request.write_samples = (fs::path(run.out) / (name + ".safetensors")).string();
  if (fs::exists(metrics_file) && fs::exists(request.write_samples)) return load_json_file(metrics_file);
  const nlohmann::json m = make_sampling_evaluator(run.target, request)(reference);
  write_file_atomically(metrics_file, [&](std::ostream& o) { o << m.dump(2) << "\n"; });
  return m;
}

}  // namespace

SearchResult run_search(SearchRun run) {
  namespace fs = std::filesystem;
  if (run.out.empty()) throw Error("ilf_search: --out (the output folder) is required");
  if (run.objective.needs_reference() && run.reference_steps < 1)
    throw Error("ilf_search: the objective uses PSNR, which needs --reference-steps >= 1");
  fs::create_directories(run.out);
  const CostFunction cost = make_plan_cost(run.target);
  Schedule reference;
  reference.steps = run.reference_steps;
  if (run.budget_fraction > 0) {
    if (run.reference_steps < 1) throw Error("ilf_search: --budget-fraction needs --reference-steps >= 1");
    run.options.budget = static_cast<int64_t>(std::floor(run.budget_fraction * static_cast<double>(cost(reference))));
  }
  spdlog::info("schedule search: budget {} block forwards per image, objective {}, {} evaluations of {} samples",
               run.options.budget, run.objective.describe(), run.options.evaluations, run.search_seeds.num_samples);

  EvalRequest search = run.search_seeds, heldout = run.heldout_seeds;
  std::vector<EvaluatedSchedule> references;
  if (run.reference_steps > 0) {
    for (auto* request : {&search, &heldout}) {
      const std::string name = request == &search ? "reference_search" : "reference_heldout";
      EvaluatedSchedule r;
      r.schedule = reference;
      r.block_forwards = cost(reference);
      r.metrics = reference_run(run, reference, *request, name);
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
                                                  logged(make_sampling_evaluator(run.target, search), "candidate"),
                                                  logged(make_sampling_evaluator(run.target, heldout), "held-out"),
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
