// Issue 18 regression tests: crashes by signal, silent garbage and silently ignored flags found by an
// adversarial pass. Each case gives a clear error naming the file, key or flag (one line, exit < 128,
// no output file), or the documented recovery (the previous checkpoint, with a warning).
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <filesystem>
#include <fstream>

#include "../tools/tool_common.h"
#include "ilf/config/run_config.h"
#include "ilf/error.h"
#include "ilf/io/atomic_file.h"
#include "ilf/io/config.h"
#include "ilf/io/json.h"
#include "ilf/io/safetensors.h"
#include "ilf/models/weights.h"
#include "ilf/training/checkpoint.h"
#include "ilf/training/datasets.h"
#include "training_test_support.h"

namespace ilf {
namespace {

namespace fs = std::filesystem;

// Unlike test::error_of, any exception: these tests read the message whatever layer throws it.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Runs a tool of the build with `args` (shell words), its stdout + stderr in `log`; returns the exit
// status, or 128 + signal.
int run_tool(const std::string& tool, const std::string& args, const std::string& log) {
  const int status = std::system((std::string(ILF_BINARY_DIR) + "/" + tool + " " + args + " > " + log + " 2>&1").c_str());
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

size_t line_count(const std::string& text) {
  size_t n = 0;
  for (char c : text) n += c == '\n';
  return n + (!text.empty() && text.back() != '\n');
}

// ---------------------------------------------------------------------------------------------
// Flags: one shared check for every tool (tools/tool_common.h).

TEST(HardeningFlags, BadNumericFlagsAreRefusedNamingTheFlagWithNoOutput) {
  const std::string dir = test::scratch_dir("hardening_flags");
  const std::string out = dir + "/sample.png";
  const std::string config = std::string(ILF_SOURCE_DIR) + "/configs/fashion_mnist.json";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--steps 0", "--steps"},
      {"--steps -1", "--steps"},
      {"--batch 0", "--batch"},
      {"--cfg nan", "--cfg"},
      {"--cfg inf", "--cfg"},
      {"--cfg -2", "--cfg"},
      {"--seed -1", "--seed"},
      {"--seed 18446744073709551616", "--seed"},
      {"--seed 99999999999999999999999", "--seed"},
      {"--steps 1e3", "--steps"},
  };
  for (const auto& [flags, name] : cases) {
    const std::string log = dir + "/log.txt";
    const int code = run_tool("ilf_sample", "--config " + config + " --out " + out + " " + flags, log);
    const std::string text = slurp(log);
    EXPECT_EQ(code, cli::kUsageError) << flags << ": " << text;
    EXPECT_NE(text.find(name), std::string::npos) << flags << ": " << text;
    EXPECT_EQ(line_count(text), 1u) << flags << ": " << text;
    EXPECT_FALSE(fs::exists(out)) << flags;
  }
  // The other tools share the checks.
  for (const std::string tool : {"ilf_eval", "ilf_calibrate"}) {
    const int code = run_tool(tool, "--config " + config + " --seed -1 --out " + dir + "/x.json", dir + "/log.txt");
    EXPECT_EQ(code, cli::kUsageError) << tool << ": " << slurp(dir + "/log.txt");
    EXPECT_NE(slurp(dir + "/log.txt").find("--seed"), std::string::npos);
    EXPECT_FALSE(fs::exists(dir + "/x.json"));
  }
}

TEST(HardeningFlags, BadSearchSpaceListsAreRefusedNamingTheFlagWithNoOutput) {
  const std::string dir = test::scratch_dir("hardening_search_flags");
  const std::string config = std::string(ILF_SOURCE_DIR) + "/configs/fashion_mnist.json";
  for (const auto& [flags, name] : std::vector<std::pair<std::string, std::string>>{{"--t-post none,anneel", "--t-post"},
                                                                                    {"--anneal-floors 5,x", "--anneal-floors"},
                                                                                    {"--anneal-scales -1", "--anneal-scales"},
                                                                                    {"--cache inside", "--cache"},
                                                                                    {"--strengths 1,-0.5", "--strengths"}}) {
    const int code = run_tool("ilf_search", "--config " + config + " --out " + dir + "/search " + flags, dir + "/log.txt");
    const std::string text = slurp(dir + "/log.txt");
    EXPECT_EQ(code, cli::kUsageError) << flags << ": " << text;
    EXPECT_NE(text.find(name), std::string::npos) << flags << ": " << text;
    EXPECT_EQ(line_count(text), 1u) << flags << ": " << text;
    EXPECT_FALSE(fs::exists(dir + "/search")) << flags;
  }
}

TEST(HardeningFlags, SeedTakesTheWholeUint64RangeInDecimal) {
  auto parse_seed = [](const std::string& value) {
    CLI::App app;
    uint64_t seed = 0;
    app.add_option("--seed", seed)->transform(cli::Seed);
    std::vector<std::string> args = {"--seed", value};
    std::reverse(args.begin(), args.end());
    app.parse(args);
    return seed;
  };
  EXPECT_EQ(parse_seed("18446744073709551615"), UINT64_MAX);
  EXPECT_EQ(parse_seed("0"), 0u);
  EXPECT_THROW(parse_seed("18446744073709551616"), CLI::ValidationError);
  EXPECT_THROW(parse_seed("-1"), CLI::ValidationError);
  EXPECT_THROW(parse_seed("0x10"), CLI::ValidationError);
  EXPECT_EQ(parse_seed("010"), 10u);  // decimal, not octal
}

// ---------------------------------------------------------------------------------------------
// Messages: one line, no LibTorch backtrace, exit status below 128.

TEST(HardeningMessages, LibTorchErrorsArePrintedWithoutTheirBacktrace) {
  try {
    TORCH_CHECK(false, "Dimension out of range (expected to be in range of [-1, 0], but got 3)");
    ADD_FAILURE() << "TORCH_CHECK did not throw";
  } catch (const c10::Error&) {
    const std::string line = cli::current_error_message();
    EXPECT_NE(line.find("Dimension out of range"), std::string::npos) << line;
    EXPECT_EQ(line.find("frame #"), std::string::npos) << line;
    EXPECT_EQ(line.find('\n'), std::string::npos) << line;
  }
}

TEST(HardeningMessages, ARunErrorIsOneLineAndExitsWithOne) {
  const std::string dir = test::scratch_dir("hardening_run_error");
  const int code = run_tool("ilf_sample",
                            "--config " + std::string(ILF_SOURCE_DIR) + "/configs/fashion_mnist.json --set weights=" + dir +
                                "/absent.safetensors --out " + dir + "/x.png",
                            dir + "/log.txt");
  EXPECT_EQ(code, 1) << slurp(dir + "/log.txt");
  EXPECT_EQ(line_count(slurp(dir + "/log.txt")), 1u) << slurp(dir + "/log.txt");
  EXPECT_NE(slurp(dir + "/log.txt").find("absent.safetensors"), std::string::npos);
}

TEST(HardeningMessages, ALongListOfUnknownKeysIsCut) {
  Json config = Json::object();
  for (int i = 0; i < 30; ++i) config["x" + std::to_string(i)] = 1;
  ConfigReader reader(config, "run.json");
  const std::string message = error_of([&] { reader.check_all_used(); });
  EXPECT_NE(message.find("and 20 more"), std::string::npos) << message;
  EXPECT_LT(message.size(), 400u) << message;
}

TEST(HardeningMessages, ASectionOfTheWrongTypeIsATypeErrorNotAnUnknownKey) {
  // `--set sampling=3` once said: unknown key "sampling".
  const std::string message = error_of([] { parse_run_config(Json{{"sampling", 3}}, "run.json"); });
  EXPECT_NE(message.find("run.json: \"sampling\" must be an object"), std::string::npos) << message;
  EXPECT_EQ(message.find("unknown key"), std::string::npos) << message;
  const std::string training = error_of([] { parse_run_config(Json{{"training", "fast"}}, "run.json"); });
  EXPECT_NE(training.find("run.json: \"training\" must be an object"), std::string::npos) << training;
}

// Found by fuzzing (tests/fuzz/corpus/*/regression-*): an exception without a file or key escaped.
TEST(HardeningFuzzFindings, AnIdxZeroDimensionBeforeHugeOnesIsRefusedNotAStrideOverflow) {
  // 6 dimensions: 0, then five of about 2^32: no data, but strides beyond int64 (a LibTorch error).
  const std::string path = test::scratch_dir("fuzz_idx") + "/zero-dim.idx";
  const unsigned char bytes[] = {0,    0,    8,    6,    0,    0,    0,    0, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
                                 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbd, 0, 0,    8,    3,    0,    0,    0xff};
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(bytes), sizeof bytes);
  const std::string message = error_of([&] { read_idx_file(path); });
  EXPECT_NE(message.find(path + ": the idx header declares more than the limit"), std::string::npos) << message;
}

TEST(HardeningFuzzFindings, AnOverrideOnAConfigThatIsNotAnObjectIsRefusedWithoutReadingOutOfBounds) {
  // A config file holding just `3`, then --set: the message read the key before the first (UBSan).
  Json config = 3;
  const std::string message = error_of([&] { apply_override(config, "sampling.steps=5"); });
  EXPECT_NE(message.find("--set sampling.steps=5: the config's top level is not an object"), std::string::npos) << message;
}

TEST(HardeningFuzzFindings, ANumberBeyondDoubleIsAnErrorNamingTheFileNotAnEscapedJsonException) {
  // 4444...e424444444444 overflows a double: nlohmann throws out_of_range.406, which no caller caught.
  const std::string path = test::scratch_dir("fuzz_number") + "/config.json";
  std::ofstream(path) << R"({"sampling": {"guidance_scale": 4444444444e424444444444}})";
  const std::string message = error_of([&] { load_json_file(path); });
  EXPECT_NE(message.find(path + ": invalid JSON"), std::string::npos) << message;
  EXPECT_NE(message.find("number overflow"), std::string::npos) << message;
  Json config = Json::object();
  const std::string set = error_of([&] { apply_override(config, "sampling.guidance_scale=1e999"); });
  EXPECT_NE(set.find("--set sampling.guidance_scale"), std::string::npos) << set;
  EXPECT_NE(set.find("number overflow"), std::string::npos) << set;
  const std::string header = error_of([] { parse_json_strict(R"({"a": -1e400})", "x.safetensors: header"); });
  EXPECT_NE(header.find("x.safetensors: header: invalid JSON"), std::string::npos) << header;
}

TEST(HardeningFuzzFindings, AnOverrideThatIsNotUtf8IsRefusedNamingSet) {
  // Taken as a plain string, it made every later message that quotes it throw nlohmann's type_error.316.
  Json config = Json::object();
  const std::string message = error_of([&] { apply_override(config, "model.depth=2\xf7\xf7"); });
  EXPECT_NE(message.find("--set"), std::string::npos) << message;
  EXPECT_NE(message.find("UTF-8"), std::string::npos) << message;
  EXPECT_TRUE(is_valid_utf8("plain \xc3\xa9t\xc3\xa9 \xe2\x98\x83 \xf0\x9f\x91\x9f"));
  for (const char* bad : {"\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff"})
    EXPECT_FALSE(is_valid_utf8(bad)) << bad;
}

// ---------------------------------------------------------------------------------------------
// Crashes by signal: a 0x0 patch kernel (SIGFPE while inferring the size from the weights).

TEST(HardeningWeights, ZeroSizePatchKernelIsAnErrorNamingTheKey) {
  for (const std::string file : {"dit_tiny.weights.safetensors", "pixart_tiny.weights.safetensors"}) {
    TensorMap w = read_safetensors(test::data_path(file)).tensors;
    const torch::Tensor& kernel = w.at("x_embedder.proj.weight");
    for (const std::vector<int64_t>& shape :
         {std::vector<int64_t>{kernel.size(0), kernel.size(1), 0, 0}, std::vector<int64_t>{kernel.size(0), kernel.size(1), 2, 0},
          std::vector<int64_t>{kernel.size(0), kernel.size(1), 2, 1}, std::vector<int64_t>{kernel.size(0)}}) {
      w["x_embedder.proj.weight"] = torch::zeros(shape);
      const std::string message = error_of([&] {
        if (file.rfind("dit", 0) == 0)
          infer_dit_config(w, file);
        else
          infer_pixart_config(w, file);
      });
      EXPECT_NE(message.find("x_embedder.proj.weight"), std::string::npos) << file << " " << message;
      EXPECT_NE(message.find(file), std::string::npos) << message;
    }
  }
}

TEST(HardeningWeights, ZeroSizePatchKernelFileGivesAToolError) {
  const std::string dir = test::scratch_dir("hardening_patch_tool");
  TensorMap w = read_safetensors(test::data_path("dit_tiny.weights.safetensors")).tensors;
  w["x_embedder.proj.weight"] =
      torch::zeros({w.at("x_embedder.proj.weight").size(0), w.at("x_embedder.proj.weight").size(1), 0, 0});
  write_safetensors(dir + "/w.safetensors", w);
  const int code = run_tool("ilf_forward",
                            "--weights " + dir + "/w.safetensors --inputs " + test::data_path("dit_tiny.io.safetensors") +
                                " --out " + dir + "/out.safetensors --set model.num_heads=4",
                            dir + "/log.txt");
  EXPECT_EQ(code, 1) << slurp(dir + "/log.txt");
  EXPECT_NE(slurp(dir + "/log.txt").find("x_embedder.proj.weight"), std::string::npos) << slurp(dir + "/log.txt");
  EXPECT_FALSE(fs::exists(dir + "/out.safetensors"));
}

// ---------------------------------------------------------------------------------------------
// Limits: sizes bounded before allocation, integers out of range named as such.

TEST(HardeningLimits, HugeModelSizesAndStepCountsAreRefusedNamingTheKey) {
  auto message = [](const std::string& assignment) {
    Json config = Json::object();
    apply_override(config, assignment);
    return error_of([&] { parse_run_config(config, "run.json"); });
  };
  for (const std::string key : {"model.depth", "model.hidden_size", "model.num_heads", "model.patch_size", "model.input_size"}) {
    const std::string m = message(key + "=1e9");
    EXPECT_NE(m.find(key), std::string::npos) << m;
    EXPECT_NE(m.find("from 1 to"), std::string::npos) << m;
    EXPECT_NE(message(key + "=0").find(key), std::string::npos);
  }
  EXPECT_NE(message("sampling.num_train_timesteps=1e9").find("num_train_timesteps"), std::string::npos);
  EXPECT_NE(message("sampling.steps=1000000000").find("sampling.steps"), std::string::npos);
  EXPECT_NE(message("model.mlp_ratio=1e9").find("model.mlp_ratio"), std::string::npos);
  // 2^64-1 was read as -1 ("got -1").
  const std::string big = message("training.steps=18446744073709551615");
  EXPECT_NE(big.find("training.steps"), std::string::npos) << big;
  EXPECT_EQ(big.find("-1"), std::string::npos) << big;
  EXPECT_NE(big.find("18446744073709551615"), std::string::npos) << big;
}

TEST(HardeningLimits, PlanValidatesTheModelDepth) {
  const std::string dir = test::scratch_dir("hardening_plan_depth");
  const int code = run_tool(
      "ilf_sample", "--config " + std::string(ILF_SOURCE_DIR) + "/configs/fashion_mnist.json --plan --set model.depth=1e9",
      dir + "/log.txt");
  EXPECT_EQ(code, 1) << slurp(dir + "/log.txt");
  EXPECT_NE(slurp(dir + "/log.txt").find("model.depth"), std::string::npos) << slurp(dir + "/log.txt");
}

namespace {
// An idx file of `declared` dims holding `bytes` data bytes, gzip-compressed (optionally without the trailer).
std::string write_idx(const std::string& path, const std::vector<uint32_t>& declared, size_t bytes, bool trailer = true) {
  std::string raw = {0, 0, 8, static_cast<char>(declared.size())};
  for (uint32_t d : declared)
    for (int s = 24; s >= 0; s -= 8) raw.push_back(static_cast<char>((d >> s) & 0xff));
  raw += std::string(bytes, '\x07');
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, raw.data(), static_cast<unsigned>(raw.size()));
  gzclose(f);
  if (!trailer) fs::resize_file(path, fs::file_size(path) - 8);
  return path;
}
}  // namespace

