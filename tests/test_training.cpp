// The trainer on a tiny DiT on CPU: the loss falls, the frozen backbone stays bit-identical and only
// F and the scales change, checkpoints round-trip and resume exactly (also after SIGKILL), SIGTERM
// leaves a usable checkpoint, a NaN loss stops cleanly, accumulation and activation checkpointing
// do not change the result, and the files a run writes load where they are used.
#include <ATen/CPUGeneratorImpl.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "ilf/error.h"
#include "ilf/feedback/feedback.h"
#include "ilf/io/image.h"
#include "ilf/io/safetensors.h"
#include "ilf/models/weights.h"
#include "ilf/training/checkpoint.h"
#include "ilf/training/ema.h"
#include "ilf/training/losses.h"
#include "ilf/feedback/inner_loop.h"
#include "ilf/training/trainer.h"
#include "ilf/pipelines/training.h"
#include "tool_test_support.h"
#include "training_test_support.h"

namespace ilf {
namespace {

namespace fs = std::filesystem;
using test::InProcessRun;

class Training : public ::testing::Test {
 protected:
  void SetUp() override { spdlog::set_level(spdlog::level::warn); }
  void TearDown() override { spdlog::set_level(spdlog::level::info); }

  // Synthetic shards shared by the tests of this suite (written once).
  static std::string data() {
    static const std::string folder = [] {
      // Per process: ctest may run the tests of this suite in parallel processes.
      const std::string dir = test::scratch_dir("training_data_" + std::to_string(getpid()));
      test::write_synthetic_shards(dir);
      return dir;
    }();
    return folder;
  }
};

// A fixed evaluation batch: the first 16 samples with fixed sample ids (fixed t, eps, dropout).
TrainingBatch evaluation_batch(const std::string& data_folder) {
  ShardDataset data(data_folder);
  std::vector<int64_t> indices(16);
  for (int64_t i = 0; i < 16; ++i) indices[i] = i;
  TrainingBatch batch = data.load(indices);
  for (int64_t i = 0; i < 16; ++i) batch.sample_ids.push_back(1000000 + i);
  return batch;
}

double evaluation_loss(Trainer& trainer, const TrainingBatch& batch) {
  torch::NoGradGuard no_grad;
  return trainer.compute_loss(batch).total.item<double>();
}

TEST_F(Training, OptionsAreValidatedNamingTheKey) {
  auto read = [](const std::string& assignment) {
    Json config = Json::object();
    apply_override(config, assignment);
    return parse_run_config(config, "run.json").training;
  };
  EXPECT_EQ(read("training.mode=pretrain").mode, TrainingMode::kPretrain);
  for (const std::string bad :
       {"training.mode=ilff", "training.lr=0", "training.betas=[0.9]", "training.batch_size=0", "training.teacher=many",
        "training.t_ratio=2", "training.precision=fp8", "training.distill_guidance=-1"}) {
    try {
      read(bad);
      FAIL() << bad << " was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(bad.substr(0, bad.find('='))), std::string::npos) << e.what();
    }
  }
}

TEST_F(Training, WarmupRisesLinearlyToTheLearningRate) {
  TrainingOptions o;
  o.lr = 1e-3;
  o.warmup_steps = 4;
  EXPECT_DOUBLE_EQ(learning_rate_at(o, 0), 0.25e-3);
  EXPECT_DOUBLE_EQ(learning_rate_at(o, 3), 1e-3);
  EXPECT_DOUBLE_EQ(learning_rate_at(o, 100), 1e-3);
  o.warmup_steps = 0;
  EXPECT_DOUBLE_EQ(learning_rate_at(o, 0), 1e-3);
}

TEST_F(Training, EmaFollowsTheParametersAndSwapRestoresThem) {
  torch::Tensor p = torch::zeros({3});
  ParameterEma ema({{"p", p}}, 0.75);
  p.fill_(4.0);
  ema.update();  // 0.75 * 0 + 0.25 * 4
  EXPECT_TRUE(torch::allclose(ema.values().at("p"), torch::full({3}, 1.0)));
  {
    ParameterEma::Swap swap(ema);
    EXPECT_TRUE(torch::allclose(p, torch::full({3}, 1.0)));
  }
  EXPECT_TRUE(torch::allclose(p, torch::full({3}, 4.0)));
}

TEST_F(Training, CheckpointsRoundTripAndOnlyTheNewestAreKept) {
  const std::string dir = test::scratch_dir("training_checkpoint_files");
  TrainingCheckpoint ck;
  ck.mode = "ilf";
  ck.config_json = R"({"training":{"lr":0.001}})";
  ck.trainable["block.w"] = torch::randn({2, 3});
  ck.ema["block.w"] = torch::randn({2, 3});
  ck.optimizer["block.w"] = AdamState{7, torch::randn({2, 3}), torch::rand({2, 3})};
  ck.cpu_rng_state = at::detail::getDefaultCPUGenerator().get_state();
  for (int64_t step : {3, 6, 9}) {
    ck.step = step;
    ck.epoch = step / 4;
    ck.step_in_epoch = step % 4;
    save_checkpoint(dir, ck, /*keep=*/2);
  }
  std::ofstream(dir + "/checkpoint-00000012.safetensors.tmp.999") << "partial";  // a killed writer's leftovers
  const auto all = list_checkpoints(dir);
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(fs::path(latest_checkpoint(dir)).filename(), "checkpoint-00000009.safetensors");
  const TrainingCheckpoint back = load_checkpoint(latest_checkpoint(dir));
  EXPECT_EQ(back.step, 9);
  EXPECT_EQ(back.epoch, 2);
  EXPECT_EQ(back.step_in_epoch, 1);
  EXPECT_EQ(back.mode, "ilf");
  EXPECT_EQ(back.config_json, ck.config_json);
  EXPECT_TRUE(torch::equal(back.trainable.at("block.w"), ck.trainable.at("block.w")));
  EXPECT_TRUE(torch::equal(back.ema.at("block.w"), ck.ema.at("block.w")));
  EXPECT_EQ(back.optimizer.at("block.w").step, 7);
  EXPECT_TRUE(torch::equal(back.optimizer.at("block.w").exp_avg_sq, ck.optimizer.at("block.w").exp_avg_sq));
  EXPECT_TRUE(torch::equal(back.cpu_rng_state, ck.cpu_rng_state));
  EXPECT_THROW(load_checkpoint(test::data_path("dit_tiny.weights.safetensors")), Error);
}

TEST_F(Training, IlfTrainingChangesOnlyTheFeedbackAndScalesAndLeavesTheBackboneBitIdentical) {
  const std::string out = test::scratch_dir("training_frozen");
  InProcessRun run(data(), out, {"training.steps=6", "training.checkpoint_every=0"});
  Trainer& trainer = *run.trainer;
  std::map<std::string, torch::Tensor> backbone_before, feedback_before;
  for (const auto& p : trainer.backbone().named_parameters(true)) backbone_before[p.key()] = p.value().clone();
  for (const auto& b : trainer.backbone().named_buffers(true)) backbone_before["buffer:" + b.key()] = b.value().clone();
  for (const auto& p : trainer.feedback()->named_parameters(true)) feedback_before[p.key()] = p.value().clone();
  for (const auto& p : trainer.backbone().parameters()) EXPECT_FALSE(p.requires_grad());
  // The trainable set is exactly F's parameters and the scales.
  ASSERT_EQ(trainer.trainable().size(), feedback_before.size());
  for (const auto& [name, p] : trainer.trainable()) EXPECT_TRUE(feedback_before.count(name)) << name;
  EXPECT_TRUE(torch::all(trainer.feedback()->scales == 0).item<bool>());

  ASSERT_TRUE(trainer.run());
  for (const auto& p : trainer.backbone().named_parameters(true))
    EXPECT_TRUE(torch::equal(p.value(), backbone_before.at(p.key()))) << p.key() << " changed";
  for (const auto& b : trainer.backbone().named_buffers(true))
    EXPECT_TRUE(torch::equal(b.value(), backbone_before.at("buffer:" + b.key()))) << b.key() << " changed";
  EXPECT_FALSE(torch::equal(trainer.feedback()->scales, feedback_before.at("scales")));
  int changed = 0;
  for (const auto& p : trainer.feedback()->named_parameters(true))
    changed += !torch::equal(p.value(), feedback_before.at(p.key()));
  EXPECT_EQ(changed, static_cast<int>(feedback_before.size())) << "every F parameter and the scales train";
}

TEST_F(Training, AFreshRunRefusesAFolderThatHoldsCheckpoints) {
  const std::string out = test::scratch_dir("training_fresh_refused");
  {
    InProcessRun run(data(), out, {"training.steps=2"});
    ASSERT_TRUE(run.trainer->run());
  }
  try {
    InProcessRun again(data(), out, {"training.steps=2"});
    FAIL() << "a fresh run overwrote " << out;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--resume"), std::string::npos) << e.what();
  }
}

TEST_F(Training, IlfLossFallsOnAFixedBatch) {
  const std::string out = test::scratch_dir("training_ilf_loss");
  InProcessRun run(data(), out, {"training.steps=60", "training.checkpoint_every=0", "training.lr=1e-2"});
  const TrainingBatch batch = evaluation_batch(data());
  const double before = evaluation_loss(*run.trainer, batch);
  ASSERT_TRUE(run.trainer->run());
  const double after = evaluation_loss(*run.trainer, batch);
  std::cout << "[ measured ] ILF loss on a fixed batch: " << before << " -> " << after << " after 60 steps\n";
  EXPECT_LT(after, 0.9 * before);
}

TEST_F(Training, PretrainingLossFallsAndItsBackboneFileLoadsAsAnIlfBackbone) {
  const std::string out = test::scratch_dir("training_pretrain");
  InProcessRun run(data(), out,
                   {"training.mode=pretrain", "training.steps=60", "training.checkpoint_every=0", "training.lr=3e-3"});
  const TrainingBatch batch = evaluation_batch(data());
  const double before = evaluation_loss(*run.trainer, batch);
  ASSERT_TRUE(run.trainer->run());
  const double after = evaluation_loss(*run.trainer, batch);
  std::cout << "[ measured ] pretraining loss on a fixed batch: " << before << " -> " << after << " after 60 steps\n";
  EXPECT_LT(after, 0.5 * before);

  // backbone.safetensors holds the EMA weights under the official key names and trains ILF.
  const std::string weights = out + "/backbone.safetensors";
  const TensorMap tensors = read_weights(weights);
  EXPECT_TRUE(tensors.count("blocks.0.attn.qkv.weight"));
  EXPECT_TRUE(tensors.count("pos_embed"));
  for (const auto& [name, value] : run.trainer->ema().values()) EXPECT_TRUE(torch::equal(tensors.at(name), value)) << name;
  InProcessRun ilf(data(), test::scratch_dir("training_pretrain_then_ilf"),
                   {"weights=" + weights, "training.steps=2", "training.checkpoint_every=0"});
  for (const auto& p : ilf.trainer->backbone().named_parameters(true))
    EXPECT_TRUE(torch::equal(p.value(), tensors.at(p.key()))) << p.key();
  EXPECT_TRUE(ilf.trainer->run());
}

TEST_F(Training, TheFeedbackFileIsTheEmaAndLoadsIntoAFeedbackModule) {
  const std::string out = test::scratch_dir("training_feedback_file");
  InProcessRun run(data(), out, {"training.steps=4", "training.checkpoint_every=0", "training.ema_decay=0.5"});
  ASSERT_TRUE(run.trainer->run());
  FeedbackOptions options;
  options.loop_begin = 1;
  options.loop_end = 2;
  FeedbackModule loaded(run.trainer->backbone(), options);
  loaded->load(run.trainer->weights_output_path());
  for (const auto& p : loaded->named_parameters(true))
    EXPECT_TRUE(torch::equal(p.value(), run.trainer->ema().values().at(p.key()))) << p.key();
  // ema_decay 0.5 differs from the live weights.
  EXPECT_FALSE(torch::equal(loaded->scales, run.trainer->feedback()->scales));
}

TEST_F(Training, SampleGridsAreWrittenAsPng) {
  const std::string out = test::scratch_dir("training_sample_grid");
  InProcessRun run(data(), out,
                   {"training.steps=4", "training.checkpoint_every=0", "training.sample_every=2", "training.sample_steps=2",
                    "training.sample_images=4"});
  ASSERT_TRUE(run.trainer->run());
  for (const std::string step : {"2", "4"}) {
    const std::string path = out + "/samples/step-0000000" + step + ".png";
    ASSERT_TRUE(fs::exists(path)) << path;
    EXPECT_EQ(read_png_text(path).at("step"), step);
  }
}

TEST_F(Training, GradientAccumulationEqualsTheLargerBatch) {
  InProcessRun big(data(), test::scratch_dir("training_accum_big"), {"training.steps=3", "training.checkpoint_every=0"});
  InProcessRun accum(data(), test::scratch_dir("training_accum_small"),
                     {"training.steps=3", "training.checkpoint_every=0", "training.batch_size=4", "training.grad_accum=2"});
  ASSERT_TRUE(big.trainer->run());
  ASSERT_TRUE(accum.trainer->run());
  double worst = 0;
  for (size_t i = 0; i < big.trainer->trainable().size(); ++i)
    worst = std::max(worst, test::relative_error(accum.trainer->trainable()[i].second, big.trainer->trainable()[i].second));
  std::cout << "[ measured ] accumulation 2 x 4 vs batch 8: max relative weight difference " << worst << "\n";
  EXPECT_LT(worst, 1e-5);
}

TEST_F(Training, ActivationCheckpointingGivesTheSameGradients) {
  for (const std::string mode : {"ilf", "pretrain"}) {
    InProcessRun plain(data(), test::scratch_dir("training_ac_plain"), {"training.mode=" + mode});
    InProcessRun checkpointed(data(), test::scratch_dir("training_ac_on"),
                              {"training.mode=" + mode, "training.activation_checkpointing=true"});
    const TrainingBatch batch = evaluation_batch(data());
    plain.trainer->compute_loss(batch).total.backward();
    checkpointed.trainer->compute_loss(batch).total.backward();
    int compared = 0;
    for (size_t i = 0; i < plain.trainer->trainable().size(); ++i) {
      const auto& a = plain.trainer->trainable()[i].second;
      const auto& b = checkpointed.trainer->trainable()[i].second;
      ASSERT_TRUE(a.grad().defined() && b.grad().defined()) << mode << " " << plain.trainer->trainable()[i].first;
      EXPECT_LT(test::relative_error(b.grad(), a.grad()), 1e-5) << mode << " " << plain.trainer->trainable()[i].first;
      ++compared;
    }
    EXPECT_GT(compared, 0);
  }
}

TEST_F(Training, MultistepTeacherEqualsFadWhenTheTeacherTimeIsT) {
  // With t_ratio 1, t' = t: K DDIM steps from t to t leave x_t as it is, so the standard-distillation
  // target equals the FAD target.
  InProcessRun fad(data(), test::scratch_dir("training_teacher_fad"), {"training.t_ratio=1"});
  InProcessRun multi(data(), test::scratch_dir("training_teacher_multi"),
                     {"training.t_ratio=1", "training.teacher=multistep", "training.teacher_steps=3"});
  const TrainingBatch batch = evaluation_batch(data());
  torch::NoGradGuard no_grad;
  // Non-zero scales, so the student differs from the teacher.
  fad.trainer->feedback()->scales.fill_(0.5);
  multi.trainer->feedback()->scales.fill_(0.5);
  const double a = fad.trainer->compute_loss(batch).dist.item<double>();
  const double b = multi.trainer->compute_loss(batch).dist.item<double>();
  ASSERT_GT(a, 0);
  EXPECT_NEAR(a, b, 1e-5 * a);
  // And with the default ratio the multistep teacher runs and differs from FAD.
  InProcessRun multi_half(data(), test::scratch_dir("training_teacher_multi_half"), {"training.teacher=multistep"});
  InProcessRun fad_half(data(), test::scratch_dir("training_teacher_fad_half"), {});
  const double c = multi_half.trainer->compute_loss(batch).dist.item<double>();
  const double d = fad_half.trainer->compute_loss(batch).dist.item<double>();
  EXPECT_TRUE(std::isfinite(c));
  EXPECT_NE(c, d);
}

TEST_F(Training, GuidanceAwareDistillationComparesTheGuidedPredictionsOfStudentAndTeacher) {
  // distill_guidance 3: dist = MSE(guided student, guided teacher) with guided = u + 3 (c - u); rec
  // stays MSE(conditional student, eps). Expected values from separate conditional and unconditional
  // forwards of the free functions (the loss batches [cond; null] in one forward).
  const double g = 3.0;
  InProcessRun run(data(), test::scratch_dir("training_guided_distill"), {"training.distill_guidance=3"});
  const TrainingBatch batch = evaluation_batch(data());
  torch::NoGradGuard no_grad;
  run.trainer->feedback()->scales.fill_(0.5);  // the student differs from the teacher
  const LossTerms terms = run.trainer->compute_loss(batch);

  const TrainingOptions& o = run.config.training;
  Backbone& backbone = run.trainer->backbone();
  const NoiseSchedule schedule = NoiseSchedule::create();
  const TrainingNoise noise = draw_training_noise(batch, o.seed, schedule.num_train_timesteps(), o.cond_dropout, torch::kCPU);
  const torch::Tensor x0 = batch.x0.to(torch::kFloat32);
  const ConditionInputs cond = drop_condition(backbone, batch.condition, noise.drop);
  const ConditionInputs null = backbone.null_condition(cond);
  const torch::Tensor x_t = schedule.add_noise(x0, noise.eps, noise.t);
  const torch::Tensor t_teacher = teacher_timesteps(noise.t, o.t_ratio);
  const int64_t C = backbone.in_channels();
  auto student = [&](const ConditionInputs& c) {
    BlockRunner runner(backbone);
    return inner_loop_forward(runner, *run.trainer->feedback(), x_t, noise.t, noise.t, c).narrow(1, 0, C);
  };
  auto teacher = [&](const ConditionInputs& c) { return fad_teacher(backbone, schedule, x0, noise.eps, t_teacher, c); };
  const torch::Tensor s_c = student(cond), s_u = student(null), t_c = teacher(cond), t_u = teacher(null);
  const double expected_dist = torch::mse_loss(s_u + g * (s_c - s_u), t_u + g * (t_c - t_u)).item<double>();
  const double expected_rec = torch::mse_loss(s_c, noise.eps).item<double>();
  ASSERT_GT(expected_dist, 0);
  EXPECT_NEAR(terms.dist.item<double>(), expected_dist, 1e-5 * expected_dist);
  EXPECT_NEAR(terms.rec.item<double>(), expected_rec, 1e-5 * expected_rec);
  // And it is not the plain distillation term (the guided targets differ from the conditional ones).
  const double plain_dist = torch::mse_loss(s_c, t_c).item<double>();
  EXPECT_GT(std::abs(expected_dist - plain_dist), 1e-3 * expected_dist);
  // The multistep teacher does not take it: neither the config nor the loss itself.
  EXPECT_THROW(test::tiny_config({"training.distill_guidance=3", "training.teacher=multistep"}), Error);
  TrainingOptions multistep = o;
  multistep.teacher = TeacherKind::kMultistep;
  EXPECT_THROW(fad_loss(backbone, *run.trainer->feedback(), backbone, schedule, x0, noise.eps, noise.t, cond, multistep), Error);
}

TEST_F(Training, ANonFiniteLossStopsWithoutTouchingTheLastCheckpoint) {
  const std::string out = test::scratch_dir("training_nan");
  {
    InProcessRun run(data(), out, {"training.steps=4", "training.checkpoint_every=2"});
    ASSERT_TRUE(run.trainer->run());
  }
  const std::string good = latest_checkpoint(out + "/checkpoints");
  const std::string good_bytes = test::read_text(good);
  const std::string feedback_bytes = test::read_text(out + "/feedback.safetensors");
  // An absurd learning rate blows the feedback up after one step.
  InProcessRun diverging(
      data(), out,
      {"training.steps=20", "training.checkpoint_every=1", "training.lr=1e30", "training.grad_clip=0", "training.warmup_steps=0"},
      /*resume=*/true);
  try {
    diverging.trainer->run();
    FAIL() << "expected a NonFiniteLossError";
  } catch (const NonFiniteLossError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("non-finite"), std::string::npos) << message;
    EXPECT_NE(message.find("checkpoint"), std::string::npos) << message;
  }
  // Checkpoints up to the last finite step exist and load; nothing non-finite was written.
  const std::string latest = latest_checkpoint(out + "/checkpoints");
  const TrainingCheckpoint ck = load_checkpoint(latest);
  for (const auto& [name, value] : ck.trainable) EXPECT_TRUE(torch::isfinite(value).all().item<bool>()) << name;
  EXPECT_EQ(test::read_text(good), good_bytes);
  (void)feedback_bytes;
}

// ---- the ilf_train executable ----

TEST_F(Training, ResumingAfterSigkillRepeatsTheUninterruptedLossesExactly) {
  const std::string root = test::scratch_dir("training_sigkill");
  const std::vector<std::string> settings = {"training.steps=60", "training.checkpoint_every=5"};
  const auto reference = test::spawn_train(data(), root + "/uninterrupted", settings);
  ASSERT_EQ(test::wait_process(reference), 0) << test::read_text(reference.log);

  const std::string out = root + "/killed";
  const auto victim = test::spawn_train(data(), out, settings);
  // Kill it mid-run, after a checkpoint but before the end.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (test::count_lines(out + "/metrics.jsonl") < 12 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  kill(victim.pid, SIGKILL);
  ASSERT_EQ(test::wait_process(victim), 128 + SIGKILL) << "the run ended before it could be killed";
  const int64_t killed_after = static_cast<int64_t>(test::count_lines(out + "/metrics.jsonl"));
  const TrainingCheckpoint ck = load_checkpoint(latest_checkpoint(out + "/checkpoints"));
  EXPECT_LT(ck.step, 60);
  std::cout << "[ measured ] killed after step " << killed_after << ", resuming from the checkpoint of step " << ck.step << "\n";

  const auto resumed = test::spawn_train(data(), out, settings, /*resume=*/true, {}, "resume.log");
  ASSERT_EQ(test::wait_process(resumed), 0) << test::read_text(resumed.log);
  const auto a = test::read_metrics(root + "/uninterrupted"), b = test::read_metrics(out);
  ASSERT_EQ(a.size(), 60u);
  ASSERT_EQ(b.size(), 60u);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i]["step"], b[i]["step"]);
    EXPECT_EQ(a[i]["loss"].get<double>(), b[i]["loss"].get<double>()) << "step " << i + 1;
    EXPECT_EQ(a[i]["grad_norm"].get<double>(), b[i]["grad_norm"].get<double>()) << "step " << i + 1;
  }
  EXPECT_EQ(test::read_text(root + "/uninterrupted/feedback.safetensors"), test::read_text(out + "/feedback.safetensors"));
}

