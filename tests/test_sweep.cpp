// Tests for ablation sweeps (include/ilf/experiments/sweep/sweep.h): sweep-file validation naming the bad axis or
// key, grid and zip expansion, block-forward estimates (the paper's counts), shared trainings, sbatch
// scripts, local runs with fake stage commands that resume after failures and interruptions, and the
// collected tables.
#include <gtest/gtest.h>

#include <sys/wait.h>

#include <csignal>
#include <cstdlib>
#include <functional>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "ilf/error.h"
#include "ilf/experiments/sweep/sweep.h"
#include "test_helpers.h"

namespace fs = std::filesystem;
using ilf::Json;
using ilf::test::error_of;

namespace {

void write_text(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> read_lines(const fs::path& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

// A DiT-XL-sized config (depth 28, the paper's block-forward accounting) that no test loads weights for.
Json base_config() {
  return Json::parse(R"({
    "model": {"family": "dit", "input_size": 32, "patch_size": 2, "in_channels": 4, "hidden_size": 1152, "depth": 28,
              "num_heads": 16, "num_classes": 1000, "learn_sigma": true},
    "weights": "weights/none.safetensors",
    "ilf": {"loop_begin": 8, "loop_end": 19, "t_post": "rescale"},
    "sampling": {"method": "ilf", "steps": 12},
    "training": {"mode": "ilf", "steps": 100, "lr": 1e-5}
  })");
}

// Writes base.json and sweep.json into `dir` (output under dir/out) and returns the sweep path.
std::string write_sweep(const std::string& dir, Json sweep) {
  write_text(fs::path(dir) / "base.json", base_config().dump(2));
  if (!sweep.contains("base_config")) sweep["base_config"] = (fs::path(dir) / "base.json").string();
  if (!sweep.contains("output")) sweep["output"] = (fs::path(dir) / "out").string();
  const std::string path = (fs::path(dir) / "sweep.json").string();
  write_text(path, sweep.dump(2));
  return path;
}

Json loop_sweep() {
  return Json::parse(R"({
    "name": "loops",
    "axes": [
      {"zip": {"ilf.loop_begin": [0, 8], "ilf.loop_end": [5, 19]}},
      {"key": "ilf.t_post", "values": ["none", "uniform", "rescale"], "train": false}
    ],
    "stages": ["train", "eval"]
  })");
}

std::string expansion_error(const std::string& dir, const Json& sweep) {
  const std::string path = write_sweep(dir, sweep);
  return error_of([&] { ilf::expand_sweep(ilf::load_sweep(path)); });
}

}  // namespace

TEST(SweepFile, GridAxesMultiplyAndZipAxesAdvanceTogether) {
  const std::string dir = ilf::test::scratch_dir("sweep_expand");
  const ilf::SweepSpec spec = ilf::load_sweep(write_sweep(dir, loop_sweep()));
  ASSERT_EQ(spec.axes.size(), 2u);
  EXPECT_EQ(spec.axes[0].keys, (std::vector<std::string>{"ilf.loop_begin", "ilf.loop_end"}));
  const auto points = ilf::expand_sweep(spec);
  ASSERT_EQ(points.size(), 6u);  // 2 zipped loops x 3 t_post rules
  // The first axis varies slowest; zipped keys never mix (0 goes with 5, 8 with 19).
  EXPECT_EQ(points[0].id, "p000_ilf.loop_begin=0_ilf.loop_end=5_ilf.t_post=none");
  EXPECT_EQ(points[2].id, "p002_ilf.loop_begin=0_ilf.loop_end=5_ilf.t_post=rescale");
  EXPECT_EQ(points[3].id, "p003_ilf.loop_begin=8_ilf.loop_end=19_ilf.t_post=none");
  for (const auto& p : points) {
    const int64_t begin = p.config["ilf"]["loop_begin"].get<int64_t>();
    EXPECT_EQ(p.config["ilf"]["loop_end"].get<int64_t>(), begin == 0 ? 5 : 19);
    EXPECT_EQ(p.config["sampling"]["steps"], 12);  // untouched base settings stay
  }
  // Ids are stable: expanding again gives the same folders.
  const auto again = ilf::expand_sweep(ilf::load_sweep(spec.source));
  for (size_t i = 0; i < points.size(); ++i) EXPECT_EQ(again[i].id, points[i].id);
}

