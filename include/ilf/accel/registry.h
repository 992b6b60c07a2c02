// The registry of acceleration methods: for each `sampling.method` name, the function that reads its
// settings from the run config (each of its keys is read there and nowhere else) and the function that
// builds it. Adding a method = one file in accel/ plus one entry in src/accel/registry.cpp.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ilf/accel/method.h"
#include "ilf/feedback/feedback.h"
#include "ilf/io/config.h"

namespace ilf {

// Base of every method's settings struct (the parsed config section), tagged with the method's name.
class MethodSettings {
 public:
  explicit MethodSettings(std::string method) : method_(std::move(method)) {}
  virtual ~MethodSettings() = default;
  const std::string& method() const { return method_; }

 private:
  std::string method_;
};
using MethodSettingsPtr = std::shared_ptr<const MethodSettings>;

// What a method may need besides its settings.
struct MethodContext {
  std::string source = "config";           // the config file, for messages
  std::optional<FeedbackOptions> loop;     // the "ilf" section's inner loop, when the config sets it
  FeedbackModuleImpl* feedback = nullptr;  // the trained feedback module (absent when only planning)
  // Every method's settings by name, for methods that combine others (ilf_cache).
  const std::map<std::string, MethodSettingsPtr>* all_settings = nullptr;
};

struct MethodEntry {
  std::string name;                   // the value of sampling.method
  std::string section;                // the top-level config section its settings live in ("" = none)
  std::string description;            // one line, for --help and the docs
  bool uses_feedback_module = false;  // the pipeline loads ilf.feedback_weights for it
  // Reads the method's config keys (and validates what needs no backbone).
  std::function<MethodSettingsPtr(ConfigReader&)> parse;
  // Builds the method; `settings` is what parse returned.
  std::function<AccelerationMethodPtr(const MethodSettings& settings, const MethodContext& context)> make;
};

// Every registered method, in the order the docs list them.
const std::vector<MethodEntry>& acceleration_methods();
std::vector<std::string> acceleration_method_names();
// Throws ilf::Error listing the known names.
const MethodEntry& find_acceleration_method(const std::string& name);

// The settings of method `name` as its own type T (T's constructor tags it with `name`).
template <typename T>
const T& settings_as(const MethodSettings& settings, const std::string& name) {
  if (settings.method() != name) throw Error("acceleration method " + name + " was given the settings of " + settings.method());
  return static_cast<const T&>(settings);
}

}  // namespace ilf