TEST_F(Training, SigtermWritesAUsableCheckpointAndExitsCleanly) {
  const std::string root = test::scratch_dir("training_sigterm");
  const std::string out = root + "/run";
  const auto child = test::spawn_train(data(), out, {"training.steps=100000", "training.checkpoint_every=0"});
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (test::count_lines(out + "/metrics.jsonl") < 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  kill(child.pid, SIGTERM);
  ASSERT_EQ(test::wait_process(child), 0) << test::read_text(child.log);
  const auto metrics = test::read_metrics(out);
  const TrainingCheckpoint ck = load_checkpoint(latest_checkpoint(out + "/checkpoints"));
  EXPECT_EQ(ck.step, metrics.back()["step"].get<int64_t>());
  EXPECT_GT(ck.step, 0);
  std::cout << "[ measured ] SIGTERM: checkpoint at step " << ck.step << "\n";
  // It resumes: two more steps from there.
  const auto resumed = test::spawn_train(data(), out, {"training.steps=" + std::to_string(ck.step + 2)}, true, {}, "resume.log");
  ASSERT_EQ(test::wait_process(resumed), 0) << test::read_text(resumed.log);
  EXPECT_EQ(test::read_metrics(out).back()["step"].get<int64_t>(), ck.step + 2);
}

TEST_F(Training, IlfSampleLoadsTheBackboneAndFeedbackFilesARunWrites) {
  const std::string root = test::scratch_dir("training_to_sample");
  {
    InProcessRun pretrain(data(), root + "/pretrain", {"training.mode=pretrain", "training.steps=2"});
    ASSERT_TRUE(pretrain.trainer->run());
  }
  {
    InProcessRun ilf(data(), root + "/ilf", {"weights=" + root + "/pretrain/backbone.safetensors", "training.steps=2"});
    ASSERT_TRUE(ilf.trainer->run());
  }
  const auto child =
      test::spawn_process({std::string(ILF_BINARY_DIR) + "/ilf_sample", "--config", test::tiny_config_path(), "--weights",
                           root + "/pretrain/backbone.safetensors", "--feedback", root + "/ilf/feedback.safetensors", "--method",
                           "ilf", "--steps", "3", "--class", "1,2", "--out", root + "/sample.png"},
                          {}, root + "/sample.log");
  ASSERT_EQ(test::wait_process(child), 0) << test::read_text(root + "/sample.log");
  EXPECT_TRUE(fs::exists(root + "/sample.png"));
}

TEST_F(Training, AnUnknownConfigKeyIsReportedByTheTool) {
  const std::string root = test::scratch_dir("training_unknown_key");
  const auto child = test::spawn_train(data(), root + "/run", {"training.learning_rate=1"});
  EXPECT_EQ(test::wait_process(child), 1);
  EXPECT_NE(test::read_text(child.log).find("training.learning_rate"), std::string::npos) << test::read_text(child.log);
}

// ---------------------------------------------------------------------------------------------
// Checkpoints: checksums, metadata validation, fallback to the previous checkpoint.

TrainingCheckpoint small_checkpoint(int64_t step) {
  TrainingCheckpoint ck;
  ck.mode = "ilf";
  ck.step = step;
  ck.config_json = "{}";
  ck.trainable["w"] = torch::randn({4, 4});
  ck.ema["w"] = torch::randn({4, 4});
  ck.optimizer["w"] = AdamState{std::max<int64_t>(step, 0), torch::randn({4, 4}), torch::rand({4, 4})};
  return ck;
}

TEST(HardeningCheckpoint, AFlippedBitIsRefusedByTheChecksum) {
  const std::string dir = test::scratch_dir("hardening_checkpoint_bitflip");
  const std::string path = save_checkpoint(dir, small_checkpoint(5), 3);
  EXPECT_NO_THROW(load_checkpoint(path));
  std::string bytes = test::read_file(path);
  bytes[bytes.size() - 3] ^= 0x10;  // inside the last tensor's data
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  const std::string message = test::any_error_of([&] { load_checkpoint(path); });
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("checksum"), std::string::npos) << message;
}

