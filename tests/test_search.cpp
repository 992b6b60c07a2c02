// Schedule search (ilf_search): the budget is priced exactly by the sampler's plan, a killed search
// resumes into the same result, the search finds a best planted in a toy objective, and the written
// config runs from anywhere. The toy objectives stand in for sampling so those tests take milliseconds;
// one test samples the embedded model to show that a search loads it and judges the reference set once.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <fstream>
#include <set>

#include "ilf/accel/ilf.h"
#include "ilf/accel/registry.h"
#include "ilf/error.h"
#include "ilf/experiments/search/search.h"
#include "ilf/experiments/search/search_run.h"
#include "ilf/feedback/feedback.h"
#include "ilf/models/dit.h"
#include "ilf/pipelines/evaluation.h"
#include "ilf/pipelines/loading.h"
#include "ilf/sampling/dpm_solver.h"
#include "ilf/sampling/sampler.h"
#include "test_helpers.h"

using namespace ilf;
using test::error_of;

namespace {

// A toy problem: schedules cost 6 per step and 4 per feedback step; the score is the distance from a
// planted schedule (9 steps, feedback on 0, 4 and 8, rescale), reported as "fid".
Schedule planted() {
  Schedule s;
  s.steps = 9;
  s.feedback_steps = {0, 4, 8};
  s.t_post = TPostRule::kRescale;
  return s;
}
int64_t toy_cost(const Schedule& s) { return 6 * s.steps + 4 * static_cast<int64_t>(s.feedback_steps.size()); }
nlohmann::json toy_metrics(const Schedule& s) {
  const Schedule p = planted();
  const std::set<int64_t> a(s.feedback_steps.begin(), s.feedback_steps.end()),
      b(p.feedback_steps.begin(), p.feedback_steps.end());
  int64_t differ = 0;
  for (int64_t k : a) differ += !b.count(k);
  for (int64_t k : b) differ += !a.count(k);
  const double d = 3.0 * static_cast<double>(std::abs(s.steps - p.steps)) + 2.0 * static_cast<double>(differ) +
                   (s.t_post != p.t_post ? 1.0 : 0.0);
  return {{"fid", d}, {"class_accuracy", 0.5}, {"num_samples", 1}};
}

SearchSpace toy_space() {
  SearchSpace space;
  space.min_steps = 4;
  space.max_steps = 16;
  return space;
}

SearchOptions toy_options(int64_t evaluations) {
  SearchOptions o;
  o.budget = 70;
  o.evaluations = evaluations;
  o.initial = 4;
  o.finalists = 2;
  o.seed = 7;
  return o;
}

std::vector<std::string> keys(const std::vector<EvaluatedSchedule>& v) {
  std::vector<std::string> k;
  for (const auto& e : v) k.push_back(e.schedule.key());
  return k;
}

// A run config with a tiny DiT (depth 6, loop 2..3) written to `dir`, for the plan and for sampling.
Json tiny_config() {
  return {{"model",
           {{"family", "dit"},
            {"input_size", 8},
            {"patch_size", 2},
            {"in_channels", 4},
            {"hidden_size", 32},
            {"depth", 6},
            {"num_heads", 4},
            {"num_classes", 10},
            {"learn_sigma", false}}},
          {"ilf", {{"loop_begin", 2}, {"loop_end", 3}}},
          {"sampling", {{"guidance_scale", 2.0}}}};
}

// The schedule's overrides with a cache section for ilf_cache's "alternate" mode: 4 inner blocks
// reused on every other step without feedback.
std::vector<std::string> with_cache_section(std::vector<std::string> overrides) {
  overrides.push_back("cache.location=inner");
  overrides.push_back("cache.num_blocks=4");
  overrides.push_back("cache.interval=2");
  return overrides;
}

}  // namespace

