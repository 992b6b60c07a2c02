// What a client may ask the image server for, checked before anything is queued: the OpenAI images
// request (prompt, n, size, response_format, model, user) and our structured extras (seed, steps, method,
// guidance_scale, negative_prompt, settings), each refused with a 400 naming the field. The settings are
// config keys as `--set` takes them; which keys a request may set is decided here too (the sampling,
// feedback and method sections, never a key that names a file), so one place says what a request can do.
#include <algorithm>
#include <cmath>
#include <limits>

#include "ilf/config/run_config.h"
#include "ilf/io/json.h"
#include "ilf/pipelines/text_to_image.h"
#include "ilf/sampling/sampler.h"
#include "ilf/serve/image_service.h"
#include "request_settings.h"
#include "ilf/util/checks.h"
#include "ilf/util/strings.h"

namespace ilf::serve {

std::string RequestError::to_json() const {
  const Json error = {
      {"error",
       {{"message", what()}, {"type", type_}, {"param", param_.empty() ? Json(nullptr) : Json(param_)}, {"code", nullptr}}}};
  return error.dump(-1, ' ', false, Json::error_handler_t::replace);  // a message may quote invalid UTF-8
}

const char* to_string(JobState state) {
  switch (state) {
    case JobState::kQueued: return "queued";
    case JobState::kRunning: return "running";
    case JobState::kDone: return "done";
    case JobState::kFailed: return "failed";
    case JobState::kCancelled: return "cancelled";
  }
  return "unknown";
}

void ServiceOptions::validate() const {
  const auto in_range = [](const char* name, int64_t value, int64_t lo, int64_t hi) {
    if (value < lo || value > hi)
      throw Error(std::string(name) + " must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi) + " (got " +
                  std::to_string(value) + ")");
  };
  in_range("--max-batch", max_batch, 1, kMaxBatch);
  in_range("--max-queue", max_queue, 1, 1000000);
  in_range("--max-images-per-request", max_images_per_request, 1, kMaxBatch);
  in_range("--max-steps", max_steps, 1, 100000);
  in_range("--max-image-side", max_image_side, 1, kMaxImageSide);
  in_range("--max-jobs-kept", max_jobs_kept, 1, 10000000);
  if (!(request_timeout_s > 0) || !std::isfinite(request_timeout_s) || request_timeout_s > 7 * 24 * 3600)
    throw Error("--request-timeout must be a number of seconds in (0, 604800]");
}

namespace {

const std::vector<std::string>& known_fields() {
  static const std::vector<std::string> fields = {"prompt", "n",     "size",   "response_format", "model",           "user",
                                                  "seed",   "steps", "method", "guidance_scale",  "negative_prompt", "settings"};
  return fields;
}

RequestError bad(const std::string& field, const std::string& message) { return RequestError(400, message, field); }

// JSON type names for messages: "a string", "an integer", ...
std::string json_kind(const Json& v) {
  if (v.is_null()) return "null";
  if (v.is_boolean()) return "a boolean";
  if (v.is_number_integer() || v.is_number_unsigned()) return "an integer";
  if (v.is_number()) return "a number";
  if (v.is_string()) return "a string";
  if (v.is_array()) return "an array";
  return "an object";
}

std::string string_field(const Json& body, const std::string& field) {
  const Json& v = body.at(field);
  if (!v.is_string()) throw bad(field, "\"" + field + "\" must be a string (got " + json_kind(v) + ")");
  return v.get<std::string>();
}

int64_t integer_field(const Json& body, const std::string& field, int64_t lo, int64_t hi) {
  const Json& v = body.at(field);
  const std::string range = " from " + std::to_string(lo) + " to " + std::to_string(hi);
  if (!(v.is_number_integer() || v.is_number_unsigned()))
    throw bad(field, "\"" + field + "\" must be an integer" + range + " (got " + json_kind(v) + ")");
  // JSON's non-negative integers parse as unsigned: compare as unsigned first (2^64-1 must not wrap to -1).
  const bool in_range = v.is_number_unsigned() ? v.get<uint64_t>() <= static_cast<uint64_t>(hi) && v.get<int64_t>() >= lo
                                               : v.get<int64_t>() >= lo && v.get<int64_t>() <= hi;
  if (!in_range) throw bad(field, "\"" + field + "\" must be an integer" + range + " (got " + abbreviated(v.dump(), 40) + ")");
  return v.get<int64_t>();
}

// "WIDTHxHEIGHT", each side 1 .. max_side.
std::pair<int64_t, int64_t> parse_size(const std::string& text, int64_t max_side) {
  const std::string expected = "\"size\" must be \"WIDTHxHEIGHT\" with sides from 1 to " + std::to_string(max_side) +
                               " pixels, e.g. \"512x512\" (got \"" + abbreviated(text, 40) + "\")";
  const auto x = text.find('x');
  if (x == std::string::npos || x == 0 || x + 1 == text.size() || x > 6 || text.size() - x - 1 > 6) throw bad("size", expected);
  const auto side = [&](const std::string& digits) {
    if (!std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) throw bad("size", expected);
    const int64_t value = std::stoll(digits);
    if (value < 1 || value > max_side) throw bad("size", expected);
    return value;
  };
  return {side(text.substr(0, x)), side(text.substr(x + 1))};
}

}  // namespace

std::vector<std::string> request_settable_sections() {
  std::vector<std::string> sections = {"sampling", "ilf"};
  const std::vector<std::string> not_settable = {"model",    "weights", "class_names", "vae",    "text",
                                                 "training", "data",    "eval",        "metrics"};
  for (const std::string& s : run_config_sections())
    if (std::find(not_settable.begin(), not_settable.end(), s) == not_settable.end() &&
        std::find(sections.begin(), sections.end(), s) == sections.end())
      sections.push_back(s);
  return sections;
}

void set_dotted_key(Json& json, const std::string& key, const Json& value) {
  Json* node = &json;
  size_t begin = 0;
  while (true) {
    const size_t dot = key.find('.', begin);
    const std::string part = key.substr(begin, dot == std::string::npos ? std::string::npos : dot - begin);
    if (dot == std::string::npos) {
      (*node)[part] = value;
      return;
    }
    if (!node->contains(part) || !(*node)[part].is_object()) (*node)[part] = Json::object();
    node = &(*node)[part];
    begin = dot + 1;
  }
}

ImageRequest parse_image_request(const std::string& body_text, const ServiceOptions& options) {
  Json body;
  try {
    body = Json::parse(body_text);
  } catch (const nlohmann::json::exception& e) {
    // nlohmann's message says where: "parse error at line 1, column 9: ..."; the id prefix is dropped.
    std::string what = e.what();
    const auto bracket = what.find("] ");
    if (bracket != std::string::npos) what = what.substr(bracket + 2);
    throw RequestError(400, "the request body is not valid JSON: " + abbreviated(what, 200));
  }
  if (!body.is_object()) throw RequestError(400, "the request body must be a JSON object (got " + json_kind(body) + ")");
  for (const auto& item : body.items())
    if (std::find(known_fields().begin(), known_fields().end(), item.key()) == known_fields().end())
      throw bad(item.key(),
                "unknown field \"" + abbreviated(item.key(), 40) + "\" (expected one of " + join(known_fields()) + ")");

  ImageRequest r;
  if (!body.contains("prompt")) throw bad("prompt", "\"prompt\" is required");
  r.prompt = string_field(body, "prompt");
  if (r.prompt.empty()) throw bad("prompt", "\"prompt\" must not be empty");
  if (r.prompt.size() > kMaxPromptLineBytes)
    throw bad("prompt", "\"prompt\" is longer than " + std::to_string(kMaxPromptLineBytes) + " bytes");
  if (body.contains("n")) r.n = integer_field(body, "n", 1, options.max_images_per_request);
  if (body.contains("size")) {
    const auto [width, height] = parse_size(string_field(body, "size"), options.max_image_side);
    r.width = width;
    r.height = height;
  }
  if (body.contains("response_format")) {
    const std::string format = string_field(body, "response_format");
    if (format == "url")
      throw bad("response_format",
                "\"response_format\": \"url\" is not supported (this server keeps no images to link to); use \"b64_json\"");
    if (format != "b64_json") throw bad("response_format", "\"response_format\" must be \"b64_json\"");
  }
  if (body.contains("model")) r.model = string_field(body, "model");
  if (body.contains("user")) string_field(body, "user");  // accepted as OpenAI's API does, not used
  if (body.contains("seed")) r.seed = static_cast<uint64_t>(integer_field(body, "seed", 0, std::numeric_limits<int64_t>::max()));
  if (body.contains("negative_prompt")) {
    r.negative_prompt = string_field(body, "negative_prompt");
    if (r.negative_prompt->size() > kMaxPromptLineBytes)
      throw bad("negative_prompt", "\"negative_prompt\" is longer than " + std::to_string(kMaxPromptLineBytes) + " bytes");
  }

  // Settings first, then the named fields (which win): both become config keys.
  if (body.contains("settings")) {
    const Json& settings = body.at("settings");
    if (!settings.is_object())
      throw bad("settings",
                "\"settings\" must be an object of config keys, e.g. {\"ilf.strength\": 0.5} (got " + json_kind(settings) + ")");
    const std::vector<std::string> sections = request_settable_sections();
    for (const auto& item : settings.items()) {
      const std::string& key = item.key();
      const std::string param = "settings." + abbreviated(key, 60);
      const std::string section = key.substr(0, key.find('.'));
      if (key.find('.') == std::string::npos || key.back() == '.' || key.find("..") != std::string::npos)
        throw bad(param, "settings: \"" + abbreviated(key, 60) + "\" is not a dotted config key such as \"ilf.strength\"");
      if (std::find(sections.begin(), sections.end(), section) == sections.end())
        throw bad(param, "settings: \"" + abbreviated(key, 60) + "\": a request may set keys of " + join(sections) +
                             " only (the model, its files and training are the server's)");
      if (item.value().is_null()) throw bad(param, "settings: \"" + abbreviated(key, 60) + "\" must not be null");
      r.overrides[key] = item.value();
    }
  }
  if (r.overrides.contains("sampling.steps")) {  // the limit holds however the steps are given
    const Json& steps = r.overrides["sampling.steps"];
    if ((steps.is_number_integer() || steps.is_number_unsigned()) && steps.get<int64_t>() > options.max_steps)
      throw bad("settings.sampling.steps", "settings: \"sampling.steps\" must be at most " + std::to_string(options.max_steps) +
                                               " (the server's --max-steps)");
  }
  if (body.contains("steps")) r.overrides["sampling.steps"] = integer_field(body, "steps", 1, options.max_steps);
  if (body.contains("method")) r.overrides["sampling.method"] = string_field(body, "method");
  if (body.contains("guidance_scale")) {
    const Json& v = body.at("guidance_scale");
    if (!v.is_number() || !std::isfinite(v.get<double>()) || v.get<double>() < 0 || v.get<double>() > kMaxGuidanceScale)
      throw bad("guidance_scale", "\"guidance_scale\" must be a number from 0 to " + number_text(kMaxGuidanceScale) + " (got " +
                                      abbreviated(v.dump(), 40) + ")");
    r.overrides["sampling.guidance_scale"] = v;
  }
  return r;
}

}  // namespace ilf::serve