TEST(HardeningCheckpoint, NegativeOrMalformedStepMetadataIsRefusedNamingFileAndField) {
  const std::string dir = test::scratch_dir("hardening_checkpoint_step");
  // Written with a valid checksum: the metadata check itself refuses it.
  TrainingCheckpoint ck = small_checkpoint(-3);
  ck.optimizer.clear();
  const std::string path = save_checkpoint(dir, ck, 3);
  const std::string message = test::any_error_of([&] { load_checkpoint(path); });
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("\"step\""), std::string::npos) << message;
  // Adam steps beyond the checkpoint's step.
  TrainingCheckpoint adam = small_checkpoint(4);
  adam.optimizer["w"].step = 1000;
  const std::string adam_path = save_checkpoint(dir, adam, 3);
  EXPECT_NE(test::any_error_of([&] { load_checkpoint(adam_path); }).find("adam_steps"), std::string::npos);
}

class HardeningTraining : public ::testing::Test {
 protected:
  void SetUp() override { spdlog::set_level(spdlog::level::err); }
  void TearDown() override { spdlog::set_level(spdlog::level::info); }
  static std::string data() {
    static const std::string folder = [] {
      const std::string dir = test::scratch_dir("hardening_training_data_" + std::to_string(getpid()));
      test::write_synthetic_shards(dir);
      return dir;
    }();
    return folder;
  }
};