TEST(SweepFile, AxesMarkedTrainFalseShareOneTrainingRun) {
  const std::string dir = ilf::test::scratch_dir("sweep_shared_training");
  const ilf::SweepSpec spec = ilf::load_sweep(write_sweep(dir, loop_sweep()));
  const auto points = ilf::expand_sweep(spec);
  EXPECT_EQ(points[0].train_id, points[1].train_id);
  EXPECT_EQ(points[0].train_id, points[2].train_id);
  EXPECT_NE(points[0].train_id, points[3].train_id);
  EXPECT_EQ(points[3].train_id, "t001_ilf.loop_begin=8_ilf.loop_end=19");
  EXPECT_EQ(points[4].train_overrides, (std::vector<std::string>{"ilf.loop_begin=8", "ilf.loop_end=19"}));
  EXPECT_EQ(points[4].overrides.back(), "ilf.t_post=uniform");
  EXPECT_EQ(ilf::train_dir(spec, points[1]), (fs::path(dir) / "out" / "train" / points[0].train_id).string());
}

TEST(SweepFile, OverridesQuoteStringsThatWouldReadAsOtherJson) {
  EXPECT_EQ(ilf::override_assignment("ilf.t_post", "rescale"), "ilf.t_post=rescale");
  EXPECT_EQ(ilf::override_assignment("eval.label", "10"), "eval.label=\"10\"");
  EXPECT_EQ(ilf::override_assignment("sampling.steps", 10), "sampling.steps=10");
  EXPECT_EQ(ilf::override_assignment("ilf.feedback_steps.steps", Json::array({0, 11})), "ilf.feedback_steps.steps=[0,11]");
  Json config = Json::object();
  ilf::apply_override(config, ilf::override_assignment("eval.label", "10"));
  EXPECT_EQ(config["eval"]["label"], "10");  // round trip through the tools' parser keeps the string
}

TEST(SweepFile, ZipAxesOfUnequalLengthAreRejectedNamingTheAxisAndKeys) {
  Json sweep = loop_sweep();
  sweep["axes"][0]["zip"]["ilf.loop_end"] = {5, 19, 27};
  const std::string message = expansion_error(ilf::test::scratch_dir("sweep_bad_zip"), sweep);
  EXPECT_NE(message.find("axes[0]"), std::string::npos) << message;
  EXPECT_NE(message.find("ilf.loop_end"), std::string::npos) << message;
  EXPECT_NE(message.find("ilf.loop_begin"), std::string::npos) << message;
}

TEST(SweepFile, MisspelledAxisKeysAreRejectedNamingTheAxisAndKey) {
  Json sweep = loop_sweep();
  sweep["axes"][1]["key"] = "ilf.t_pots";
  const std::string message = expansion_error(ilf::test::scratch_dir("sweep_bad_key"), sweep);
  EXPECT_NE(message.find("axes[1]"), std::string::npos) << message;
  EXPECT_NE(message.find("ilf.t_pots"), std::string::npos) << message;
}

TEST(SweepFile, KeysOutsideTheRunConfigSectionsAreRejected) {
  Json sweep = loop_sweep();
  sweep["axes"][1]["key"] = "sampler.steps";
  const std::string message = expansion_error(ilf::test::scratch_dir("sweep_bad_section"), sweep);
  EXPECT_NE(message.find("axes[1]"), std::string::npos) << message;
  EXPECT_NE(message.find("sampler.steps"), std::string::npos) << message;
}

TEST(SweepFile, ImpossiblePointsAreRejectedBeforeAnythingRuns) {
  Json sweep = loop_sweep();
  sweep["axes"][0]["zip"]["ilf.loop_end"] = {5, 30};  // the model has 28 blocks
  const std::string dir = ilf::test::scratch_dir("sweep_bad_point");
  const std::string message = expansion_error(dir, sweep);
  EXPECT_NE(message.find("point 3"), std::string::npos) << message;
  EXPECT_NE(message.find("ilf.loop_end=30"), std::string::npos) << message;
  EXPECT_FALSE(fs::exists(fs::path(dir) / "out"));
}

TEST(SweepFile, BadValuesInAnAxisAreRejectedNamingThePoint) {
  Json sweep = loop_sweep();
  sweep["axes"][1]["values"] = {"none", "sideways"};
  const std::string message = expansion_error(ilf::test::scratch_dir("sweep_bad_value"), sweep);
  EXPECT_NE(message.find("ilf.t_post=sideways"), std::string::npos) << message;
  EXPECT_NE(message.find("rescale"), std::string::npos) << message;  // the allowed values
}

