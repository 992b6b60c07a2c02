// JSON configuration with validation: every tool reads its settings through a ConfigReader, which
// records each key it reads, so that keys nobody read (typos, stale settings) are reported as errors
// naming their JSON path. `--set a.b=value` overrides are applied to the JSON before reading.
#pragma once
#include <nlohmann/json.hpp>

#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "ilf/error.h"

namespace ilf {

using Json = nlohmann::json;

// Reads a JSON file; throws ilf::Error naming the file on I/O or syntax errors.
Json load_json_file(const std::string& path);

// Applies one override "a.b.c=value" to `config` (value null unsets a key). The value is parsed as JSON when it parses
// (numbers, true/false, arrays, objects, quoted strings), otherwise taken as a plain string.
// Intermediate objects are created as needed.
void apply_override(Json& config, const std::string& assignment);

class ConfigReader {
 public:
  // `source` names where the JSON came from (a file name) for error messages.
  ConfigReader(Json config, std::string source);

  bool has(const std::string& path) const;

  // Reads the value at a dotted path; missing -> `fallback`. A value of the wrong type throws an
  // ilf::Error naming the source, the path, the expected type and the value found.
  template <typename T>
  T get(const std::string& path, const T& fallback) {
    if (!has(path)) return fallback;
    return require<T>(path);
  }

  template <typename T>
  T require(const std::string& path) {
    const Json& v = at(path);
    mark_used(path);
    try {
      check_kind<T>(v, path);
      return v.get<T>();
    } catch (const nlohmann::json::exception&) {
      throw type_error(path, type_name<T>(), v);
    }
  }

  // A file or folder path at `path` (missing -> `fallback`), resolved as resolve_config_path does ("" stays
  // ""). The key is recorded in file_keys(): the keys that name files, which the image server refuses to
  // take from a request.
  std::string file_path(const std::string& path, const std::string& fallback = "");
  const std::set<std::string>& file_keys() const { return file_keys_; }

  // A string that must be one of `allowed`.
  std::string choice(const std::string& path, const std::string& fallback, const std::vector<std::string>& allowed);

  // Marks a whole subtree as read (for free-form sections such as metadata).
  void mark_used(const std::string& path);

  // Throws ilf::Error listing every key that was never read ("unknown key").
  void check_all_used() const;

  const Json& json() const { return config_; }
  const std::string& source() const { return source_; }

  // Error helper for validation that the reader itself cannot do ("must be >= 1").
  Error invalid(const std::string& path, const std::string& expectation) const;

 private:
  const Json& at(const std::string& path) const;
  Error type_error(const std::string& path, const std::string& expected, const Json& found) const;
  const Json* find(const std::string& path) const;
  template <typename T>
  static std::string type_name();
  template <typename T>
  void check_kind(const Json& v, const std::string& path) const;
  void collect_unused(const Json& node, const std::string& prefix, std::vector<std::string>& out) const;

  Json config_;
  std::string source_;
  std::set<std::string> used_;
  std::set<std::string> file_keys_;
};

// A file path from a config: absolute or existing relative to the working directory as given;
// otherwise relative to the folder of the config file (so configs can name files beside them).
std::string resolve_config_path(const ConfigReader& reader, const std::string& value);

template <typename T>
std::string ConfigReader::type_name() {
  if constexpr (std::is_same_v<T, bool>)
    return "a boolean";
  else if constexpr (std::is_integral_v<T>)
    return "an integer";
  else if constexpr (std::is_floating_point_v<T>)
    return "a number";
  else if constexpr (std::is_same_v<T, std::string>)
    return "a string";
  else
    return "a value of the right shape";
}

template <typename T>
void ConfigReader::check_kind(const Json& v, const std::string& path) const {
  bool ok = true;
  if constexpr (std::is_same_v<T, bool>)
    ok = v.is_boolean();
  else if constexpr (std::is_integral_v<T>) {
    // In T's range: 2^64-1 read as an int64 used to wrap to -1, 1e300 to an undefined value.
    if (v.is_number_unsigned())
      ok = v.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max());
    else if (v.is_number_integer())
      ok = v.get<int64_t>() >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
           (std::is_unsigned_v<T> || v.get<int64_t>() <= static_cast<int64_t>(std::numeric_limits<T>::max()));
    else if (v.is_number_float()) {
      const double d = v.get<double>();
      ok = std::isfinite(d) && d == std::floor(d) && d >= -9.2e18 && d <= 9.2e18 &&
           static_cast<int64_t>(d) >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
           (std::is_unsigned_v<T> || static_cast<int64_t>(d) <= static_cast<int64_t>(std::numeric_limits<T>::max()));
    } else
      ok = false;
    if (!ok && v.is_number())
      throw type_error(path,
                       "an integer from " + std::to_string(std::numeric_limits<T>::min()) + " to " +
                           std::to_string(std::numeric_limits<T>::max()),
                       v);
  } else if constexpr (std::is_floating_point_v<T>)
    ok = v.is_number();
  else if constexpr (std::is_same_v<T, std::string>)
    ok = v.is_string();
  if (!ok) throw type_error(path, type_name<T>(), v);
}

}  // namespace ilf
