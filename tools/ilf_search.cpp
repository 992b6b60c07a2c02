// ilf_search: finds the best ILF schedule (step count, the steps with feedback, the t_post rule and its
// anneal parameters, caching on the other steps, the feedback strength) for a trained feedback module
// under a budget of block forwards per image (see experiments/search/search.h).
// Writes OUT/state.json (resumable: run the same command again), OUT/report.md, OUT/best.json.
//   ilf_search --config configs/fashion_mnist.json --budget-fraction 0.6 --objective fid --out runs/search
#include <CLI/CLI.hpp>
#include <iostream>

#include "ilf/error.h"
#include "ilf/experiments/search/search.h"
#include "tool_common.h"

using namespace ilf;

int main(int argc, char** argv) {
  CLI::App app{"ilf_search: the best ILF schedule under a budget of block forwards"};
  SearchRun run;
  run.target.config = "configs/fashion_mnist.json";
  run.search_seeds.num_samples = 1000;
  run.heldout_seeds.num_samples = 5000;
  run.heldout_seeds.seed = 1000000;
  std::string objective = "fid", t_post_rules, anneal_floors, anneal_scales, cache_modes, strengths;
  app.add_option("--config", run.target.config, "run config with a trained feedback module")->capture_default_str();
  app.add_option("--set", run.target.overrides, "override a config value: key.path=value (repeatable)");
  app.add_option("--model-folder", run.target.model_folder, "text-to-image: model folder with model.json");
  app.add_option("--prompts-file", run.target.prompts_file, "text-to-image: lines \"class<TAB>caption\"");
  app.add_option("--out", run.out, "output folder (state.json, report.md, best.json)")->required();
  auto* budget = app.add_option("--budget", run.options.budget, "block forwards per image, at most")->transform(cli::Count);
  app.add_option("--budget-fraction", run.budget_fraction, "budget as a fraction of the reference sampler's block forwards")
      ->excludes(budget)
      ->check(cli::FiniteNonNegative);
  app.add_option("--objective", objective, "fid, accuracy, psnr, or weights like fid=1,accuracy=0.5")->capture_default_str();
  app.add_option("--evaluations", run.options.evaluations, "candidates evaluated on the search seeds")
      ->capture_default_str()
      ->transform(cli::Count);
  app.add_option("--initial", run.options.initial, "of which structured starting points")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--finalists", run.options.finalists, "best candidates re-evaluated on the held-out seeds")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--min-steps", run.space.min_steps, "fewest sampling steps")->capture_default_str()->transform(cli::Count);
  app.add_option("--max-steps", run.space.max_steps, "most sampling steps")->capture_default_str()->transform(cli::Count);
  // The lists are checked while parsing (a bad entry is a usage error naming the flag).
  auto list_check = [](const std::string& flag, auto parse) {
    return CLI::Validator(
        [flag, parse](std::string& text) {
          try {
            parse(flag, text);
          } catch (const Error& e) {
            return std::string(e.what());
          }
          return std::string();
        },
        "LIST");
  };
  app.add_option("--t-post", t_post_rules, "t_post rules to choose from, comma-separated (default: all)")
      ->check(list_check("--t-post", parse_t_post_list));
  app.add_option("--anneal-floors", anneal_floors, "anneal floors to choose from, e.g. 5,10,20 (default: the paper's 10)")
      ->check(list_check("--anneal-floors", parse_number_list));
  app.add_option("--anneal-scales", anneal_scales, "anneal scales to choose from, e.g. 0.5,1,1.5 (default: 1)")
      ->check(list_check("--anneal-scales", parse_number_list));
  app.add_option("--cache", cache_modes, "caching on the steps without feedback: none,alternate,outside (default: none)")
      ->check(list_check("--cache", parse_cache_mode_list));
  app.add_option("--strengths", strengths, "feedback strengths (ilf.strength) to choose from, e.g. 1,0.5,0.25 (default: 1)")
      ->check(list_check("--strengths", parse_number_list));
  app.add_option("--seed", run.options.seed, "seed of the search's own choices")->capture_default_str()->transform(cli::Seed);
  app.add_option("--search-samples", run.search_seeds.num_samples, "samples per candidate")
      ->capture_default_str()
      ->transform(cli::Count);
  app.add_option("--search-seed", run.search_seeds.seed, "noise seed of the search set")
      ->capture_default_str()
      ->transform(cli::Seed);
  app.add_option("--heldout-samples", run.heldout_seeds.num_samples, "samples per finalist")
      ->capture_default_str()
      ->transform(cli::Count);
  app.add_option("--heldout-seed", run.heldout_seeds.seed, "noise seed of the held-out set")
      ->capture_default_str()
      ->transform(cli::Seed);
  app.add_option("--reference-steps", run.reference_steps, "plain steps of the reference sampler (PSNR, --budget-fraction)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--batch", run.search_seeds.batch, "samples per sampling batch")->capture_default_str()->transform(cli::Count);
  app.add_option("--device", run.search_seeds.device, "cpu or cuda")->capture_default_str();
  if (const int code = cli::parse(app, argc, argv, "ilf_search"); code >= 0) return code;
  try {
    run.objective = Objective::parse(objective);
    if (!t_post_rules.empty()) run.space.t_post_rules = parse_t_post_list("--t-post", t_post_rules);
    if (!anneal_floors.empty()) run.space.anneal_floors = parse_number_list("--anneal-floors", anneal_floors);
    if (!anneal_scales.empty()) run.space.anneal_scales = parse_number_list("--anneal-scales", anneal_scales);
    if (!cache_modes.empty()) run.space.cache_modes = parse_cache_mode_list("--cache", cache_modes);
    if (!strengths.empty()) run.space.strengths = parse_number_list("--strengths", strengths);
    run.heldout_seeds.batch = run.search_seeds.batch;
    run.heldout_seeds.device = run.search_seeds.device;
    const SearchResult result = run_search(run);
    std::cout << search_report_markdown(result, run.objective, run.options);
    if (!result.finalists.empty())
      std::cout << "\nbest: " << result.finalists.front().schedule.key() << "; wrote " << run.out << "/best.json\n";
    return 0;
  } catch (...) {
    return cli::report_error("ilf_search");
  }
}