TEST(SweepFile, StructuralMistakesAreRejectedNamingTheKey) {
  const std::string dir = ilf::test::scratch_dir("sweep_structure");
  auto message_for = [&](const std::function<void(Json&)>& edit) {
    Json sweep = loop_sweep();
    edit(sweep);
    return expansion_error(dir, sweep);
  };
  std::string m = message_for([](Json& s) { s["axis"] = Json::array(); });
  EXPECT_NE(m.find("\"axis\""), std::string::npos) << m;
  m = message_for([](Json& s) { s["stages"] = {"train", "evaluate"}; });
  EXPECT_NE(m.find("evaluate"), std::string::npos) << m;
  m = message_for([](Json& s) { s["commands"] = {{"sample", {"true"}}}; });
  EXPECT_NE(m.find("commands.sample"), std::string::npos) << m;
  m = message_for([](Json& s) { s["set"] = {{"ilf.t_post", "none"}}; });
  EXPECT_NE(m.find("ilf.t_post"), std::string::npos) << m;
  EXPECT_NE(m.find("already set"), std::string::npos) << m;
  m = message_for([](Json& s) { s["axes"][0]["valuse"] = {1}; });
  EXPECT_NE(m.find("axes[0]"), std::string::npos) << m;
  m = message_for([](Json& s) { s["axes"][1]["values"] = Json::array(); });
  EXPECT_NE(m.find("axes[1]"), std::string::npos) << m;
  m = message_for([](Json& s) {
    s["stages"] = {"train"};
    s["metrics"] = {"fid"};
  });
  EXPECT_NE(m.find("metrics[0]"), std::string::npos) << m;
  m = message_for([](Json& s) {
    s["axes"][0]["train"] = false;
    s["axes"][0]["zip"] = {{"training.steps", {1, 2}}};
  });
  EXPECT_NE(m.find("training.steps"), std::string::npos) << m;
  m = message_for([](Json& s) { s["slurm"] = {{"time", "four hours"}}; });
  EXPECT_NE(m.find("slurm.time"), std::string::npos) << m;
  m = message_for([](Json& s) { s["base_config"] = "no/such/config.json"; });
  EXPECT_NE(m.find("base_config"), std::string::npos) << m;
}

TEST(SweepPlan, BlockForwardEstimatesReproduceThePaperCounts) {
  // docs/design.md / paper: N = 28; ILF 10 steps loop 8..19 on the first 2 + last 2 steps: 332; 12 steps
  // skip inner 8: 388; 12 steps loop 0..5 every step: 420; caching 20 steps, inner 18, every 3rd: 326.
  const std::string dir = ilf::test::scratch_dir("sweep_plan_counts");
  Json sweep = Json::parse(R"({
    "axes": [{"zip": {
      "sampling.method": ["ilf", "ilf", "ilf", "cache", "baseline"],
      "sampling.steps": [10, 12, 12, 20, 20],
      "ilf.loop_begin": [8, 8, 0, 0, 0], "ilf.loop_end": [19, 19, 5, 0, 0],
      "ilf.feedback_steps.mode": ["outer", "outer", "all", "all", "all"],
      "cache.num_blocks": [0, 0, 0, 18, 0], "cache.interval": [1, 1, 1, 3, 1], "cache.location": ["inner", "inner", "inner", "inner", "inner"]
    }}],
    "stages": ["sample"]
  })");
  const ilf::SweepSpec spec = ilf::load_sweep(write_sweep(dir, sweep));
  const auto points = ilf::expand_sweep(spec);
  ASSERT_EQ(points.size(), 5u);
  const std::vector<int64_t> expected = {332, 388, 420, 326, 560};
  for (size_t i = 0; i < points.size(); ++i) {
    ASSERT_TRUE(points[i].block_forwards.has_value());
    EXPECT_EQ(*points[i].block_forwards, expected[i]) << points[i].id;
  }
  const Json plan = ilf::plan_json(spec, points);
  EXPECT_EQ(plan["points"][1]["block_forwards"], 388);
  EXPECT_EQ(plan["points"][1]["config"]["sampling"]["steps"], 12);
  EXPECT_EQ(plan["points"][1]["missing_stages"], Json::array({"sample"}));
  EXPECT_EQ(plan["points"][1]["folder"], ilf::point_dir(spec, points[1]));
  const std::string text = ilf::plan_text(spec, points);
  EXPECT_NE(text.find("388"), std::string::npos) << text;
  EXPECT_NE(text.find(points[3].id), std::string::npos) << text;
}