TEST_F(HardeningTraining, ACorruptNewestCheckpointFallsBackToThePreviousOne) {
  const std::string out = test::scratch_dir("hardening_fallback");
  {
    test::InProcessRun run(data(), out, {"training.steps=4", "training.checkpoint_every=2", "training.keep_checkpoints=3"});
    ASSERT_TRUE(run.trainer->run());
  }
  const auto all = list_checkpoints(out + "/checkpoints");
  ASSERT_EQ(all.size(), 2u);  // steps 2 and 4
  std::string bytes = test::read_file(all.back());
  bytes[bytes.size() - 5] ^= 0x01;
  std::ofstream(all.back(), std::ios::binary | std::ios::trunc) << bytes;
  // A stale temporary file of a killed writer, removed at start.
  std::ofstream(out + "/config.json.tmp.999999999") << "partial";

  test::InProcessRun resumed(data(), out, {"training.steps=4", "training.checkpoint_every=2", "training.keep_checkpoints=3"},
                             /*resume=*/true);
  EXPECT_EQ(resumed.trainer->step(), 2);  // the previous checkpoint
  EXPECT_TRUE(fs::exists(all.back() + ".corrupt"));
  EXPECT_FALSE(fs::exists(out + "/config.json.tmp.999999999"));
  ASSERT_TRUE(resumed.trainer->run());
  EXPECT_EQ(resumed.trainer->step(), 4);
}