TEST(Search, BudgetPricesEveryScheduleByTheBlockForwardsTheSamplerCounts) {
  const std::string dir = test::scratch_dir("search_plan");
  const std::string config = dir + "/tiny.json";
  std::ofstream(config) << tiny_config().dump();
  // The cache section is read by ilf_cache's "alternate" mode only.
  const CostFunction cost = make_plan_cost({config, with_cache_section({}), "", ""});

  torch::manual_seed(3);
  DiTConfig c;
  c.input_size = 8, c.patch_size = 2, c.in_channels = 4, c.hidden_size = 32, c.depth = 6, c.num_heads = 4, c.num_classes = 10;
  auto model = std::make_shared<DiTImpl>(c);
  model->eval();
  FeedbackModule feedback(*model, FeedbackOptions{2, 3, FeedbackInit::kCopyLoopEnd});
  const torch::Tensor x_T = torch::randn({2, 4, 8, 8});
  ConditionInputs in;
  in.class_labels = torch::tensor({1, 5}, torch::kInt64);
  const ConditionInputs null = model->null_condition(in);

  std::vector<Schedule> schedules(6);
  schedules[0].steps = 5;                                           // plain
  schedules[1].steps = 7, schedules[1].feedback_steps = {0, 3, 6};  // 3 feedback steps
  schedules[2].steps = 4, schedules[2].feedback_steps = {0, 1, 2, 3}, schedules[2].t_post = TPostRule::kUniform;
  schedules[3].steps = 9, schedules[3].feedback_steps = {8};
  // Caching the blocks outside the loop on feedback steps after a plain one, with tuned anneal parameters.
  schedules[4].steps = 6, schedules[4].feedback_steps = {1, 4}, schedules[4].cache = "outside";
  schedules[4].anneal = AnnealParams{20.0, 0.5};
  schedules[5].steps = 6, schedules[5].feedback_steps = {0}, schedules[5].cache = "alternate";
  for (const Schedule& s : schedules) {
    const RunConfig rc = load_tool_config(config, with_cache_section(s.overrides())).config;
    const AccelerationMethodPtr method = make_acceleration_method(rc, feedback.get());
    DPMSolverMultistep solver;
    const SamplingResult r = sample(*model, *method, solver, rc.sampling.options, x_T, in, null);
    EXPECT_EQ(cost(s), r.block_forwards) << s.key();
    if (s.cache.empty()) {  // N per plain step, N + m + 1 per feedback step (m = 2).
      EXPECT_EQ(cost(s), 6 * s.steps + 3 * static_cast<int64_t>(s.feedback_steps.size())) << s.key();
    }
  }
  // outside: steps 0, 2, 3, 5 plain (6 each), step 1 and 4 after a plain step run the loop twice and F (2m + 1 = 5).
  EXPECT_EQ(cost(schedules[4]), 4 * 6 + 2 * 5);
  // alternate with the cache section (4 inner blocks reused on every other plain step): feedback step 0
  // (6 + 3), then plain steps q = 0..4: full, reuse, full, reuse, full (6, 2, 6, 2, 6).
  EXPECT_EQ(cost(schedules[5]), 9 + 6 + 2 + 6 + 2 + 6);
  const RunConfig tuned = load_tool_config(config, schedules[4].overrides()).config;
  const nlohmann::json settings = make_acceleration_method(tuned, nullptr)->settings();
  EXPECT_EQ(settings.at("mode"), "outside");
  EXPECT_EQ(settings.at("ilf").at("anneal"), nlohmann::json({{"floor", 20.0}, {"scale", 0.5}})) << settings.dump();

  // Nothing over the budget is ever evaluated, and a budget below every schedule evaluates nothing.
  SearchOptions o = toy_options(30);
  o.budget = 50;
  const SearchResult r = run_schedule_search(toy_space(), o, Objective{}, cost, toy_metrics, toy_metrics, dir + "/state.json");
  ASSERT_EQ(r.candidates.size(), 30u);
  for (const auto& e : r.candidates) {
    EXPECT_LE(e.block_forwards, 50) << e.schedule.key();
    EXPECT_EQ(e.block_forwards, cost(e.schedule)) << e.schedule.key();
  }
  o.budget = 6 * 4 - 1;  // less than 4 plain steps
  int evaluated = 0;
  auto counting = [&](const Schedule& s) {
    ++evaluated;
    return toy_metrics(s);
  };
  EXPECT_THROW(run_schedule_search(toy_space(), o, Objective{}, cost, counting, counting, dir + "/none.json"), Error);
  EXPECT_EQ(evaluated, 0);
}