TEST(SweepSlurm, ArraySpecsCompressRunsOfIndices) {
  EXPECT_EQ(ilf::slurm_array_spec({0, 1, 2, 5, 7, 8}, 0), "0-2,5,7-8");
  EXPECT_EQ(ilf::slurm_array_spec({3}, 4), "3%4");
}

TEST(SweepSlurm, ScriptRunsOnePointPerArrayTaskWithSrunForTraining) {
  const std::string dir = ilf::test::scratch_dir("sweep_sbatch");
  Json sweep = loop_sweep();
  sweep["slurm"] = Json::parse(R"({"partition": "h100", "time": "12:00:00", "gpus_per_task": 8, "cpus_per_task": 12,
                                   "setup": ["module load cuda"], "sbatch_options": ["--constraint=h100"]})");
  const ilf::SweepSpec spec = ilf::load_sweep(write_sweep(dir, sweep));
  const auto points = ilf::expand_sweep(spec);
  const std::string script = ilf::make_sbatch_script(spec, points, {"/opt/ilf/ilf_sweep", dir + "/out/sweep.json", dir});
  for (const char* expected :
       {"#SBATCH --array=0-5\n", "#SBATCH --partition=h100\n", "#SBATCH --time=12:00:00\n", "#SBATCH --gpus-per-node=8\n",
        "#SBATCH --ntasks-per-node=8\n", "#SBATCH --cpus-per-task=12\n", "#SBATCH --constraint=h100\n",
        "#SBATCH --signal=USR1@600\n", "module load cuda\n", "--point \"$SLURM_ARRAY_TASK_ID\"",
        "srun --kill-on-bad-exit=1 --ntasks=$SLURM_NTASKS",
        "export MASTER_ADDR=", "export MASTER_PORT=", "scontrol requeue \"${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}\""})
    EXPECT_NE(script.find(expected), std::string::npos) << "missing " << expected << " in\n" << script;
  // Short time limits get a proportionally short warning, none below 5 minutes or without a limit.
  auto script_with_time = [&](const std::string& time) {
    ilf::SweepSpec other = spec;
    other.slurm.time = time;
    return ilf::make_sbatch_script(other, points, {"/opt/ilf/ilf_sweep", dir + "/out/sweep.json", dir});
  };
  EXPECT_NE(script_with_time("00:20:00").find("#SBATCH --signal=USR1@120\n"), std::string::npos);
  EXPECT_NE(script_with_time("2-00:00:00").find("#SBATCH --signal=USR1@600\n"), std::string::npos);
  EXPECT_EQ(script_with_time("4").find("#SBATCH --signal"), std::string::npos);
  EXPECT_EQ(script_with_time("UNLIMITED").find("#SBATCH --signal"), std::string::npos);
  // The script is valid bash.
  const std::string path = dir + "/sweep.sbatch";
  write_text(path, script);
  EXPECT_EQ(std::system(("bash -n " + path).c_str()), 0);
}

TEST(SweepSlurm, OnePointPerTrainingRunTrainsAndTheOthersWaitForIt) {
  const std::string dir = ilf::test::scratch_dir("sweep_waves");
  const ilf::SweepSpec spec = ilf::load_sweep(write_sweep(dir, loop_sweep()));
  const auto points = ilf::expand_sweep(spec);
  const ilf::SlurmWaves waves = ilf::slurm_waves(spec, points);
  EXPECT_EQ(waves.trainers, (std::vector<int64_t>{0, 3}));
  EXPECT_EQ(waves.others, (std::vector<int64_t>{1, 2, 4, 5}));
}

