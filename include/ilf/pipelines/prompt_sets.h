// Prompt sets, the lists of prompts a text-to-image model is evaluated on, read from the files their
// benchmarks ship, into one form: items with an id, the prompt and a category ("" when the set has none).
//   - plain text (.txt, or any other extension): one prompt per line; blank (all-whitespace) lines are
//     skipped, a trailing '\r' is dropped, nothing else is trimmed; the id is the 1-based line number;
//   - MJHQ-30K's meta_data.json: {"<id>": {"category": ..., "prompt": ...}, ...}; items in the order of
//     their ids (byte order: a stable order whatever order the file lists them in);
//   - DrawBench's CSV (.csv): a header with the columns "Prompts" (or "Prompt") and "Category" (others
//     are ignored),
//     RFC 4180 fields (quoted fields may hold commas, newlines and doubled quotes); the id is the 1-based
//     data row; blank lines are skipped;
//   - ImageReward's benchmark prompts (benchmark/benchmark-prompts.json): a JSON array of objects with
//     "id" (string or number) and "prompt" (other keys are ignored); file order.
// Auto-detection: ".csv" -> DrawBench; ".json" -> by content (an object: MJHQ, an array: ImageReward);
// anything else -> plain text. A UTF-8 byte-order mark at the start is skipped. Errors name the file and
// the line or key at fault; a set without prompts is an error.
#pragma once
#include <string>
#include <vector>

namespace ilf {

enum class PromptSetFormat { kAuto, kText, kMjhq, kDrawBench, kImageReward };

// "auto", "text", "mjhq", "drawbench", "imagereward"; errors list the names.
PromptSetFormat parse_prompt_set_format(const std::string& name);
std::string to_string(PromptSetFormat format);

struct PromptItem {
  std::string id;
  std::string prompt;
  std::string category;  // "" = none
};

struct PromptSet {
  std::string source;      // the file
  PromptSetFormat format;  // as detected (never kAuto)
  std::vector<PromptItem> items;
};

PromptSet read_prompt_set(const std::string& path, PromptSetFormat format = PromptSetFormat::kAuto);

}  // namespace ilf