TEST(Search, FindsTheBestPlantedInAToyObjective) {
  const std::string dir = test::scratch_dir("search_planted");
  // The planted schedule is not one of the structured starting points: the mutations must find it.
  for (const Schedule& s : seed_schedules(toy_space(), 70, toy_cost)) EXPECT_NE(s.key(), planted().key());
  SearchResult r;
  for (uint64_t seed = 0; seed < 6; ++seed) {  // with 80 of the space's thousands of schedules, for every seed
    SearchOptions o = toy_options(80);
    o.seed = seed;
    r = run_schedule_search(toy_space(), o, Objective{}, toy_cost, toy_metrics, toy_metrics,
                            dir + "/state" + std::to_string(seed) + ".json");
    ASSERT_FALSE(r.finalists.empty());
    EXPECT_EQ(r.finalists.front().schedule.key(), planted().key()) << "seed " << seed;
    EXPECT_EQ(r.finalists.front().score, 0) << "seed " << seed;
  }
  // The front is sorted by cost and strictly improving.
  const auto front = pareto_front(r.candidates);
  for (size_t i = 1; i < front.size(); ++i) {
    EXPECT_GT(front[i].block_forwards, front[i - 1].block_forwards);
    EXPECT_LT(front[i].score, front[i - 1].score);
  }
}

TEST(Search, FindsPlantedAnnealParametersCachingAndStrengthWhenTheSpaceOffersThem) {
  const std::string dir = test::scratch_dir("search_planted_settings");
  SearchSpace space = toy_space();
  space.anneal_floors = {5, 10, 20};
  space.anneal_scales = {0.5, 1, 2};
  space.cache_modes = {"", "outside"};
  space.strengths = {1, 0.5, 0.25};
  // The planted schedule of the toy problem with anneal, floor 20, scale 0.5, caching outside the loop
  // and the feedback at half strength.
  Schedule best = planted();
  best.t_post = TPostRule::kAnneal, best.anneal = AnnealParams{20.0, 0.5}, best.cache = "outside", best.strength = 0.5;
  auto metrics = [&](const Schedule& s) {
    Schedule same_rule = s;  // the toy distance in steps and feedback steps, then one per other setting
    same_rule.t_post = planted().t_post;
    nlohmann::json m = toy_metrics(same_rule);
    m["fid"] = m["fid"].get<double>() + (s.t_post != TPostRule::kAnneal) + (s.anneal.floor != 20.0) + (s.anneal.scale != 0.5) +
               (s.cache != "outside") + (s.strength != 0.5);
    return m;
  };
  ASSERT_EQ(metrics(best)["fid"].get<double>(), 0.0);
  for (uint64_t seed = 0; seed < 4; ++seed) {
    SearchOptions o = toy_options(200);
    o.seed = seed;
    const SearchResult r =
        run_schedule_search(space, o, Objective{}, toy_cost, metrics, metrics, dir + "/state" + std::to_string(seed) + ".json");
    ASSERT_FALSE(r.finalists.empty());
    EXPECT_EQ(r.finalists.front().schedule.key(), best.key()) << "seed " << seed;
    // Everything evaluated is in the space.
    for (const auto& e : r.candidates) {
      const Schedule& s = e.schedule;
      if (s.t_post == TPostRule::kAnneal) {
        EXPECT_NE(std::find(space.anneal_floors.begin(), space.anneal_floors.end(), s.anneal.floor), space.anneal_floors.end());
        EXPECT_NE(std::find(space.anneal_scales.begin(), space.anneal_scales.end(), s.anneal.scale), space.anneal_scales.end());
      } else {
        EXPECT_TRUE(s.anneal.is_default()) << s.key();
      }
      EXPECT_NE(std::find(space.strengths.begin(), space.strengths.end(), s.strength), space.strengths.end()) << s.key();
      if (s.feedback_steps.empty()) {
        EXPECT_EQ(s.cache, "") << s.key();
        EXPECT_EQ(s.strength, 1.0) << s.key();
      }
    }
  }
  // The schedule's JSON round-trips; a schedule with the paper's settings writes them as before.
  EXPECT_EQ(Schedule::from_json(best.to_json()).key(), best.key());
  EXPECT_EQ(best.key(), "9 steps, feedback 0,4,8, anneal (floor 20, scale 0.5), cache outside, strength 0.5");
  EXPECT_FALSE(planted().to_json().contains("anneal"));
  EXPECT_FALSE(planted().to_json().contains("cache"));
  EXPECT_FALSE(planted().to_json().contains("strength"));
  // The strength is always set, so that a config's own strength does not leak into the search.
  const auto overrides = planted().overrides();
  EXPECT_NE(std::find(overrides.begin(), overrides.end(), "ilf.strength=1.0"), overrides.end());
  // The flags' lists are checked, naming the flag.
  EXPECT_EQ(parse_number_list("--anneal-floors", "5,10,20"), std::vector<double>({5, 10, 20}));
  EXPECT_EQ(parse_cache_mode_list("--cache", "none,outside"), std::vector<std::string>({"", "outside"}));
  EXPECT_EQ(parse_cache_mode_list("--cache", "forecast"), std::vector<std::string>({"forecast"}));
  for (const auto& [flag, bad] : std::vector<std::pair<std::string, std::string>>{{"--anneal-floors", "5,x"},
                                                                                  {"--anneal-scales", "-1"},
                                                                                  {"--anneal-floors", "1e999"},
                                                                                  {"--cache", "inside"},
                                                                                  {"--strengths", "0.5,-1"}}) {
    const std::string message = error_of([&] {
      if (flag == "--cache")
        parse_cache_mode_list(flag, bad);
      else
        parse_number_list(flag, bad);
    });
    EXPECT_NE(message.find(flag), std::string::npos) << message;
  }
  EXPECT_NE(error_of([] { parse_t_post_list("--t-post", "none,anneel"); }).find("--t-post"), std::string::npos);
}