TEST_F(HardeningTraining, ACheckpointStepPastTrainingStepsIsRefused) {
  const std::string out = test::scratch_dir("hardening_step_past_end");
  {
    test::InProcessRun run(data(), out, {"training.steps=4", "training.checkpoint_every=0"});
    ASSERT_TRUE(run.trainer->run());
  }
  const std::string config_before = test::read_file(out + "/config.json");
  ASSERT_NE(config_before.find("\"steps\": 4"), std::string::npos);
  const std::string message =
      test::any_error_of([&] { test::InProcessRun resumed(data(), out, {"training.steps=2"}, /*resume=*/true); });
  EXPECT_NE(message.find("checkpoint-00000004.safetensors"), std::string::npos) << message;
  EXPECT_NE(message.find("\"step\""), std::string::npos) << message;
  EXPECT_NE(message.find("training.steps"), std::string::npos) << message;
  // The refused resume left the run's config as it was (it used to be rewritten with steps 2 first).
  EXPECT_EQ(test::read_file(out + "/config.json"), config_before);
}

// ---------------------------------------------------------------------------------------------
// Round 2: resume never restarts silently, checksums cannot be skipped.

// `path` rewritten without its "checksum" metadata (everything else as it was).
void drop_checksum(const std::string& path) {
  SafetensorsFile file = read_safetensors(path);
  file.metadata.erase("checksum");
  write_safetensors(path, file.tensors, file.metadata);
}

