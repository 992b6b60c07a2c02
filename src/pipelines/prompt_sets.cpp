// Prompt set readers (see include/ilf/pipelines/prompt_sets.h): one function per format, each naming
// the file and the line, row or key of whatever it refuses, so that a benchmark file that went wrong in
// a download is found before hours of sampling.
#include "ilf/io/atomic_file.h"
#include "ilf/pipelines/prompt_sets.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "ilf/error.h"
#include "ilf/io/json.h"

namespace ilf {
namespace {

bool prompt_set_blank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

std::string prompt_set_read_file(const std::string& path) {
  if (std::filesystem::is_directory(path)) throw Error(path + ": is a folder, not a prompt set file");
  require_regular_file(path, "prompt set");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot read the prompt set file");
  std::ostringstream text;
  text << in.rdbuf();
  std::string s = text.str();
  if (s.compare(0, 3, "\xEF\xBB\xBF") == 0) s.erase(0, 3);  // a UTF-8 byte-order mark
  return s;
}

std::vector<PromptItem> prompt_set_text(const std::string& path, const std::string& text) {
  std::vector<PromptItem> items;
  std::istringstream in(text);
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (prompt_set_blank(line)) continue;
    items.push_back({std::to_string(number), line, ""});
  }
  return items;
}

nlohmann::json prompt_set_parse_json(const std::string& path, const std::string& text) {
  try {
    return parse_json_strict(text, path);
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": not valid JSON (" + e.what() + ")");
  }
}

std::string prompt_set_string(const nlohmann::json& object, const std::string& key, const std::string& where, bool required) {
  const auto it = object.find(key);
  if (it == object.end()) {
    if (required) throw Error(where + ": missing \"" + key + "\"");
    return "";
  }
  if (it->is_number_integer() || it->is_number_unsigned()) return it->dump();
  if (!it->is_string()) throw Error(where + ": \"" + key + "\" must be a string, got " + it->type_name());
  return it->get<std::string>();
}

std::vector<PromptItem> prompt_set_mjhq(const std::string& path, const nlohmann::json& json) {
  std::vector<PromptItem> items;  // nlohmann's objects iterate in key order: the ids sorted
  for (const auto& [id, entry] : json.items()) {
    const std::string where = path + ": key \"" + id + "\"";
    if (!entry.is_object()) throw Error(where + ": expected an object {\"category\": ..., \"prompt\": ...}");
    PromptItem item{id, prompt_set_string(entry, "prompt", where, true), prompt_set_string(entry, "category", where, false)};
    if (prompt_set_blank(item.prompt)) throw Error(where + ": empty prompt");
    items.push_back(std::move(item));
  }
  return items;
}

std::vector<PromptItem> prompt_set_image_reward(const std::string& path, const nlohmann::json& json) {
  std::vector<PromptItem> items;
  for (size_t i = 0; i < json.size(); ++i) {
    const std::string where = path + ": item " + std::to_string(i);
    if (!json[i].is_object()) throw Error(where + ": expected an object {\"id\": ..., \"prompt\": ...}");
    PromptItem item{prompt_set_string(json[i], "id", where, true), prompt_set_string(json[i], "prompt", where, true), ""};
    if (prompt_set_blank(item.prompt)) throw Error(where + " (id " + item.id + "): empty prompt");
    items.push_back(std::move(item));
  }
  return items;
}

// RFC 4180 records: each with the 1-based line it starts on.
struct CsvRecord {
  int64_t line = 0;
  std::vector<std::string> fields;
};

std::vector<CsvRecord> prompt_set_csv_records(const std::string& path, const std::string& text) {
  std::vector<CsvRecord> records;
  CsvRecord record;
  std::string field;
  bool quoted = false, field_started = false;
  int64_t line = 1, quote_line = 0;
  record.line = 1;
  auto end_field = [&] {
    record.fields.push_back(field);
    field.clear();
    field_started = false;
  };
  auto end_record = [&] {
    end_field();
    const bool blank = record.fields.size() == 1 && prompt_set_blank(record.fields[0]);
    if (!blank) records.push_back(record);
    record = CsvRecord{};
    record.line = line;
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"') {
        if (i + 1 < text.size() && text[i + 1] == '"') {
          field.push_back('"');
          ++i;
        } else {
          quoted = false;
        }
      } else {
        if (c == '\n') ++line;
        field.push_back(c);
      }
      continue;
    }
    if (c == '"') {
      if (field_started && !prompt_set_blank(field))
        throw Error(path + ": line " + std::to_string(line) +
                    ": a quote inside an unquoted field (quote the field and double the quote)");
      field.clear();
      quoted = field_started = true;
      quote_line = line;
    } else if (c == ',') {
      end_field();
    } else if (c == '\n') {
      ++line;
      if (!field.empty() && field.back() == '\r') field.pop_back();
      end_record();
    } else {
      field.push_back(c);
      field_started = true;
    }
  }
  if (quoted) throw Error(path + ": line " + std::to_string(quote_line) + ": a quoted field is not closed");
  if (!field.empty() && field.back() == '\r') field.pop_back();
  if (!field.empty() || !record.fields.empty()) end_record();
  return records;
}