TEST(HardeningLimits, IdxDataIsBoundedByItsHeaderAndGzipNeedsItsTrailer) {
  const std::string dir = test::scratch_dir("hardening_idx");
  EXPECT_EQ(read_idx_file(write_idx(dir + "/ok.gz", {3, 4}, 12)).sizes().vec(), (std::vector<int64_t>{3, 4}));
  // More data than declared (a bomb inflates far beyond its header): refused after the declared bytes.
  const std::string more = error_of([&] { read_idx_file(write_idx(dir + "/more.gz", {3, 4}, 1 << 20)); });
  EXPECT_NE(more.find("more.gz"), std::string::npos) << more;
  EXPECT_NE(more.find("more than 12"), std::string::npos) << more;
  // Declared dimensions beyond the limit: refused before allocating.
  const std::string huge = error_of([&] { read_idx_file(write_idx(dir + "/huge.gz", {60000, 60000, 28}, 16)); });
  EXPECT_NE(huge.find("limit"), std::string::npos) << huge;
  // A gzip stream without its 8-byte trailer.
  const std::string cut = error_of([&] { read_idx_file(write_idx(dir + "/cut.gz", {3, 4}, 12, /*trailer=*/false)); });
  EXPECT_NE(cut.find("cut.gz"), std::string::npos) << cut;
  EXPECT_NE(cut.find("trailer"), std::string::npos) << cut;
}

