// Reports on a sweep: the plan (every point, its folder, block forwards and what is left to run) and the
// collected results table with its CSV and Markdown forms.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "ilf/experiments/sweep/spec.h"

namespace ilf {

// `plan`: a readable listing and the JSON form (points with resolved configs, folders, estimates).
std::string plan_text(const SweepSpec& spec, const std::vector<SweepPoint>& points);
Json plan_json(const SweepSpec& spec, const std::vector<SweepPoint>& points);

// Collect: one row per point with its axis values, state and metrics. Metric names: a dotted path
// into the point's metrics.json ("fid", "settings.steps"), "train.<key>" (the last value in the
// training's metrics.jsonl) or "plan.block_forwards" (the estimate).
struct SweepTable {
  std::vector<std::string> columns;     // "point", axis keys..., "state", metrics...
  std::vector<std::vector<Json>> rows;  // null = missing
  int64_t complete_points = 0;
};
SweepTable collect_sweep(const SweepSpec& spec, const std::vector<SweepPoint>& points);
std::string table_to_csv(const SweepTable& table);
std::string table_to_markdown(const SweepSpec& spec, const SweepTable& table);
// Writes the table as OUT/results.csv and OUT/results.md (OUT = the sweep's output folder), and also to
// `csv_path` / `markdown_path` when they are not empty (folders created, each file atomically).
// Returns the paths written.
std::vector<std::string> write_sweep_results(const SweepSpec& spec, const SweepTable& table, const std::string& csv_path,
                                             const std::string& markdown_path);

}  // namespace ilf
