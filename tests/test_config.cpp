// Config reading: defaults, overrides, type errors and unknown keys, each naming the JSON path.
#include <gtest/gtest.h>

#include "ilf/io/config.h"

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