// ---------------------------------------------------------------------------------------------
// Output paths: only regular files are replaced; a symbolic link's target is written.

TEST(HardeningOutput, DirectoriesFifosAndDevicesAreNotReplaced) {
  const std::string dir = test::scratch_dir("hardening_output_kinds");
  auto write = [](const std::string& path) { write_file_atomically(path, [](std::ostream& o) { o << "x"; }); };
  fs::create_directories(dir + "/folder");
  const std::string folder = error_of([&] { write(dir + "/folder"); });
  EXPECT_NE(folder.find("a directory"), std::string::npos) << folder;
  EXPECT_TRUE(fs::is_directory(dir + "/folder"));
  ASSERT_EQ(::mkfifo((dir + "/fifo").c_str(), 0644), 0);
  const std::string fifo = error_of([&] { write(dir + "/fifo"); });
  EXPECT_NE(fifo.find("fifo"), std::string::npos) << fifo;
  EXPECT_TRUE(fs::is_fifo(dir + "/fifo"));
  const std::string device = error_of([] { resolve_output_path("/dev/null"); });
  EXPECT_NE(device.find("/dev/null"), std::string::npos) << device;
  EXPECT_NE(device.find("device"), std::string::npos) << device;
  // Through a link to a device, too.
  fs::create_symlink("/dev/null", dir + "/to_device");
  EXPECT_NE(error_of([&] { write(dir + "/to_device"); }).find("device"), std::string::npos);
  EXPECT_TRUE(fs::is_symlink(dir + "/to_device"));
  EXPECT_TRUE(fs::is_empty(dir + "/folder"));
  for (const auto& entry : fs::directory_iterator(dir))
    EXPECT_EQ(entry.path().filename().string().find(".tmp."), std::string::npos) << entry.path();
}