TEST(Search, SchedulesThatSampleAlikeShareAPlanSignatureAndOnlyOneIsEvaluated) {
  const std::string dir = test::scratch_dir("search_signature");
  const std::string config = dir + "/tiny.json";
  std::ofstream(config) << tiny_config().dump();
  const SignatureFunction signature = make_plan_signature({config, {}, "", ""});
  Schedule a;  // feedback on the first two steps: nothing before them to reuse, so "outside" changes nothing
  a.steps = 7, a.feedback_steps = {0, 1};
  Schedule outside = a;
  outside.cache = "outside";
  Schedule high_floor = a;  // step 0 uses rescale, and step 1's annealed shift is far above a floor of 20
  high_floor.anneal = AnnealParams{20.0, 1.0};
  EXPECT_EQ(signature(outside), signature(a));
  EXPECT_EQ(signature(high_floor), signature(a));
  Schedule later = outside;  // feedback on step 3 after plain steps: "outside" reuses blocks there
  later.feedback_steps = {0, 3};
  Schedule later_plain = later;
  later_plain.cache = "";
  EXPECT_NE(signature(later), signature(later_plain));
  Schedule scaled = a;  // a scale that changes step 1's t_post
  scaled.anneal = AnnealParams{10.0, 0.5};
  EXPECT_NE(signature(scaled), signature(a));
  Schedule weaker = a;  // the same plan, with less feedback in both feedback steps
  weaker.strength = 0.5;
  EXPECT_NE(signature(weaker), signature(a));

  // In a search, a schedule whose signature was evaluated is not proposed: here the cache mode is
  // declared irrelevant, so no two candidates differ by it alone.
  SearchSpace space = toy_space();
  space.cache_modes = {"", "outside"};
  auto toy_signature = [](const Schedule& s) {
    Schedule t = s;
    t.cache.clear();
    return t.key();
  };
  const SearchResult r = run_schedule_search(space, toy_options(60), Objective{}, toy_cost, toy_metrics, toy_metrics,
                                             dir + "/state.json", toy_signature);
  std::set<std::string> seen;
  for (const auto& e : r.candidates) EXPECT_TRUE(seen.insert(toy_signature(e.schedule)).second) << e.schedule.key();
  EXPECT_EQ(r.candidates.size(), 60u);
}

