// Config reading: defaults, overrides, type errors and unknown keys, each naming the JSON path.
#include <gtest/gtest.h>

#include <fstream>

#include "ilf/accel/ilf.h"
#include "ilf/config/run_config.h"
#include "ilf/io/config.h"
#include "ilf/io/json.h"
#include "test_helpers.h"
#include "tool_test_support.h"

using namespace ilf;

namespace {
std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(Config, ReadsValuesAndDefaults) {
  ConfigReader r(Json::parse(R"({"model": {"depth": 12, "family": "dit"}})"), "run.json");
  EXPECT_EQ(r.get<int>("model.depth", 28), 12);
  EXPECT_EQ(r.get<int>("model.heads", 16), 16);
  EXPECT_EQ(r.choice("model.family", "dit", {"dit", "pixart"}), "dit");
  EXPECT_NO_THROW(r.check_all_used());
}

TEST(Config, UnknownKeyIsAnErrorNamingItsPath) {
  ConfigReader r(Json::parse(R"({"model": {"depth": 12, "dpeth": 3}})"), "run.json");
  r.get<int>("model.depth", 28);
  const auto msg = message_of([&] { r.check_all_used(); });
  EXPECT_NE(msg.find("model.dpeth"), std::string::npos) << msg;
  EXPECT_NE(msg.find("run.json"), std::string::npos) << msg;
}

TEST(Config, WrongTypeNamesPathAndExpectation) {
  ConfigReader r(Json::parse(R"({"sampling": {"steps": "ten"}})"), "run.json");
  const auto msg = message_of([&] { r.get<int>("sampling.steps", 20); });
  EXPECT_NE(msg.find("sampling.steps"), std::string::npos) << msg;
  EXPECT_NE(msg.find("integer"), std::string::npos) << msg;
}

TEST(Config, BadChoiceListsTheAllowedValues) {
  ConfigReader r(Json::parse(R"({"ilf": {"t_post": "rescal"}})"), "run.json");
  const auto msg = message_of([&] { r.choice("ilf.t_post", "none", {"none", "uniform", "rescale", "anneal"}); });
  EXPECT_NE(msg.find("anneal"), std::string::npos) << msg;
  EXPECT_NE(msg.find("rescal\""), std::string::npos) << msg;
}

TEST(Config, AnnealParametersAndStrengthAreReadAndBadOnesNamed) {
  ConfigReader ok(Json::parse(R"({"ilf": {"t_post": "anneal", "anneal_floor": 20, "anneal_scale": 0.5}})"), "run.json");
  const auto s = std::static_pointer_cast<const IlfSettings>(parse_ilf_settings(ok));
  EXPECT_EQ(s->anneal.floor, 20.0);
  EXPECT_EQ(s->anneal.scale, 0.5);
  ConfigReader defaults(Json::parse(R"({"ilf": {"t_post": "anneal"}})"), "run.json");
  EXPECT_TRUE(std::static_pointer_cast<const IlfSettings>(parse_ilf_settings(defaults))->anneal.is_default());
  for (const auto& [bad, key] :
       std::vector<std::pair<std::string, std::string>>{{R"({"ilf": {"anneal_floor": -1}})", "ilf.anneal_floor"},
                                                        {R"({"ilf": {"anneal_scale": "x"}})", "ilf.anneal_scale"},
                                                        {R"({"ilf": {"strength": -0.5}})", "ilf.strength"}}) {
    ConfigReader r(Json::parse(bad), "run.json");
    const std::string msg = message_of([&] { parse_ilf_settings(r); });
    EXPECT_NE(msg.find("run.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find(key), std::string::npos) << msg;
  }
  ConfigReader strength(Json::parse(R"({"ilf": {"strength": 0.5}})"), "run.json");
  EXPECT_EQ(std::static_pointer_cast<const IlfSettings>(parse_ilf_settings(strength))->strength, 0.5);
}

TEST(Config, OverridesParseJsonOrStrings) {
  Json j = Json::parse(R"({"sampling": {"steps": 20}})");
  apply_override(j, "sampling.steps=10");
  apply_override(j, "ilf.t_post=anneal");
  apply_override(j, "ilf.feedback_steps=[0,1,8,9]");
  EXPECT_EQ(j["sampling"]["steps"], 10);
  EXPECT_EQ(j["ilf"]["t_post"], "anneal");
  EXPECT_EQ(j["ilf"]["feedback_steps"].size(), 4u);
  EXPECT_THROW(apply_override(j, "novalue"), Error);
}

// ---------------------------------------------------------------------------------------------
// Nesting depth and duplicate keys.

namespace {
std::string write_text(const std::string& name, const std::string& text) {
  const std::string path = test::scratch_dir("config_" + name) + "/" + name + ".json";
  std::ofstream(path) << text;
  return path;
}
}  // namespace

TEST(ConfigLimits, DeeplyNestedConfigIsRefusedNotAStackOverflow) {
  // 80,000 levels overflowed the stack (SIGSEGV) in the recursive code that walks the tree.
  const int levels = 80000;
  std::string text;
  for (int i = 0; i < levels; ++i) text += "{\"a\":";
  text += "1";
  for (int i = 0; i < levels; ++i) text += "}";
  const std::string path = write_text("deep", text);
  const auto msg = message_of([&] { load_json_file(path); });
  EXPECT_NE(msg.find("deep.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("nested deeper than 64"), std::string::npos) << msg;
  // Arrays count too, and so do --set values.
  const auto arrays = message_of(
      [&] { load_json_file(write_text("deep_arrays", "{\"a\":" + std::string(100, '[') + std::string(100, ']') + "}")); });
  EXPECT_NE(arrays.find("nested deeper"), std::string::npos) << arrays;
  Json config = Json::object();
  const auto set = message_of([&] { apply_override(config, "model.x=" + std::string(100, '[') + std::string(100, ']')); });
  EXPECT_NE(set.find("--set model.x"), std::string::npos) << set;
  // 64 levels are fine.
  std::string ok;
  for (int i = 0; i < 63; ++i) ok += "{\"a\":";
  ok += "1" + std::string(63, '}');
  EXPECT_NO_THROW(load_json_file(write_text("ok_depth", ok)));
}

TEST(ConfigLimits, DuplicateKeysAreRefusedNamingTheirPath) {
  const std::string path = write_text("dup", R"({"model": {"depth": 2, "depth": 3}})");
  const auto msg = message_of([&] { load_json_file(path); });
  EXPECT_NE(msg.find("dup.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("duplicate key \"model.depth\""), std::string::npos) << msg;
  // The same name in different objects is fine.
  EXPECT_NO_THROW(load_json_file(write_text("nodup", R"({"a": {"x": 1}, "b": {"x": 2}, "c": [{"x": 1}, {"x": 2}]})")));
}

// ---------------------------------------------------------------------------------------------
// Messages: unknown-key lists cut short, a section of the wrong type named as such.

TEST(HardeningMessages, ALongListOfUnknownKeysIsCut) {
  Json config = Json::object();
  for (int i = 0; i < 30; ++i) config["x" + std::to_string(i)] = 1;
  ConfigReader reader(config, "run.json");
  const std::string message = test::any_error_of([&] { reader.check_all_used(); });
  EXPECT_NE(message.find("and 20 more"), std::string::npos) << message;
  EXPECT_LT(message.size(), 400u) << message;
}

TEST(HardeningMessages, ASectionOfTheWrongTypeIsATypeErrorNotAnUnknownKey) {
  // `--set sampling=3` once said: unknown key "sampling".
  const std::string message = test::any_error_of([] { parse_run_config(Json{{"sampling", 3}}, "run.json"); });
  EXPECT_NE(message.find("run.json: \"sampling\" must be an object"), std::string::npos) << message;
  EXPECT_EQ(message.find("unknown key"), std::string::npos) << message;
  const std::string training = test::any_error_of([] { parse_run_config(Json{{"training", "fast"}}, "run.json"); });
  EXPECT_NE(training.find("run.json: \"training\" must be an object"), std::string::npos) << training;
}

// Found by fuzzing (tests/fuzz/corpus/*/regression-*): an exception without a file or key escaped.
TEST(HardeningFuzzFindings, AnOverrideOnAConfigThatIsNotAnObjectIsRefusedWithoutReadingOutOfBounds) {
  // A config file holding just `3`, then --set: the message read the key before the first (UBSan).
  Json config = 3;
  const std::string message = test::any_error_of([&] { apply_override(config, "sampling.steps=5"); });
  EXPECT_NE(message.find("--set sampling.steps=5: the config's top level is not an object"), std::string::npos) << message;
}

TEST(HardeningFuzzFindings, ANumberBeyondDoubleIsAnErrorNamingTheFileNotAnEscapedJsonException) {
  // 4444...e424444444444 overflows a double: nlohmann throws out_of_range.406, which no caller caught.
  const std::string path = test::scratch_dir("fuzz_number") + "/config.json";
  std::ofstream(path) << R"({"sampling": {"guidance_scale": 4444444444e424444444444}})";
  const std::string message = test::any_error_of([&] { load_json_file(path); });
  EXPECT_NE(message.find(path + ": invalid JSON"), std::string::npos) << message;
  EXPECT_NE(message.find("number overflow"), std::string::npos) << message;
  Json config = Json::object();
  const std::string set = test::any_error_of([&] { apply_override(config, "sampling.guidance_scale=1e999"); });
  EXPECT_NE(set.find("--set sampling.guidance_scale"), std::string::npos) << set;
  EXPECT_NE(set.find("number overflow"), std::string::npos) << set;
  const std::string header = test::any_error_of([] { parse_json_strict(R"({"a": -1e400})", "x.safetensors: header"); });
  EXPECT_NE(header.find("x.safetensors: header: invalid JSON"), std::string::npos) << header;
}

TEST(HardeningFuzzFindings, AnOverrideThatIsNotUtf8IsRefusedNamingSet) {
  // Taken as a plain string, it made every later message that quotes it throw nlohmann's type_error.316.
  Json config = Json::object();
  const std::string message = test::any_error_of([&] { apply_override(config, "model.depth=2\xf7\xf7"); });
  EXPECT_NE(message.find("--set"), std::string::npos) << message;
  EXPECT_NE(message.find("UTF-8"), std::string::npos) << message;
  EXPECT_TRUE(is_valid_utf8("plain \xc3\xa9t\xc3\xa9 \xe2\x98\x83 \xf0\x9f\x91\x9f"));
  for (const char* bad : {"\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xff"})
    EXPECT_FALSE(is_valid_utf8(bad)) << bad;
}

// ---------------------------------------------------------------------------------------------
// Limits: sizes bounded before allocation, integers out of range named as such.

TEST(HardeningLimits, HugeModelSizesAndStepCountsAreRefusedNamingTheKey) {
  auto message = [](const std::string& assignment) {
    Json config = Json::object();
    apply_override(config, assignment);
    return test::any_error_of([&] { parse_run_config(config, "run.json"); });
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

// ---------------------------------------------------------------------------------------------
// Ranges (issue 33): numbers that can only give black, NaN or garbage images are refused naming the key
// and its range, the same through the config file and --set; every published setting stays accepted.

TEST(HardeningRanges, NumbersThatOnlyGiveGarbageAreRefusedNamingTheKeyAndTheRange) {
  auto message = [](const std::vector<std::string>& assignments) {
    Json config = Json::object();
    for (const auto& a : assignments) apply_override(config, a);
    return test::any_error_of([&] { parse_run_config(config, "run.json"); });
  };
  const std::vector<std::pair<std::vector<std::string>, std::pair<std::string, std::string>>> refused = {
      {{"sampling.guidance_scale=1e20"}, {"sampling.guidance_scale", "from 0 to 1000"}},
      {{"sampling.guidance_scale=1e308"}, {"sampling.guidance_scale", "from 0 to 1000"}},
      {{"sampling.guidance_scale=-1e308"}, {"sampling.guidance_scale", "from 0 to 1000"}},  // --cfg -1 is refused too
      {{"sampling.guidance_scale=-1"}, {"sampling.guidance_scale", "from 0 to 1000"}},
      {{"sampling.method=ilf", "ilf.strength=1e30"}, {"ilf.strength", "from 0 to 100"}},
      {{"sampling.beta_start=1e-300"}, {"sampling.beta_start", "from 1e-8 to 0.5"}},
      {{"sampling.beta_end=1e-300"}, {"sampling.beta_end", "from 1e-8 to 0.5"}},
      {{"sampling.beta_start=0.9"}, {"sampling.beta_start", "from 1e-8 to 0.5"}},
      // The documented maximum of timesteps with the default betas: alphas_cumprod underflows to 0.
      {{"sampling.num_train_timesteps=100000"}, {"sampling.num_train_timesteps", "alphas_cumprod falls to 0"}},
      // Betas that are valid alone but leave float32's 1 - beta at 1: sigma 0 at timestep 0.
      {{"sampling.beta_start=1e-8", "sampling.beta_end=1e-8"}, {"sampling.beta_start", "too small"}},
      {{"vae.scale_factor=1e-300"}, {"vae.scale_factor", "from 1e-4 to 1e4"}},
      {{"vae.scale_factor=1e30"}, {"vae.scale_factor", "from 1e-4 to 1e4"}},
      {{"model.lewei_scale=1e300"}, {"model.lewei_scale", "(0, 64]"}},
      {{"model.pe_interpolation=0"}, {"model.pe_interpolation", "(0, 64]"}},
      {{"training.sample_guidance=1e20"}, {"training.sample_guidance", "from 0 to 1000"}},
      {{"training.distill_guidance=1e20"}, {"training.distill_guidance", "from 0 to 1000"}},
      {{"text.max_length=9223372036854775807"}, {"text.max_length", "from 1 to 65536"}},
  };
  for (const auto& [assignments, expected] : refused) {
    const std::string m = message(assignments);
    EXPECT_NE(m.find(expected.first), std::string::npos) << assignments.back() << ": " << m;
    EXPECT_NE(m.find(expected.second), std::string::npos) << assignments.back() << ": " << m;
  }
  // Every published setting is inside the ranges.
  for (const auto& accepted : std::vector<std::vector<std::string>>{
           {"sampling.guidance_scale=0"},
           {"sampling.guidance_scale=4.5"},
           {"sampling.guidance_scale=1000"},
           {"sampling.method=ilf", "ilf.strength=1.5"},
           {"sampling.beta_start=0.00085", "sampling.beta_end=0.012", "sampling.beta_schedule=scaled_linear"},
           {"sampling.num_train_timesteps=4000"},
           {"vae.scale_factor=0.13025"},
           {"vae.scale_factor=1.5305"},
           {"model.lewei_scale=2", "model.pe_interpolation=0.5"}})
    EXPECT_EQ(message(accepted), "") << accepted.back();
}