namespace {

// A sweep whose stages are shell one-liners: train writes a metrics.jsonl and a feedback file, eval
// writes metrics.json unless a fail_<index> file exists; both log their calls to calls.txt.
Json fake_stage_sweep(const std::string& dir) {
  Json sweep = Json::parse(R"({
    "name": "fake",
    "axes": [
      {"key": "ilf.loop_end", "values": [9, 19]},
      {"key": "sampling.steps", "values": [10, 12], "train": false}
    ],
    "stages": ["train", "eval"],
    "metrics": ["fid", "block_forwards", "train.loss", "plan.block_forwards"]
  })");
  const std::string calls = dir + "/calls.txt";
  sweep["commands"]["train"] = {
      "sh", "-c",
      "echo \"train $ILF_SWEEP_POINT\" >> " + calls +
          " && mkdir -p \"$ILF_SWEEP_OUT\" && printf '{\"loss\": 0.9}\\n{\"loss\": 0.25}\\n' > \"$ILF_SWEEP_OUT/metrics.jsonl\""
          " && : > \"$ILF_SWEEP_OUT/feedback.safetensors\""};
  sweep["commands"]["eval"] = {
      "sh", "-c",
      "echo \"eval $ILF_SWEEP_POINT $*\" >> " + calls + " && [ ! -e " + dir +
          "/fail_$ILF_SWEEP_INDEX ] && printf '{\"fid\": %s, \"block_forwards\": %s}' \"$ILF_SWEEP_INDEX\" {key:sampling.steps} "
          "> {out}",
      "eval-args", "{sets}"};
  return sweep;
}

std::vector<std::string> calls_starting(const std::vector<std::string>& calls, const std::string& prefix) {
  std::vector<std::string> out;
  for (const auto& c : calls)
    if (c.rfind(prefix, 0) == 0) out.push_back(c.substr(prefix.size(), 4));
  return out;
}

}  // namespace

TEST(SweepRun, ALocalSweepResumesOnlyTheMissingPoints) {
  const std::string dir = ilf::test::scratch_dir("sweep_resume");
  const ilf::SweepSpec spec = ilf::load_sweep(write_sweep(dir, fake_stage_sweep(dir)));
  const auto points = ilf::expand_sweep(spec);
  std::ostringstream log;
  ilf::SweepRunOptions options;
  options.tools_dir = ILF_BINARY_DIR;
  options.log = &log;

  write_text(dir + "/fail_1", "");  // point 1's eval fails the first time
  ilf::SweepRunSummary first = ilf::run_sweep_locally(spec, points, options);
  EXPECT_EQ(first.completed, 3);
  EXPECT_EQ(first.failed, 1);
  EXPECT_NE(log.str().find("FAILED"), std::string::npos) << log.str();
  EXPECT_EQ(ilf::missing_stages(spec, points[1]), std::vector<ilf::SweepStage>{ilf::SweepStage::kEval});

  fs::remove(dir + "/fail_1");
  ilf::SweepRunSummary second = ilf::run_sweep_locally(spec, points, options);
  EXPECT_EQ(second.already_complete, 3);
  EXPECT_EQ(second.completed, 1);
  ilf::SweepRunSummary third = ilf::run_sweep_locally(spec, points, options);
  EXPECT_EQ(third.already_complete, 4);
  EXPECT_EQ(third.completed, 0);

  const auto calls = read_lines(dir + "/calls.txt");
  // One training per loop (shared by both step counts); point 1 evaluated twice, the others once.
  EXPECT_EQ(calls_starting(calls, "train "), (std::vector<std::string>{"p000", "p002"}));
  EXPECT_EQ(calls_starting(calls, "eval "), (std::vector<std::string>{"p000", "p001", "p002", "p003", "p001"}));
}

TEST(SweepRun, StagesGetThePointsOverridesAndTheTrainedWeights) {
  const std::string dir = ilf::test::scratch_dir("sweep_stage_args");
  const ilf::SweepSpec spec = ilf::load_sweep(write_sweep(dir, fake_stage_sweep(dir)));
  const auto points = ilf::expand_sweep(spec);
  ilf::SweepRunOptions options;
  options.tools_dir = ILF_BINARY_DIR;
  std::ostringstream log;
  options.log = &log;
  ASSERT_EQ(ilf::run_sweep_point(spec, points[3], options), ilf::PointOutcome::kCompleted) << log.str();
  const auto calls = read_lines(dir + "/calls.txt");
  ASSERT_EQ(calls.size(), 2u);
  const std::string feedback = (fs::path(ilf::train_dir(spec, points[3])) / "feedback.safetensors").string();
  EXPECT_EQ(calls[1],
            "eval " + points[3].id + " --set ilf.loop_end=19 --set sampling.steps=12 --set ilf.feedback_weights=" + feedback);
  // The marker records the overrides; the point folder keeps the resolved config.
  const Json marker = Json::parse(read_text(ilf::marker_path(spec, points[3], ilf::SweepStage::kEval)));
  EXPECT_EQ(marker["overrides"], Json(points[3].overrides));
  EXPECT_EQ(Json::parse(read_text(fs::path(ilf::point_dir(spec, points[3])) / "config.json")), points[3].config);
  EXPECT_EQ(ilf::run_sweep_point(spec, points[3], options), ilf::PointOutcome::kAlreadyComplete);
}

