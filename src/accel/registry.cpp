// The registry of acceleration methods (see include/ilf/accel/registry.h): one entry per method.
#include "ilf/accel/registry.h"

#include "ilf/accel/baseline.h"
#include "ilf/accel/cache.h"
#include "ilf/accel/delta_dit.h"
#include "ilf/accel/fora.h"
#include "ilf/accel/ilf.h"
#include "ilf/accel/ilf_cache.h"
#include "ilf/accel/l2c.h"
#include "ilf/accel/taylorseer.h"
#include "ilf/accel/teacache.h"
#include "ilf/error.h"

namespace ilf {

namespace {

// The inner loop of the "ilf" section, required by the methods that use feedback.
const FeedbackOptions& required_loop(const MethodContext& context, const std::string& method) {
  if (!context.loop)
    throw Error(context.source + ": sampling method " + method +
                " needs the inner loop: \"ilf.loop_begin\" and \"ilf.loop_end\"");
  return *context.loop;
}

std::vector<MethodEntry> make_entries() {
  std::vector<MethodEntry> entries;
  entries.push_back(
      {"baseline", "", "every block on every step (the plain sampler)", false,
       [](ConfigReader&) -> MethodSettingsPtr { return std::make_shared<MethodSettings>("baseline"); },
       [](const MethodSettings&, const MethodContext&) -> AccelerationMethodPtr { return std::make_unique<BaselineMethod>(); }});
  entries.push_back({"ilf", "ilf", "Inner Loop Feedback: the trained feedback module on the steps of ilf.feedback_steps", true,
                     parse_ilf_settings, [](const MethodSettings& s, const MethodContext& c) -> AccelerationMethodPtr {
                       const FeedbackOptions& loop = required_loop(c, "ilf");
                       return std::make_unique<IlfMethod>(settings_as<IlfSettings>(s, "ilf"), loop.loop_begin, loop.loop_end,
                                                          c.feedback);
                     }});
  entries.push_back({"cache", "cache", "the paper's caching baseline: residuals of a block range reused between full steps",
                     false, parse_cache_options, [](const MethodSettings& s, const MethodContext&) -> AccelerationMethodPtr {
                       return std::make_unique<CacheMethod>(settings_as<CacheOptions>(s, "cache"));
                     }});
  entries.push_back({"fora", "fora", "FORA: every block's attention and MLP outputs reused between full steps", false,
                     parse_fora_settings, [](const MethodSettings& s, const MethodContext&) -> AccelerationMethodPtr {
                       return std::make_unique<ForaMethod>(settings_as<ForaSettings>(s, "fora"));
                     }});
  entries.push_back({"delta_dit", "delta_dit",
                     "Delta-DiT: the deviation of the rear (early steps) or front (late steps) blocks reused", false,
                     parse_delta_dit_settings, [](const MethodSettings& s, const MethodContext&) -> AccelerationMethodPtr {
                       return std::make_unique<DeltaDitMethod>(settings_as<DeltaDitSettings>(s, "delta_dit"));
                     }});
  entries.push_back({"teacache", "teacache",
                     "TeaCache: whole steps skipped while the modulated input's accumulated change stays small", false,
                     parse_teacache_settings, [](const MethodSettings& s, const MethodContext&) -> AccelerationMethodPtr {
                       return std::make_unique<TeaCacheMethod>(settings_as<TeaCacheSettings>(s, "teacache"));
                     }});
  entries.push_back({"taylorseer", "taylorseer", "TaylorSeer: block features forecast by a Taylor expansion between full steps",
                     false, parse_taylorseer_settings,
                     [](const MethodSettings& s, const MethodContext&) -> AccelerationMethodPtr {
                       return std::make_unique<TaylorSeerMethod>(settings_as<TaylorSeerSettings>(s, "taylorseer"));
                     }});
  entries.push_back(
      {"l2c", "l2c",
       "Learning-to-Cache: full and cache steps alternate; a router trained by ilf_train picks the blocks a cache step reuses",
       false, parse_l2c_settings, [](const MethodSettings& s, const MethodContext&) -> AccelerationMethodPtr {
         return std::make_unique<L2CMethod>(settings_as<L2CSettings>(s, "l2c"));
       }});
  entries.push_back(
      {"ilf_cache", "ilf_cache",
       "ILF on its feedback steps; caching, or TaylorSeer forecasting, on the others (or caching of the blocks outside the "
       "loop)",
       true, parse_ilf_cache_settings, [](const MethodSettings& s, const MethodContext& c) -> AccelerationMethodPtr {
         const FeedbackOptions& loop = required_loop(c, "ilf_cache");
         if (!c.all_settings) throw Error("ilf_cache needs the ilf and cache settings");
         return std::make_unique<IlfCacheMethod>(settings_as<IlfCacheSettings>(s, "ilf_cache"),
                                                 settings_as<IlfSettings>(*c.all_settings->at("ilf"), "ilf"),
                                                 settings_as<CacheOptions>(*c.all_settings->at("cache"), "cache"),
                                                 settings_as<TaylorSeerSettings>(*c.all_settings->at("taylorseer"), "taylorseer"),
                                                 loop.loop_begin, loop.loop_end, c.feedback);
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