TEST(Search, AKilledSearchResumesIntoTheSameResult) {
  const std::string dir = test::scratch_dir("search_resume");
  const SearchResult whole =
      run_schedule_search(toy_space(), toy_options(25), Objective{}, toy_cost, toy_metrics, toy_metrics, dir + "/whole.json");
  // A child process is killed (SIGKILL) in its 11th evaluation; its state holds the first 10.
  const std::string state = dir + "/killed.json";
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    int calls = 0;
    auto dies = [&](const Schedule& s) {
      if (++calls == 11) raise(SIGKILL);
      return toy_metrics(s);
    };
    run_schedule_search(toy_space(), toy_options(25), Objective{}, toy_cost, dies, dies, state);
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  int calls = 0;
  auto counting = [&](const Schedule& s) {
    ++calls;
    return toy_metrics(s);
  };
  const SearchResult resumed =
      run_schedule_search(toy_space(), toy_options(25), Objective{}, toy_cost, counting, counting, state);
  EXPECT_EQ(keys(resumed.candidates), keys(whole.candidates));
  EXPECT_EQ(keys(resumed.finalists), keys(whole.finalists));
  EXPECT_EQ(calls, 15 + 2);  // the 15 candidates left and the 2 finalists
  // Run again: everything is done, nothing is evaluated.
  calls = 0;
  run_schedule_search(toy_space(), toy_options(25), Objective{}, toy_cost, counting, counting, state);
  EXPECT_EQ(calls, 0);
  // Other settings refuse the state file, naming it.
  SearchOptions other = toy_options(25);
  other.budget = 60;
  try {
    run_schedule_search(toy_space(), other, Objective{}, toy_cost, counting, counting, state);
    FAIL() << "a state of other settings was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("killed.json"), std::string::npos) << e.what();
  }
}

TEST(Search, ObjectivesParseAndScoreAndBadOnesAreNamed) {
  const nlohmann::json m = {{"fid", 40.0}, {"class_accuracy", 0.85}, {"psnr_vs_reference", 30.0}};
  EXPECT_DOUBLE_EQ(Objective::parse("fid").score(m), 40.0);
  EXPECT_DOUBLE_EQ(Objective::parse("accuracy").score(m), -85.0);
  EXPECT_DOUBLE_EQ(Objective::parse("fid=1,accuracy=0.5,psnr=0.1").score(m), 40.0 - 42.5 - 3.0);
  EXPECT_EQ(Objective::parse("fid=1,accuracy=0.5").describe(), "FID - 0.5*accuracy%");
  EXPECT_THROW(Objective::parse("fid=x"), Error);
  EXPECT_THROW(Objective::parse("speed=1"), Error);
  EXPECT_THROW(Objective::parse("fid=0"), Error);
  EXPECT_THROW(Objective::parse("psnr").score({{"fid", 1.0}}), Error);
}

TEST(Search, TheBestConfigRunsFromAnotherFolderWithTheSchedule) {
  const std::string dir = test::scratch_dir("search_best_config");
  Schedule s;
  s.steps = 11;
  s.feedback_steps = {0, 10};
  const SearchTarget target{std::string(ILF_SOURCE_DIR) + "/configs/fashion_mnist.json", {}, "", ""};
  write_schedule_config(target, s, dir + "/nested/best.json");
  const RunConfig rc = load_run_config(dir + "/nested/best.json", {});
  EXPECT_TRUE(std::filesystem::exists(rc.weights)) << rc.weights;
  EXPECT_TRUE(std::filesystem::exists(rc.ilf.weights)) << rc.ilf.weights;
  EXPECT_EQ(rc.sampling.method, "ilf");
  EXPECT_EQ(rc.sampling.options.steps, 11);
  EXPECT_EQ(plan_run(rc).at("total_block_forwards").get<int64_t>(), 9 * 12 + 2 * (12 + 4 + 1));
}

TEST(Search, TheDefaultConfigIsThePapersModelWithTheSearchedSchedule) {
  // configs/fashion_mnist.json samples with the schedule ilf_search chose (11 steps, feedback on steps 2
  // and 9 written as [2, -2], a quarter of the feedback); configs/fashion_mnist_paper.json keeps the
  // paper's. The two differ only there.
  const std::string dir = std::string(ILF_SOURCE_DIR) + "/configs/";
  Json expected = read_run_config_json(dir + "fashion_mnist_paper.json", {});
  for (const std::string o :
       {"sampling.steps=11", R"(ilf.feedback_steps={"mode": "list", "steps": [2, -2]})", "ilf.strength=0.25"})
    apply_override(expected, o);
  Json actual = read_run_config_json(dir + "fashion_mnist.json", {});
  actual.erase("training");
  actual.erase("data");
  EXPECT_EQ(actual, expected) << actual.dump() << "\n" << expected.dump();

  const RunConfig rc = load_run_config(dir + "fashion_mnist.json", {});
  const auto& ilf = settings_as<IlfSettings>(*rc.methods.at("ilf"), "ilf");
  std::vector<int64_t> feedback;
  for (int64_t k = 0; k < rc.sampling.options.steps; ++k)
    if (ilf.feedback_steps.uses_feedback(k, rc.sampling.options.steps)) feedback.push_back(k);
  EXPECT_EQ(feedback, (std::vector<int64_t>{2, 9}));
  EXPECT_EQ(ilf.strength, 0.25);
  EXPECT_EQ(plan_run(rc).at("total_block_forwards").get<int64_t>(), 142);
  const RunConfig paper = load_run_config(dir + "fashion_mnist_paper.json", {});
  EXPECT_TRUE(std::filesystem::exists(paper.ilf.weights)) << paper.ilf.weights;
  EXPECT_EQ(plan_run(paper).at("total_block_forwards").get<int64_t>(), 140);
}