TEST(HardeningOutput, ASymbolicLinkIsKeptAndItsTargetReplaced) {
  const std::string dir = test::scratch_dir("hardening_output_symlink");
  fs::create_directories(dir + "/real");
  std::ofstream(dir + "/real/file.txt") << "old";
  fs::create_symlink("real/file.txt", dir + "/link.txt");
  write_file_atomically(dir + "/link.txt", [](std::ostream& o) { o << "new"; });
  EXPECT_TRUE(fs::is_symlink(dir + "/link.txt"));
  EXPECT_EQ(slurp(dir + "/real/file.txt"), "new");
  // A dangling link: its target is created.
  fs::create_symlink("real/created.txt", dir + "/dangling.txt");
  write_file_atomically(dir + "/dangling.txt", [](std::ostream& o) { o << "made"; });
  EXPECT_TRUE(fs::is_symlink(dir + "/dangling.txt"));
  EXPECT_EQ(slurp(dir + "/real/created.txt"), "made");
}

TEST(HardeningOutput, StaleTemporaryFilesOfDeadWritersAreRemoved) {
  const std::string dir = test::scratch_dir("hardening_stale_tmp");
  std::ofstream(dir + "/config.json.tmp.999999999") << "x";  // above any pid_max: a dead writer
  std::ofstream(dir + "/metrics.jsonl.tmp.999999998") << "x";
  const std::string mine = dir + "/feedback.safetensors.tmp." + std::to_string(::getpid());
  std::ofstream(mine) << "x";
  std::ofstream(dir + "/notes.tmp.txt") << "x";
  const auto removed = remove_stale_temporary_files(dir);
  EXPECT_EQ(removed.size(), 2u);
  EXPECT_FALSE(fs::exists(dir + "/config.json.tmp.999999999"));
  EXPECT_FALSE(fs::exists(dir + "/metrics.jsonl.tmp.999999998"));
  EXPECT_TRUE(fs::exists(mine));
  EXPECT_TRUE(fs::exists(dir + "/notes.tmp.txt"));
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
  std::string bytes = slurp(path);
  bytes[bytes.size() - 3] ^= 0x10;  // inside the last tensor's data
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  const std::string message = error_of([&] { load_checkpoint(path); });
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("checksum"), std::string::npos) << message;
}