TEST(HardeningCheckpoint, ACheckpointWithoutItsChecksumIsRefusedUnlessAllowed) {
  const std::string dir = test::scratch_dir("hardening_checkpoint_unchecked");
  const std::string path = save_checkpoint(dir, small_checkpoint(5), 3);
  drop_checksum(path);
  const std::string message = test::any_error_of([&] { load_checkpoint(path); });
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("checksum"), std::string::npos) << message;
  EXPECT_NE(message.find("--allow-unchecked-checkpoint"), std::string::npos) << message;
  EXPECT_THROW(load_checkpoint(path), UncheckedCheckpointError);
  EXPECT_EQ(load_checkpoint(path, /*allow_unchecked=*/true).step, 5);
}

TEST(HardeningCheckpoint, AStepNameBeyond64BitsIsSkippedNotAResumeFailure) {
  const std::string dir = test::scratch_dir("hardening_checkpoint_huge_name");
  const std::string real = save_checkpoint(dir, small_checkpoint(4), 3);
  std::ofstream(dir + "/checkpoint-99999999999999999999.safetensors") << "not a checkpoint";
  std::vector<std::string> all;
  EXPECT_NO_THROW(all = list_checkpoints(dir));  // was std::out_of_range "stoll"
  EXPECT_EQ(all, std::vector<std::string>{real});
  EXPECT_EQ(latest_checkpoint(dir), real);
}