// A Learning-to-Cache router as a sweep's training (mode l2c): the default train command runs without
// --resume (ilf_train refuses it in that mode: a router has no checkpoint), and sample / eval get the
// router through l2c.router. Fake ilf_train / ilf_eval in a tools folder record their arguments.
TEST(SweepRun, LearningToCacheTrainingsRunWithoutResumeAndHandTheirRouterToEval) {
  const std::string dir = ilf::test::scratch_dir("sweep_l2c_training");
  const std::string calls = dir + "/calls.txt";
  const fs::path tools = fs::path(dir) / "tools";
  write_text(tools / "ilf_train", "#!/bin/sh\necho \"train $*\" >> " + calls +
                                      "\nwhile [ $# -gt 0 ]; do [ \"$1\" = --out ] && out=$2; shift; done\n"
                                      "mkdir -p \"$out\" && : > \"$out/router.safetensors\"\n");
  write_text(tools / "ilf_eval", "#!/bin/sh\necho \"eval $*\" >> " + calls +
                                     "\nwhile [ $# -gt 0 ]; do [ \"$1\" = --out ] && out=$2; shift; done\n"
                                     "printf '{\"fid\": 1}' > \"$out\"\n");
  for (const char* tool : {"ilf_train", "ilf_eval"}) fs::permissions(tools / tool, fs::perms::owner_all, fs::perm_options::add);
  const ilf::SweepSpec spec = ilf::load_sweep(write_sweep(dir, Json::parse(R"({
    "name": "l2c",
    "set": {"training.mode": "l2c", "sampling.method": "l2c", "sampling.steps": 20},
    "axes": [{"key": "l2c.sparsity", "values": [1e-5, 1e-3]}, {"key": "l2c.budget", "values": [0.6, 0.7], "train": false}],
    "stages": ["train", "eval"]
  })")));
  const auto points = ilf::expand_sweep(spec);
  ASSERT_EQ(points.size(), 4u);
  ilf::SweepRunOptions options;
  options.tools_dir = tools.string();
  std::ostringstream log;
  options.log = &log;
  ASSERT_EQ(ilf::run_sweep_point(spec, points[1], options), ilf::PointOutcome::kCompleted) << log.str();
  const auto lines = read_lines(calls);
  ASSERT_EQ(lines.size(), 2u) << log.str();
  EXPECT_EQ(lines[0].rfind("train ", 0), 0u);
  EXPECT_EQ(lines[0].find("--resume"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("--set l2c.sparsity=1e-05"), std::string::npos) << lines[0];
  EXPECT_EQ(lines[0].find("l2c.budget"), std::string::npos) << lines[0];  // not a training setting
  const std::string router = (fs::path(ilf::train_dir(spec, points[1])) / "router.safetensors").string();
  EXPECT_NE(lines[1].find("--set l2c.router=" + router), std::string::npos) << lines[1];
  EXPECT_NE(lines[1].find("--set l2c.budget=0.7"), std::string::npos) << lines[1];
  EXPECT_EQ(lines[1].find("ilf.feedback_weights"), std::string::npos) << lines[1];
}

TEST(SweepRun, FoldersCompletedWithOtherSettingsAreAnError) {
  const std::string dir = ilf::test::scratch_dir("sweep_stale");
  Json sweep = fake_stage_sweep(dir);
  const ilf::SweepSpec spec = ilf::load_sweep(write_sweep(dir, sweep));
  ilf::SweepRunOptions options;
  options.tools_dir = ILF_BINARY_DIR;
  std::ostringstream log;
  options.log = &log;
  const auto points = ilf::expand_sweep(spec);
  ASSERT_EQ(ilf::run_sweep_point(spec, points[0], options), ilf::PointOutcome::kCompleted) << log.str();

  sweep["set"] = {{"ilf.init", "random"}};  // same folder names, other settings
  const ilf::SweepSpec changed = ilf::load_sweep(write_sweep(dir, sweep));
  const auto changed_points = ilf::expand_sweep(changed);
  ASSERT_EQ(changed_points[0].id, points[0].id);
  const std::string message = error_of([&] { ilf::missing_stages(changed, changed_points[0]); });
  EXPECT_NE(message.find("other settings"), std::string::npos) << message;
  EXPECT_NE(message.find("done_train.json"), std::string::npos) << message;
}

TEST(SweepRun, KillingTheCommandMidwayAndRunningAgainFinishesOnlyTheMissingPoints) {
  const std::string exe = std::string(ILF_BINARY_DIR) + "/ilf_sweep";
  if (!fs::exists(exe)) GTEST_SKIP() << "ilf_sweep is not built in " << ILF_BINARY_DIR;
  const std::string dir = ilf::test::scratch_dir("sweep_kill");
  Json sweep = fake_stage_sweep(dir);
  // Point 2's eval sends SIGTERM to ilf_sweep (its parent) the first time, then waits to be stopped.
  sweep["commands"]["eval"] = {"sh", "-c",
                               "echo \"eval $ILF_SWEEP_POINT\" >> " + dir + "/calls.txt; if [ $ILF_SWEEP_INDEX = 2 ] && [ ! -e " +
                                   dir + "/killed ]; then : > " + dir +
                                   "/killed; kill -TERM $PPID; sleep 10; fi; echo '{\"fid\": 1}' > {out}"};
  const std::string path = write_sweep(dir, sweep);
  const std::string run = exe + " run " + path + " --local > " + dir + "/run.log 2>&1";
  const int first = std::system(run.c_str());
  ASSERT_TRUE(WIFEXITED(first));
  EXPECT_EQ(WEXITSTATUS(first), 128 + SIGTERM) << read_text(dir + "/run.log");
  EXPECT_EQ(std::system(run.c_str()), 0) << read_text(dir + "/run.log");
  const auto calls = read_lines(dir + "/calls.txt");
  EXPECT_EQ(calls_starting(calls, "eval "), (std::vector<std::string>{"p000", "p001", "p002", "p002", "p003"}));
  EXPECT_EQ(calls_starting(calls, "train "), (std::vector<std::string>{"p000", "p002"}));
}

TEST(SweepCollect, TablesHoldEveryPointsAxisValuesAndMetrics) {
  const std::string dir = ilf::test::scratch_dir("sweep_collect");
  const ilf::SweepSpec spec = ilf::load_sweep(write_sweep(dir, fake_stage_sweep(dir)));
  const auto points = ilf::expand_sweep(spec);
  ilf::SweepRunOptions options;
  options.tools_dir = ILF_BINARY_DIR;
  std::ostringstream log;
  options.log = &log;
  for (int i : {0, 1, 2}) ASSERT_EQ(ilf::run_sweep_point(spec, points[i], options), ilf::PointOutcome::kCompleted) << log.str();

  const ilf::SweepTable table = ilf::collect_sweep(spec, points);
  EXPECT_EQ(table.columns, (std::vector<std::string>{"point", "ilf.loop_end", "sampling.steps", "state", "fid", "block_forwards",
                                                     "train.loss", "plan.block_forwards"}));
  ASSERT_EQ(table.rows.size(), 4u);
  EXPECT_EQ(table.complete_points, 3);
  EXPECT_EQ(table.rows[2][0], "p002");
  EXPECT_EQ(table.rows[2][1], 19);
  EXPECT_EQ(table.rows[2][2], 10);
  EXPECT_EQ(table.rows[2][3], "complete");
  EXPECT_EQ(table.rows[2][4], 2);     // fid written by the fake eval: the point index
  EXPECT_EQ(table.rows[2][5], 10);    // its sampling.steps, through {key:sampling.steps}
  EXPECT_EQ(table.rows[2][6], 0.25);  // the last loss of the training log
  EXPECT_EQ(table.rows[2][7], *points[2].block_forwards);
  EXPECT_EQ(table.rows[3][3], "missing eval");
  EXPECT_TRUE(table.rows[3][4].is_null());
  EXPECT_EQ(table.rows[3][6], 0.25);  // the training it shares with point 2 is done

  const std::string csv = ilf::table_to_csv(table);
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "point,ilf.loop_end,sampling.steps,state,fid,block_forwards,train.loss,plan.block_forwards");
  EXPECT_NE(csv.find("p002,19,10,complete,2,10,0.25," + std::to_string(*points[2].block_forwards)), std::string::npos) << csv;
  const std::string markdown = ilf::table_to_markdown(spec, table);
  EXPECT_NE(markdown.find("| p002 | 19 | 10 | complete | 2 | 10 | 0.25 |"), std::string::npos) << markdown;
  EXPECT_NE(markdown.find("| p003 | 19 | 12 | missing eval | - | - | 0.25 |"), std::string::npos) << markdown;
  EXPECT_NE(markdown.find("3 of 4 points complete"), std::string::npos) << markdown;
}

TEST(HardeningLimits, ASweepGridAboveItsPointLimitIsRefusedBeforeExpansion) {
  // `ilf_sweep plan` on a 10^10-point grid grew without bound; the product is now checked first.
  const std::string dir = ilf::test::scratch_dir("hardening_sweep_grid");
  Json sweep = Json::parse(R"({"name": "huge", "stages": ["eval"], "axes": []})");
  const std::vector<std::string> keys = {"sampling.steps",          "ilf.loop_begin", "ilf.loop_end",   "ilf.strength",
                                         "sampling.guidance_scale", "training.lr",    "training.steps", "training.batch_size",
                                         "training.seed",           "eval.crop"};
  for (const auto& key : keys) {
    Json values = Json::array();
    for (int i = 1; i <= 10; ++i) values.push_back(i);  // the points need not be valid: none is made
    sweep["axes"].push_back({{"key", key}, {"values", values}});
  }
  const std::string message = expansion_error(dir, sweep);  // returns at once instead of expanding 10^10 points
  EXPECT_NE(message.find("100000"), std::string::npos) << message;
  EXPECT_NE(message.find("max_points"), std::string::npos) << message;
  // The limit is the file's "max_points": a 12-point grid above a limit of 10 is refused, within 20 expanded.
  Json small = loop_sweep();  // 2 x 3 = 6 points
  small["axes"].push_back({{"key", "sampling.steps"}, {"values", {10, 12}}});
  small["max_points"] = 10;
  EXPECT_NE(expansion_error(dir, small).find("max_points"), std::string::npos);
  small["max_points"] = 20;
  EXPECT_EQ(ilf::expand_sweep(ilf::load_sweep(write_sweep(dir, small))).size(), 12u);
  // A product beyond 64 bits is refused, not wrapped, even with the largest limit.
  Json wide = sweep;
  wide["max_points"] = std::numeric_limits<int64_t>::max();
  for (int k = 0; k < 10; ++k) wide["axes"][k]["values"] = Json::array();
  for (int k = 0; k < 10; ++k)
    for (int i = 1; i <= 100; ++i) wide["axes"][k]["values"].push_back(i);
  EXPECT_NE(expansion_error(dir, wide).find("points"), std::string::npos);  // 100^10 > 2^63
}

TEST(SweepCommandLine, SetOverridesApplyToEveryPoint) {
  // The README says every tool takes --set; ilf_sweep refused it.
  const std::string exe = std::string(ILF_BINARY_DIR) + "/ilf_sweep";
  if (!fs::exists(exe)) GTEST_SKIP() << "ilf_sweep is not built in " << ILF_BINARY_DIR;
  const std::string dir = ilf::test::scratch_dir("sweep_cli_set");
  const std::string path = write_sweep(dir, loop_sweep());
  const std::string command = exe + " plan " + path + " --json --set sampling.steps=7 --set sampling.solver=ddim > " + dir +
                              "/plan.json 2> " + dir + "/err.txt";
  ASSERT_EQ(std::system(command.c_str()), 0) << read_text(dir + "/err.txt");
  const Json plan = Json::parse(read_text(dir + "/plan.json"));
  ASSERT_TRUE(plan.contains("points")) << plan.dump();
  ASSERT_EQ(plan["points"].size(), 6u);
  for (const auto& point : plan["points"]) {
    const std::string text = point.dump();
    EXPECT_NE(text.find("sampling.steps=7"), std::string::npos) << text;
    EXPECT_NE(text.find("sampling.solver=ddim"), std::string::npos) << text;
  }
  // A malformed assignment is an error naming --set.
  EXPECT_NE(std::system((exe + " plan " + path + " --set nokey > " + dir + "/plan.json 2> " + dir + "/err.txt").c_str()), 0);
  EXPECT_NE(read_text(dir + "/err.txt").find("--set"), std::string::npos) << read_text(dir + "/err.txt");
}
