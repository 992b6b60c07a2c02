// The registry of acceleration methods (see include/ilf/accel/registry.h): one entry per method.
#include "ilf/accel/registry.h"

#include "ilf/accel/baseline.h"
#include "ilf/accel/cache.h"
#include "ilf/accel/ilf.h"
#include "ilf/error.h"

namespace ilf {

namespace {

// The inner loop of the "ilf" section, required by the methods that use feedback.
const FeedbackOptions& required_loop(const MethodContext& context, const std::string& method) {
  if (!context.loop)
    throw Error(context.source + ": sampling method " + method + " needs the inner loop: \"ilf.loop_begin\" and \"ilf.loop_end\"");
  return *context.loop;
}

std::vector<MethodEntry> make_entries() {
  std::vector<MethodEntry> entries;
  entries.push_back({"baseline", "", "every block on every step (the plain sampler)", false,
                     [](ConfigReader&) -> MethodSettingsPtr { return std::make_shared<MethodSettings>("baseline"); },
                     [](const MethodSettings&, const MethodContext&) -> AccelerationMethodPtr {
                       return std::make_unique<BaselineMethod>();
                     }});
  entries.push_back({"ilf", "ilf", "Inner Loop Feedback: the trained feedback module on the steps of ilf.feedback_steps", true,
                     parse_ilf_settings, [](const MethodSettings& s, const MethodContext& c) -> AccelerationMethodPtr {
                       const FeedbackOptions& loop = required_loop(c, "ilf");
                       return std::make_unique<IlfMethod>(settings_as<IlfSettings>(s, "ilf"), loop.loop_begin,
                                                          loop.loop_end, c.feedback);
                     }});
  entries.push_back({"cache", "cache", "the paper's caching baseline: residuals of a block range reused between full steps",
                     false, parse_cache_options,
                     [](const MethodSettings& s, const MethodContext&) -> AccelerationMethodPtr {
                       return std::make_unique<CacheMethod>(settings_as<CacheOptions>(s, "cache"));
                     }});
  return entries;
}

}  // namespace

const std::vector<MethodEntry>& acceleration_methods() {
  static const std::vector<MethodEntry> entries = make_entries();
  return entries;
}

std::vector<std::string> acceleration_method_names() {
  std::vector<std::string> names;
  for (const auto& e : acceleration_methods()) names.push_back(e.name);
  return names;
}

const MethodEntry& find_acceleration_method(const std::string& name) {
  for (const auto& e : acceleration_methods())
    if (e.name == name) return e;
  std::string list;
  for (const auto& n : acceleration_method_names()) list += (list.empty() ? "" : ", ") + n;
  throw Error("unknown sampling method \"" + name + "\" (expected " + list + ")");
}

}  // namespace ilf
