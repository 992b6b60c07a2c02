// Reports on a sweep, read from its output folder without running anything: the plan (points, folders,
// block forwards, the stages left to run) and the results table (axis values, state and metrics of every
// point, from metrics.json and the training's metrics.jsonl) as CSV and Markdown
// (see include/ilf/experiments/sweep/collect.h).
#include "ilf/experiments/sweep/collect.h"

#include <filesystem>
#include <fstream>
#include <iomanip>
#include <set>
#include <sstream>

#include "ilf/experiments/sweep/runner.h"
#include "ilf/io/atomic_file.h"
#include "sweep_internal.h"

namespace ilf {
namespace fs = std::filesystem;
using detail::find_dotted;
using detail::join;
using detail::read_json_object;
using detail::value_text;

// --- plan ---------------------------------------------------------------------------------------------

std::string plan_text(const SweepSpec& spec, const std::vector<SweepPoint>& points) {
  std::vector<std::string> stage_names;
  for (SweepStage s : spec.stages) stage_names.push_back(to_string(s));
  std::set<int64_t> trainings;
  for (const auto& p : points) trainings.insert(p.train_index);
  std::ostringstream out;
  out << "sweep " << spec.name << " (" << spec.source << "): " << points.size() << " point" << (points.size() == 1 ? "" : "s");
  if (spec.has_stage(SweepStage::kTrain))
    out << ", " << trainings.size() << " training run" << (trainings.size() == 1 ? "" : "s");
  out << "; stages " << join(stage_names, ", ") << "\n";
  if (!spec.description.empty()) out << "  " << spec.description << "\n";
  out << "base config: " << spec.base_config << "\n";
  if (!spec.fixed.empty()) {
    std::vector<std::string> fixed;
    for (const auto& [key, value] : spec.fixed) fixed.push_back(key + "=" + value_text(value));
    out << "every point: " << join(fixed, " ") << "\n";
  }
  out << "output: " << spec.output << "\n\n";
  out << std::left << std::setw(7) << "index" << std::setw(13) << "block_fwds" << std::setw(27) << "state"
      << "folder\n";
  for (const auto& p : points) {
    const auto missing = missing_stages(spec, p);
    std::string state = "complete";
    if (!missing.empty()) {
      std::vector<std::string> names;
      for (SweepStage s : missing) names.push_back(to_string(s));
      state = "to run: " + join(names, ",");
    }
    out << std::left << std::setw(7) << p.index << std::setw(13)
        << (p.block_forwards ? std::to_string(*p.block_forwards) : std::string("?")) << std::setw(27) << state
        << point_dir(spec, p) << "\n";
    std::vector<std::string> values;
    for (const auto& [key, value] : p.values) values.push_back(key + "=" + value_text(value));
    if (!values.empty()) out << "       " << join(values, " ");
    if (spec.has_stage(SweepStage::kTrain)) out << (values.empty() ? "       " : "  ") << "[training " << p.train_id << "]";
    if (!values.empty() || spec.has_stage(SweepStage::kTrain)) out << "\n";
  }
  return out.str();
}

Json plan_json(const SweepSpec& spec, const std::vector<SweepPoint>& points) {
  std::vector<std::string> stage_names;
  for (SweepStage s : spec.stages) stage_names.push_back(to_string(s));
  Json list = Json::array();
  for (const auto& p : points) {
    Json values = Json::object();
    for (const auto& [key, value] : p.values) values[key] = value;
    std::vector<std::string> missing;
    for (SweepStage s : missing_stages(spec, p)) missing.push_back(to_string(s));
    list.push_back({{"index", p.index},
                    {"id", p.id},
                    {"folder", point_dir(spec, p)},
                    {"values", values},
                    {"overrides", p.overrides},
                    {"training", {{"id", p.train_id}, {"folder", train_dir(spec, p)}, {"overrides", p.train_overrides}}},
                    {"block_forwards", p.block_forwards ? Json(*p.block_forwards) : Json(nullptr)},
                    {"missing_stages", missing},
                    {"config", p.config}});
  }
  return {{"name", spec.name},     {"source", spec.source}, {"base_config", spec.base_config},
          {"output", spec.output}, {"stages", stage_names}, {"metrics", spec.metrics},
          {"points", list}};
}

// --- collect ----------------------------------------------------------------------------------------

SweepTable collect_sweep(const SweepSpec& spec, const std::vector<SweepPoint>& points) {
  SweepTable table;
  table.columns.push_back("point");
  for (const auto& axis : spec.axes)
    for (const auto& key : axis.keys) table.columns.push_back(key);
  table.columns.push_back("state");
  for (const auto& m : spec.metrics) table.columns.push_back(m);

  for (const auto& p : points) {
    std::vector<Json> row;
    row.push_back(p.id.substr(0, p.id.find('_')));
    for (const auto& [key, value] : p.values) row.push_back(value);
    const auto missing = missing_stages(spec, p);
    if (missing.empty()) {
      ++table.complete_points;
      row.push_back("complete");
    } else {
      std::vector<std::string> names;
      for (SweepStage s : missing) names.push_back(to_string(s));
      row.push_back("missing " + join(names, ","));
    }
    const auto metrics = read_json_object((fs::path(point_dir(spec, p)) / "metrics.json").string());
    std::vector<Json> train_log;
    bool train_log_read = false;
    for (const auto& m : spec.metrics) {
      Json value = nullptr;
      if (m == "plan.block_forwards") {
        if (p.block_forwards) value = *p.block_forwards;
      } else if (m.rfind("train.", 0) == 0) {
        if (!train_log_read) {
          train_log_read = true;
          std::ifstream in((fs::path(train_dir(spec, p)) / "metrics.jsonl").string());
          std::string line;
          while (std::getline(in, line)) {
            try {
              train_log.push_back(Json::parse(line));
            } catch (const nlohmann::json::exception&) {
            }
          }
        }
        for (auto it = train_log.rbegin(); it != train_log.rend(); ++it)
          if (const Json* v = find_dotted(*it, m.substr(6)); v && !v->is_null()) {
            value = *v;
            break;
          }
      } else if (metrics) {
        if (const Json* v = find_dotted(*metrics, m)) value = *v;
      }
      row.push_back(value);
    }
    table.rows.push_back(std::move(row));
  }
  return table;
}

namespace {

std::string csv_field(const Json& v) {
  std::string text = v.is_null() ? "" : value_text(v);
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

std::string markdown_field(const Json& v) {
  if (v.is_null()) return "-";
  if (v.is_number_float()) {
    std::ostringstream s;
    s << std::setprecision(4) << v.get<double>();
    return s.str();
  }
  std::string text = value_text(v);
  std::string out;
  for (char c : text) out += c == '|' ? std::string("\\|") : std::string(1, c == '\n' ? ' ' : c);
  return out;
}

}  // namespace

std::string table_to_csv(const SweepTable& table) {
  std::ostringstream o;
  for (size_t c = 0; c < table.columns.size(); ++c) o << (c ? "," : "") << csv_field(table.columns[c]);
  o << "\n";
  for (const auto& row : table.rows) {
    for (size_t c = 0; c < row.size(); ++c) o << (c ? "," : "") << csv_field(row[c]);
    o << "\n";
  }
  return o.str();
}

std::string table_to_markdown(const SweepSpec& spec, const SweepTable& table) {
  std::vector<std::string> stage_names;
  for (SweepStage s : spec.stages) stage_names.push_back(to_string(s));
  std::ostringstream o;
  o << "# Sweep " << spec.name << "\n\n";
  if (!spec.description.empty()) o << spec.description << "\n\n";
  o << "Sweep file `" << spec.source << "`, base config `" << fs::path(spec.base_config).filename().string() << "`";
  if (!spec.fixed.empty()) {
    std::vector<std::string> fixed;
    for (const auto& [key, value] : spec.fixed) fixed.push_back(key + "=" + value_text(value));
    o << " with `" << join(fixed, " ") << "`";
  }
  o << "; stages " << join(stage_names, ", ") << ". " << table.complete_points << " of " << table.rows.size()
    << " points complete.\n\n";
  o << "|";
  for (const auto& c : table.columns) o << " " << c << " |";
  o << "\n|";
  for (size_t c = 0; c < table.columns.size(); ++c) {
    bool numeric = !table.rows.empty();
    for (const auto& row : table.rows) numeric = numeric && (row[c].is_number() || row[c].is_null());
    o << (numeric ? "---:|" : "---|");
  }
  o << "\n";
  for (const auto& row : table.rows) {
    o << "|";
    for (const auto& v : row) o << " " << markdown_field(v) << " |";
    o << "\n";
  }
  return o.str();
}

std::vector<std::string> write_sweep_results(const SweepSpec& spec, const SweepTable& table, const std::string& csv_path,
                                             const std::string& markdown_path) {
  const std::string csv = table_to_csv(table);
  const std::string markdown = table_to_markdown(spec, table);
  fs::create_directories(spec.output);
  std::vector<std::pair<std::string, const std::string*>> outputs = {
      {(fs::path(spec.output) / "results.csv").string(), &csv}, {(fs::path(spec.output) / "results.md").string(), &markdown}};
  if (!csv_path.empty()) outputs.emplace_back(csv_path, &csv);
  if (!markdown_path.empty()) outputs.emplace_back(markdown_path, &markdown);
  std::vector<std::string> written;
  for (const auto& [path, text] : outputs) {
    if (fs::path(path).has_parent_path()) fs::create_directories(fs::path(path).parent_path());
    write_file_atomically(path, [&](std::ostream& o) { o << *text; });
    written.push_back(path);
  }
  return written;
}

}  // namespace ilf
