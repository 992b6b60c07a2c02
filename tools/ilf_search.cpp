// ilf_search: finds the best ILF schedule (step count, the steps with feedback, the t_post rule and its
// anneal parameters, caching on the other steps, the feedback strength) for a trained feedback module
// under a budget of block forwards per image (see experiments/search/search_run.h).
// Writes OUT/state.json (resumable: run the same command again), OUT/report.md, OUT/best.json.
//   ilf_search --config configs/fashion_mnist.json --budget-fraction 0.6 --objective fid --out runs/search
// Every flag is bound to a field of SearchRun, whose defaults are the ones --help shows.
#include <CLI/CLI.hpp>
#include <iostream>

#include "ilf/error.h"
#include "ilf/experiments/search/search_run.h"
#include "ilf/sampling/sampler.h"
#include "tool_common.h"

using namespace ilf;

int main(int argc, char** argv) {
  CLI::App app{"ilf_search: the best ILF schedule under a budget of block forwards"};
  SearchRun run;
  app.add_option("--config", run.target.config, "run config with a trained feedback module")->capture_default_str();
  app.add_option("--set", run.target.overrides, "override a config value: key.path=value (repeatable)");
  app.add_option("--model-folder", run.target.model_folder, "text-to-image: model folder with model.json");
  app.add_option("--prompts-file", run.target.prompts_file, "text-to-image: lines \"class<TAB>caption\"");
  app.add_option("--out", run.out, "output folder (state.json, report.md, best.json)")->required()->check(cli::NonEmpty);
  auto* budget = app.add_option("--budget", run.options.budget, "block forwards per image, at most")
                     ->capture_default_str()
                     ->transform(cli::Count);
  app.add_option("--budget-fraction", run.budget_fraction, "budget as a fraction of the reference sampler's block forwards")
      ->excludes(budget)
      ->check(cli::FinitePositive)  // 0 used to mean "not given" and searched the default budget
      ->check(cli::NumberInRange(0, kMaxBudgetFraction));
  // The objective and the lists are text parsed into the fields; a bad one is a usage error naming the flag.
  auto parsed = [&](const std::string& flag, auto& field, auto parse, const std::string& shown, const std::string& help) {
    return app
        .add_option_function<std::string>(
            flag, [&field, flag, parse](const std::string& text) { field = parse(flag, text); }, help)
        ->check(CLI::Validator(
            [flag, parse](std::string& text) {
              try {
                parse(flag, text);
              } catch (const Error& e) {
                return std::string(e.what());
              }
              return std::string();
            },
            "LIST"))
        ->default_str(shown);
  };
  parsed(
      "--objective", run.objective, [](const std::string&, const std::string& text) { return Objective::parse(text); },
      run.objective.text(), "fid, accuracy, psnr, or weights like fid=1,accuracy=0.5");
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
  parsed("--t-post", run.space.t_post_rules, parse_t_post_list, format_t_post_list(run.space.t_post_rules),
         "t_post rules to choose from, comma-separated");
  parsed("--anneal-floors", run.space.anneal_floors, parse_number_list, format_number_list(run.space.anneal_floors),
         "anneal floors to choose from, e.g. 5,10,20 (the paper's: 10)");
  parsed("--anneal-scales", run.space.anneal_scales, parse_number_list, format_number_list(run.space.anneal_scales),
         "anneal scales to choose from, e.g. 0.5,1,1.5");
  parsed("--cache", run.space.cache_modes, parse_cache_mode_list, format_cache_mode_list(run.space.cache_modes),
         "caching on the steps without feedback: none,alternate,outside,forecast (TaylorSeer's forecast, with the "
         "config's taylorseer section)");
  parsed("--strengths", run.space.strengths, parse_number_list, format_number_list(run.space.strengths),
         "feedback strengths (ilf.strength) to choose from, e.g. 1,0.5,0.25");
  app.add_option("--seed", run.options.seed, "seed of the search's own choices")->capture_default_str()->transform(cli::Seed);
  app.add_option("--search-samples", run.search_samples, "samples per candidate")->capture_default_str()->transform(cli::Count);
  app.add_option("--search-seed", run.search_seed, "noise seed of the search set")->capture_default_str()->transform(cli::Seed);
  app.add_option("--heldout-samples", run.heldout_samples, "samples per finalist")->capture_default_str()->transform(cli::Count);
  app.add_option("--heldout-seed", run.heldout_seed, "noise seed of the held-out set")
      ->capture_default_str()
      ->transform(cli::Seed);
  app.add_option("--reference-steps", run.reference_steps, "plain steps of the reference sampler (PSNR, --budget-fraction)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--batch", run.batch, "samples per sampling batch")->capture_default_str()->transform(cli::CountUpTo(kMaxBatch));
  app.add_option("--device", run.device, "cpu, cuda or auto (CUDA when the build and machine have it)")->capture_default_str();
  if (const int code = cli::parse(app, argc, argv, "ilf_search"); code >= 0) return code;
  try {
    const SearchResult result = run_search(run);
    std::cout << search_report_markdown(result, run.objective, run.options);
    if (!result.finalists.empty())
      std::cout << "\nbest: " << result.finalists.front().schedule.key() << "; wrote " << run.out << "/best.json\n";
    return 0;
  } catch (...) {
    return cli::report_error("ilf_search");
  }
}