std::vector<PromptItem> prompt_set_drawbench(const std::string& path, const std::string& text) {
  const std::vector<CsvRecord> records = prompt_set_csv_records(path, text);
  if (records.empty()) throw Error(path + ": no header line (expected the columns \"Prompts\" and \"Category\")");
  const std::vector<std::string>& header = records[0].fields;
  int64_t prompt_column = -1, category_column = -1;
  for (size_t c = 0; c < header.size(); ++c) {
    if (header[c] == "Prompts" || header[c] == "Prompt") prompt_column = static_cast<int64_t>(c);
    if (header[c] == "Category") category_column = static_cast<int64_t>(c);
  }
  if (prompt_column < 0 || category_column < 0)
    throw Error(path + ": line " + std::to_string(records[0].line) +
                ": the header must name the columns \"Prompts\" and \"Category\" (DrawBench's CSV)");
  std::vector<PromptItem> items;
  for (size_t r = 1; r < records.size(); ++r) {
    const CsvRecord& record = records[r];
    const std::string where = path + ": line " + std::to_string(record.line);
    if (record.fields.size() != header.size())
      throw Error(where + ": " + std::to_string(record.fields.size()) + " fields, the header has " +
                  std::to_string(header.size()));
    PromptItem item{std::to_string(r), record.fields[static_cast<size_t>(prompt_column)],
                    record.fields[static_cast<size_t>(category_column)]};
    if (prompt_set_blank(item.prompt)) throw Error(where + ": empty prompt");
    items.push_back(std::move(item));
  }
  return items;
}

}  // namespace

PromptSetFormat parse_prompt_set_format(const std::string& name) {
  for (const PromptSetFormat f : {PromptSetFormat::kAuto, PromptSetFormat::kText, PromptSetFormat::kMjhq,
                                  PromptSetFormat::kDrawBench, PromptSetFormat::kImageReward})
    if (to_string(f) == name) return f;
  throw Error("unknown prompt set format \"" + name + "\" (expected auto, text, mjhq, drawbench or imagereward)");
}

std::string to_string(PromptSetFormat format) {
  switch (format) {
    case PromptSetFormat::kAuto: return "auto";
    case PromptSetFormat::kText: return "text";
    case PromptSetFormat::kMjhq: return "mjhq";
    case PromptSetFormat::kDrawBench: return "drawbench";
    case PromptSetFormat::kImageReward: return "imagereward";
  }
  return "auto";
}

PromptSet read_prompt_set(const std::string& path, PromptSetFormat format) {
  const std::string text = prompt_set_read_file(path);
  const std::string extension = std::filesystem::path(path).extension().string();
  nlohmann::json json;
  if (format == PromptSetFormat::kAuto) {
    if (extension == ".csv" || extension == ".CSV") {
      format = PromptSetFormat::kDrawBench;
    } else if (extension == ".json" || extension == ".JSON") {
      json = prompt_set_parse_json(path, text);
      if (json.is_object())
        format = PromptSetFormat::kMjhq;
      else if (json.is_array())
        format = PromptSetFormat::kImageReward;
      else
        throw Error(path +
                    ": a JSON prompt set is an object (MJHQ-30K's meta_data.json) or an array (ImageReward's benchmark prompts)");
    } else {
      format = PromptSetFormat::kText;
    }
  } else if (format == PromptSetFormat::kMjhq || format == PromptSetFormat::kImageReward) {
    json = prompt_set_parse_json(path, text);
  }
  PromptSet set{path, format, {}};
  switch (format) {
    case PromptSetFormat::kText: set.items = prompt_set_text(path, text); break;
    case PromptSetFormat::kDrawBench: set.items = prompt_set_drawbench(path, text); break;
    case PromptSetFormat::kMjhq:
      if (!json.is_object())
        throw Error(path + ": MJHQ-30K's meta_data.json is an object {\"<id>\": {\"category\", \"prompt\"}}");
      set.items = prompt_set_mjhq(path, json);
      break;
    case PromptSetFormat::kImageReward:
      if (!json.is_array()) throw Error(path + ": ImageReward's benchmark prompts are an array of {\"id\", \"prompt\"}");
      set.items = prompt_set_image_reward(path, json);
      break;
    case PromptSetFormat::kAuto: break;
  }
  if (set.items.empty()) throw Error(path + ": the prompt set has no prompts (" + to_string(format) + " format)");
  return set;
}

}  // namespace ilf
