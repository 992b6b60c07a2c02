// Config reading: defaults, overrides, type errors and unknown keys, each naming the JSON path.
#include <gtest/gtest.h>

#include <fstream>

#include "ilf/accel/ilf.h"
#include "ilf/io/config.h"
#include "test_helpers.h"

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
// Issue 18: nesting depth and duplicate keys.

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