TEST(HardeningCheckpoint, AnInvalidRngStateIsRefusedNamingTheFile) {
  const std::string dir = test::scratch_dir("hardening_checkpoint_rng");
  TrainingCheckpoint ck = small_checkpoint(3);
  ck.cpu_rng_state = torch::zeros_like(at::detail::getDefaultCPUGenerator().get_state());  // checksum still valid
  const std::string path = save_checkpoint(dir, ck, 3);
  const std::string message = test::any_error_of([&] { load_checkpoint(path); });
  EXPECT_NE(message.find(path), std::string::npos) << message;  // was "Invalid mt19937 state" alone
  EXPECT_NE(message.find("rng/cpu"), std::string::npos) << message;
}

TEST_F(HardeningTraining, AnInvalidRngStateFallsBackToThePreviousCheckpoint) {
  const std::string out = test::scratch_dir("hardening_rng_fallback");
  const std::vector<std::string> settings = {"training.steps=4", "training.checkpoint_every=2", "training.keep_checkpoints=3"};
  {
    InProcessRun run(data(), out, settings);
    ASSERT_TRUE(run.trainer->run());
  }
  const auto all = list_checkpoints(out + "/checkpoints");
  ASSERT_EQ(all.size(), 2u);
  TrainingCheckpoint newest = load_checkpoint(all.back());
  newest.cpu_rng_state = torch::zeros_like(newest.cpu_rng_state);
  ASSERT_EQ(save_checkpoint(out + "/checkpoints", newest, 3), all.back());  // rewritten with a valid checksum
  InProcessRun resumed(data(), out, settings, /*resume=*/true);
  EXPECT_EQ(resumed.trainer->step(), 2);
  EXPECT_TRUE(fs::exists(all.back() + ".corrupt"));
}