TEST(HardeningCheckpoint, NegativeOrMalformedStepMetadataIsRefusedNamingFileAndField) {
  const std::string dir = test::scratch_dir("hardening_checkpoint_step");
  // Written with a valid checksum: the metadata check itself refuses it.
  TrainingCheckpoint ck = small_checkpoint(-3);
  ck.optimizer.clear();
  const std::string path = save_checkpoint(dir, ck, 3);
  const std::string message = error_of([&] { load_checkpoint(path); });
  EXPECT_NE(message.find(path), std::string::npos) << message;
  EXPECT_NE(message.find("\"step\""), std::string::npos) << message;
  // Adam steps beyond the checkpoint's step.
  TrainingCheckpoint adam = small_checkpoint(4);
  adam.optimizer["w"].step = 1000;
  const std::string adam_path = save_checkpoint(dir, adam, 3);
  EXPECT_NE(error_of([&] { load_checkpoint(adam_path); }).find("adam_steps"), std::string::npos);
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
  std::string bytes = slurp(all.back());
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
  const std::string config_before = slurp(out + "/config.json");
  ASSERT_NE(config_before.find("\"steps\": 4"), std::string::npos);
  const std::string message = error_of([&] { test::InProcessRun resumed(data(), out, {"training.steps=2"}, /*resume=*/true); });
  EXPECT_NE(message.find("checkpoint-00000004.safetensors"), std::string::npos) << message;
  EXPECT_NE(message.find("\"step\""), std::string::npos) << message;
  EXPECT_NE(message.find("training.steps"), std::string::npos) << message;
  // The refused resume left the run's config as it was (it used to be rewritten with steps 2 first).
  EXPECT_EQ(slurp(out + "/config.json"), config_before);
}

}  // namespace
}  // namespace ilf