TEST(Search, TheModelIsLoadedOnceAndTheReferenceJudgedOnceWithTheMetricsOfEvaluatingFromScratch) {
  // Three schedules of the embedded model (plain; feedback at half strength; feedback with caching
  // outside the loop) through one SearchModel: it loads once and judges the 10,000 reference images
  // once. The last one, evaluated by a model that served two others, is also evaluated from scratch as
  // ilf_eval evaluates a config: every metric but the timing is the same.
  const SearchTarget target{std::string(ILF_SOURCE_DIR) + "/configs/fashion_mnist.json", {}, "", ""};
  std::vector<Schedule> schedules(3);
  schedules[0].steps = 4;
  schedules[1].steps = 5, schedules[1].feedback_steps = {0, 4}, schedules[1].strength = 0.5;
  schedules[2].steps = 6, schedules[2].feedback_steps = {1, 4}, schedules[2].cache = "outside";
  EvalRequest request;
  request.num_samples = 6, request.batch = 4, request.seed = 11;
  SearchModel model(target, "cpu");
  EXPECT_EQ(model.model_loads(), 0);
  std::vector<nlohmann::json> shared;
  for (const Schedule& s : schedules) shared.push_back(model.evaluate(s, request));
  EXPECT_EQ(model.model_loads(), 1);
  EXPECT_EQ(model.reference_judgements(), 1);
  const RunConfig config = load_tool_config(target.config, schedules[2].overrides()).config;
  nlohmann::json scratch = evaluate_class_to_image(config, request), reused = shared[2];
  scratch.erase("seconds_per_image");
  reused.erase("seconds_per_image");
  EXPECT_EQ(reused, scratch);
  EXPECT_EQ(reused.at("settings").at("method"), "ilf_cache");
  EXPECT_EQ(shared[1].at("settings").at("ilf").at("strength"), 0.5) << shared[1].dump();
  EXPECT_NE(shared[1].at("fid"), shared[2].at("fid"));  // the schedules sampled differently
  EvalRequest elsewhere = request;
  elsewhere.device = "cuda";
  EXPECT_THROW(model.evaluate(schedules[0], elsewhere), Error);
}

TEST(Search, TheDefaultsShownByTheToolParseBackIntoThemselves) {
  // ilf_search shows SearchRun's defaults in --help through these functions; each must read back as
  // what it shows.
  const SearchSpace space;
  EXPECT_EQ(format_t_post_list(space.t_post_rules), "none,uniform,rescale,anneal");
  EXPECT_EQ(parse_t_post_list("--t-post", format_t_post_list(space.t_post_rules)), space.t_post_rules);
  EXPECT_EQ(format_cache_mode_list({"", "outside"}), "none,outside");
  EXPECT_EQ(parse_cache_mode_list("--cache", "none,outside"), (std::vector<std::string>{"", "outside"}));
  EXPECT_EQ(format_number_list({10.0, 0.25, 1.5}), "10,0.25,1.5");
  EXPECT_EQ(parse_number_list("--strengths", format_number_list({10.0, 0.25, 1.5})), (std::vector<double>{10.0, 0.25, 1.5}));
  for (const std::string text : {"fid", "accuracy", "psnr", "fid=1,accuracy=0.5", "accuracy=2,psnr=0.25"}) {
    const Objective o = Objective::parse(text);
    EXPECT_EQ(o.text(), text);
  }
  EXPECT_EQ(SearchRun{}.objective.text(), "fid");
}