TEST_F(HardeningTraining, ResumingWhenEveryCheckpointWasCorruptIsRefusedUnlessStartingOverIsAsked) {
  const std::string out = test::scratch_dir("hardening_all_corrupt");
  const std::vector<std::string> settings = {"training.steps=4", "training.checkpoint_every=2", "training.keep_checkpoints=3"};
  {
    InProcessRun run(data(), out, settings);
    ASSERT_TRUE(run.trainer->run());
  }
  for (const std::string& path : list_checkpoints(out + "/checkpoints")) {
    std::string bytes = test::read_file(path);
    bytes[bytes.size() - 5] ^= 0x01;
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  }
  // The first resume finds every checkpoint corrupt (renamed *.corrupt) and refuses.
  const std::string first = test::any_error_of([&] { InProcessRun resumed(data(), out, settings, /*resume=*/true); });
  EXPECT_NE(first.find("no usable checkpoint"), std::string::npos) << first;
  EXPECT_NE(first.find("--start-over"), std::string::npos) << first;
  ASSERT_TRUE(list_checkpoints(out + "/checkpoints").empty());
  // The second one used to start over from step 0 silently (exit 0): now refused too, naming the files.
  const std::string second = test::any_error_of([&] { InProcessRun resumed(data(), out, settings, /*resume=*/true); });
  EXPECT_NE(second.find("checkpoint-00000004.safetensors.corrupt"), std::string::npos) << second;
  EXPECT_NE(second.find("--start-over"), std::string::npos) << second;
  // Asked for, it starts over from step 0.
  RunConfig config = test::tiny_config([&] {
    auto o = test::shard_overrides(data());
    o.insert(o.end(), settings.begin(), settings.end());
    return o;
  }());
  Distributed distributed(ProcessTopology{}, torch::Device(torch::kCPU), std::chrono::seconds(10));
  ResumePolicy policy;
  policy.start_over = true;
  Trainer trainer(make_trainer_setup(config, out, /*resume=*/true, policy), distributed);
  EXPECT_EQ(trainer.step(), 0);
}

TEST_F(HardeningTraining, AResumeFromACheckpointWithoutChecksumIsRefusedAndTheFileKept) {
  const std::string out = test::scratch_dir("hardening_resume_unchecked");
  const std::vector<std::string> settings = {"training.steps=4", "training.checkpoint_every=2", "training.keep_checkpoints=3"};
  {
    InProcessRun run(data(), out, settings);
    ASSERT_TRUE(run.trainer->run());
  }
  const auto all = list_checkpoints(out + "/checkpoints");
  ASSERT_EQ(all.size(), 2u);
  drop_checksum(all.back());
  const std::string message = test::any_error_of([&] { InProcessRun resumed(data(), out, settings, /*resume=*/true); });
  EXPECT_NE(message.find(all.back()), std::string::npos) << message;
  EXPECT_NE(message.find("--allow-unchecked-checkpoint"), std::string::npos) << message;
  EXPECT_TRUE(fs::exists(all.back()));  // not renamed *.corrupt: nothing says it is corrupt
  // Allowed, it resumes from it.
  RunConfig config = test::tiny_config([&] {
    auto o = test::shard_overrides(data());
    o.insert(o.end(), settings.begin(), settings.end());
    return o;
  }());
  Distributed distributed(ProcessTopology{}, torch::Device(torch::kCPU), std::chrono::seconds(10));
  ResumePolicy policy;
  policy.allow_unchecked_checkpoint = true;
  Trainer trainer(make_trainer_setup(config, out, /*resume=*/true, policy), distributed);
  EXPECT_EQ(trainer.step(), 4);
}

TEST_F(HardeningTraining, IlfTrainStartOverAndAllowUncheckedNeedResume) {
  const std::string dir = test::scratch_dir("hardening_train_flags");
  EXPECT_EQ(test::run_tool("ilf_train", "--out " + dir + "/run --start-over", dir + "/a.log"), 2)
      << test::read_file(dir + "/a.log");
  EXPECT_EQ(test::run_tool("ilf_train", "--out " + dir + "/run --allow-unchecked-checkpoint", dir + "/b.log"), 2)
      << test::read_file(dir + "/b.log");
}

}  // namespace
}  // namespace ilf
