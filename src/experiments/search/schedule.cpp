// The vocabulary of the schedule search: a schedule (the step count, the steps with feedback, the t_post
// rule and its anneal parameters, caching, the strength) with its key, run-config overrides and JSON,
// the search space's flag lists, and the objective a candidate is scored by. Kept apart from the search
// itself (search.cpp) and from the run-config adapters (search_run.cpp): both speak these terms, and
// none of them needs a model.
#include "ilf/experiments/search/search.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "ilf/error.h"

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
    if (s.cache != "" && s.cache != "alternate" && s.cache != "outside" && s.cache != "forecast")
      throw Error("a schedule's \"cache\" must be \"alternate\", \"outside\" or \"forecast\" (got \"" + s.cache + "\")");
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
    if (name != "none" && name != "alternate" && name != "outside" && name != "forecast")
      throw Error(flag + ": unknown cache mode \"" + name + "\" (expected none, alternate, outside or forecast)");
    modes.push_back(name == "none" ? "" : name);
  }
  return modes;
}

namespace {

template <typename T, typename F>
std::string join_mapped(const std::vector<T>& items, F text) {
  std::string s;
  for (size_t i = 0; i < items.size(); ++i) s += (i ? "," : "") + text(items[i]);
  return s;
}

}  // namespace

std::string format_t_post_list(const std::vector<TPostRule>& rules) {
  return join_mapped(rules, [](TPostRule r) { return to_string(r); });
}

std::string format_number_list(const std::vector<double>& values) { return join_mapped(values, number); }

std::string format_cache_mode_list(const std::vector<std::string>& modes) {
  return join_mapped(modes, [](const std::string& m) { return m.empty() ? std::string("none") : m; });
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

std::string Objective::text() const {
  if (fid == 1 && accuracy == 0 && psnr == 0) return "fid";
  if (fid == 0 && accuracy == 1 && psnr == 0) return "accuracy";
  if (fid == 0 && accuracy == 0 && psnr == 1) return "psnr";
  std::string s;
  const std::pair<const char*, double> terms[] = {{"fid", fid}, {"accuracy", accuracy}, {"psnr", psnr}};
  for (const auto& [name, w] : terms)
    if (w != 0) s += std::string(s.empty() ? "" : ",") + name + "=" + number(w);
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

}  // namespace ilf
