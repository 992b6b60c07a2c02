// The prompt-set readers (pipelines/prompt_sets.h) on each benchmark's format, their errors (file and
// line or key named, empty sets refused), and the small pure parts of the prompt-set evaluation: the
// shard from flags and launcher variables, the "metrics" config section and the Table 1 row's format.
// The evaluation itself runs end to end in tests/prompt_eval_test.sh.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "ilf/config/run_config.h"
#include "ilf/pipelines/prompt_set_evaluation.h"
#include "ilf/pipelines/prompt_sets.h"
#include "test_helpers.h"

namespace ilf {
namespace {

std::string write_prompt_file(const std::string& dir, const std::string& name, const std::string& text) {
  const std::string path = dir + "/" + name;
  std::ofstream(path, std::ios::binary) << text;
  return path;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(PromptSets, PlainTextHasOnePromptPerLineAndSkipsBlankLines) {
  const std::string dir = test::scratch_dir("prompt_sets_text");
  const std::string path = write_prompt_file(dir, "p.txt",
                                             "\xEF\xBB\xBF"
                                             "a red bag\r\n\n   \nan ankle boot, side view\n  leading space kept");
  const PromptSet set = read_prompt_set(path);
  EXPECT_EQ(set.format, PromptSetFormat::kText);
  ASSERT_EQ(set.items.size(), 3u);
  EXPECT_EQ(set.items[0].prompt, "a red bag");
  EXPECT_EQ(set.items[0].id, "1");
  EXPECT_EQ(set.items[1].prompt, "an ankle boot, side view");
  EXPECT_EQ(set.items[1].id, "4");  // the line number
  EXPECT_EQ(set.items[2].prompt, "  leading space kept");
  EXPECT_EQ(set.items[2].category, "");
}

TEST(PromptSets, MjhqMetaDataKeepsIdsAndCategoriesInIdOrder) {
  const std::string dir = test::scratch_dir("prompt_sets_mjhq");
  const std::string path = write_prompt_file(dir, "meta_data.json",
                                             R"({"f00d": {"category": "food", "prompt": "a bowl of ramen"},
          "0a1b": {"category": "people", "prompt": "a portrait, \"soft\" light"},
          "77ee": {"category": "animals", "prompt": "a corgi"}})");
  const PromptSet set = read_prompt_set(path);
  EXPECT_EQ(set.format, PromptSetFormat::kMjhq);
  ASSERT_EQ(set.items.size(), 3u);
  EXPECT_EQ(set.items[0].id, "0a1b");
  EXPECT_EQ(set.items[0].category, "people");
  EXPECT_EQ(set.items[0].prompt, "a portrait, \"soft\" light");
  EXPECT_EQ(set.items[1].id, "77ee");
  EXPECT_EQ(set.items[2].id, "f00d");
  EXPECT_EQ(set.items[2].category, "food");
}

TEST(PromptSets, DrawBenchCsvReadsQuotedFieldsWithCommasQuotesAndNewlines) {
  const std::string dir = test::scratch_dir("prompt_sets_drawbench");
  const std::string path = write_prompt_file(dir, "drawbench.csv",
                                             "Prompts,Category\r\n"
                                             "A red colored car.,Colors\r\n"
                                             "\"A sign that says \"\"Hello, World\"\".\",Text\r\n"
                                             "\"two\nlines\",Misc\r\n"
                                             "\r\n"
                                             "A plain one,Counting");
  const PromptSet set = read_prompt_set(path);
  EXPECT_EQ(set.format, PromptSetFormat::kDrawBench);
  ASSERT_EQ(set.items.size(), 4u);
  EXPECT_EQ(set.items[0].prompt, "A red colored car.");
  EXPECT_EQ(set.items[0].category, "Colors");
  EXPECT_EQ(set.items[0].id, "1");
  EXPECT_EQ(set.items[1].prompt, "A sign that says \"Hello, World\".");
  EXPECT_EQ(set.items[1].category, "Text");
  EXPECT_EQ(set.items[2].prompt, "two\nlines");
  EXPECT_EQ(set.items[3].prompt, "A plain one");
  EXPECT_EQ(set.items[3].category, "Counting");
}

TEST(PromptSets, ImageRewardBenchmarkJsonIsAListOfIdsAndPrompts) {
  const std::string dir = test::scratch_dir("prompt_sets_image_reward");
  const std::string path = write_prompt_file(
      dir, "benchmark-prompts.json", R"([{"id": "000864-0061", "prompt": "a cat"}, {"id": 17, "prompt": "a dog", "extra": 1}])");
  const PromptSet set = read_prompt_set(path);
  EXPECT_EQ(set.format, PromptSetFormat::kImageReward);
  ASSERT_EQ(set.items.size(), 2u);
  EXPECT_EQ(set.items[0].id, "000864-0061");
  EXPECT_EQ(set.items[1].id, "17");
  EXPECT_EQ(set.items[1].prompt, "a dog");
  // The format can be forced: the same file read as plain text is two lines of JSON... one line here.
  EXPECT_EQ(read_prompt_set(path, PromptSetFormat::kText).items.size(), 1u);
  EXPECT_EQ(parse_prompt_set_format("drawbench"), PromptSetFormat::kDrawBench);
  EXPECT_TRUE(contains(test::error_of([] { parse_prompt_set_format("coco"); }), "expected auto, text"));
}

TEST(PromptSets, ErrorsNameTheFileAndTheLineOrKey) {
  const std::string dir = test::scratch_dir("prompt_sets_errors");
  auto error = [&](const std::string& name, const std::string& text) {
    return test::error_of([&] { read_prompt_set(write_prompt_file(dir, name, text)); });
  };
  std::string e = error("unclosed.csv", "Prompts,Category\nok,A\n\"never closed,B\n");
  EXPECT_TRUE(contains(e, "unclosed.csv: line 3")) << e;
  e = error("fields.csv", "Prompts,Category\nok,A\ntoo,many,fields\n");
  EXPECT_TRUE(contains(e, "fields.csv: line 3")) << e;
  e = error("header.csv", "Text,Kind\na,b\n");
  EXPECT_TRUE(contains(e, "header.csv: line 1")) << e;
  EXPECT_TRUE(contains(e, "\"Prompts\"")) << e;
  e = error("empty_prompt.csv", "Prompts,Category\n,A\n");
  EXPECT_TRUE(contains(e, "empty_prompt.csv: line 2: empty prompt")) << e;
  e = error("mjhq.json", R"({"abc": {"category": "food"}})");
  EXPECT_TRUE(contains(e, "mjhq.json: key \"abc\": missing \"prompt\"")) << e;
  e = error("mjhq2.json", R"({"abc": {"category": "food", "prompt": 3.5}})");
  EXPECT_TRUE(contains(e, "mjhq2.json: key \"abc\": \"prompt\" must be a string")) << e;
  e = error("ir.json", R"([{"id": "1", "prompt": "x"}, {"prompt": "y"}])");
  EXPECT_TRUE(contains(e, "ir.json: item 1: missing \"id\"")) << e;
  e = error("bad.json", "{\"a\": ");
  EXPECT_TRUE(contains(e, "bad.json: not valid JSON")) << e;
  e = error("scalar.json", "42");
  EXPECT_TRUE(contains(e, "scalar.json")) << e;
  e = test::error_of([&] { read_prompt_set(dir + "/absent.txt"); });
  EXPECT_TRUE(contains(e, "absent.txt: prompt set does not exist")) << e;
}

TEST(PromptSets, AnEmptySetIsAnErrorInEveryFormat) {
  const std::string dir = test::scratch_dir("prompt_sets_empty");
  for (const auto& [name, text] : std::map<std::string, std::string>{{"empty.txt", "\n  \n\r\n"},
                                                                     {"empty.csv", "Prompts,Category\n"},
                                                                     {"empty_mjhq.json", "{}"},
                                                                     {"empty_ir.json", "[]"}}) {
    const std::string e = test::error_of([&] { read_prompt_set(write_prompt_file(dir, name, text)); });
    EXPECT_TRUE(contains(e, name + ": the prompt set has no prompts")) << name << ": " << e;
  }
}

TEST(PromptSetEvaluation, TheShardComesFromFlagsTorchrunSlurmArraysOrSlurm) {
  auto env = [](std::map<std::string, std::string> vars) {
    return [vars](const std::string& name) -> std::optional<std::string> {
      const auto it = vars.find(name);
      if (it == vars.end()) return std::nullopt;
      return it->second;
    };
  };
  EvalShard s = eval_shard(std::nullopt, std::nullopt, env({}));
  EXPECT_EQ(s.world_size, 1);
  EXPECT_EQ(s.launcher, "single");
  s = eval_shard(1, 3, env({{"RANK", "0"}, {"WORLD_SIZE", "8"}}));  // flags win
  EXPECT_EQ(s.rank, 1);
  EXPECT_EQ(s.world_size, 3);
  s = eval_shard(std::nullopt, std::nullopt,
                 env({{"RANK", "5"}, {"WORLD_SIZE", "8"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}}));
  EXPECT_EQ(s.rank, 5);
  EXPECT_EQ(s.launcher, "torchrun");
  s = eval_shard(std::nullopt, std::nullopt,
                 env({{"SLURM_ARRAY_TASK_ID", "12"},
                      {"SLURM_ARRAY_TASK_MIN", "10"},
                      {"SLURM_ARRAY_TASK_COUNT", "4"},
                      {"SLURM_PROCID", "0"},
                      {"SLURM_NTASKS", "1"}}));
  EXPECT_EQ(s.rank, 2);
  EXPECT_EQ(s.world_size, 4);
  EXPECT_EQ(s.launcher, "slurm_array");
  s = eval_shard(
      std::nullopt, std::nullopt,
      env({{"SLURM_ARRAY_TASK_ID", "1"}, {"SLURM_ARRAY_TASK_COUNT", "2"}, {"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}}));
  EXPECT_EQ(s.rank, 3);  // array task 1 of 2, task 1 of 2 within it
  EXPECT_EQ(s.world_size, 4);
  s = eval_shard(std::nullopt, std::nullopt, env({{"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "4"}}));
  EXPECT_EQ(s.rank, 3);
  EXPECT_EQ(s.launcher, "slurm");
  EXPECT_TRUE(contains(test::error_of([&] { eval_shard(2, 2, env({})); }), "rank 2 outside [0, 2)"));
  EXPECT_TRUE(contains(test::error_of([&] { eval_shard(1, std::nullopt, env({})); }), "--rank and --world-size"));
  EXPECT_TRUE(contains(test::error_of([&] {
                         eval_shard(std::nullopt, std::nullopt, env({{"RANK", "x"}, {"WORLD_SIZE", "2"}}));
                       }),
                       "RANK must be an integer"));
}

TEST(PromptSetEvaluation, TheMetricsSectionResolvesPathsAndRefusesUnknownKeysAndHalfPairs) {
  const std::string dir = test::scratch_dir("prompt_sets_metrics_section");
  std::filesystem::create_directories(dir + "/clip_tiny_here");
  const RunConfig c = parse_run_config(
      nlohmann::json::parse(R"({"metrics": {"clip": "clip_tiny_here", "lpips": "/abs/l.safetensors"}})"), dir + "/x.json");
  EXPECT_EQ(c.metrics.clip, dir + "/clip_tiny_here");  // beside the config, like every file key
  EXPECT_EQ(c.metrics.lpips, "/abs/l.safetensors");
  EXPECT_EQ(c.metrics.image_reward, "");
  auto error = [](const std::string& json) {
    return test::error_of([&] { parse_run_config(nlohmann::json::parse(json), "c.json"); });
  };
  EXPECT_TRUE(contains(error(R"({"metrics": {"clip_model": "x"}})"), "metrics.clip_model"))
      << error(R"({"metrics": {"clip_model": "x"}})");
  EXPECT_TRUE(contains(error(R"({"metrics": {"image_reward": "ir.pt"}})"), "metrics.image_reward_vocab"));
  EXPECT_TRUE(contains(error(R"({"metrics": {"inception": "i.pt"}})"), "metrics.fid_statistics"));
}

TEST(PromptSetEvaluation, TheTableRowHasTableOnesColumnsAndDashesForMissingMetrics) {
  const nlohmann::json merged = {{"label", "ILF-10"},
                                 {"means", {{"seconds_per_image", 0.25}, {"block_forwards", 140}, {"clip_score", 31.234}}},
                                 {"fid", nullptr},
                                 {"reference", "baseline-20"}};
  const std::string table = table1_markdown(merged);
  EXPECT_EQ(
      table,
      "| setting | s/img | block forwards | ImageReward | CLIP | FID | CLIP-IQA Good | Noisy | Colorful | Natural | LPIPS | "
      "SSIM | PSNR (vs baseline-20) |\n"
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
      "| ILF-10 | 0.250 | 140 | — | 31.23 | — | — | — | — | — | — | — | — |\n");
}

}  // namespace
}  // namespace ilf
