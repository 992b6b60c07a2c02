// The connection-free parts of the HTTP front (see src/serve/http_messages.h).
#include "http_messages.h"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <fstream>

#include "ilf/io/atomic_file.h"
#include "ilf/serve/http_server.h"

namespace ilf::serve {
namespace {

// A key file holds one key; a larger file is a mistake (the wrong file named).
constexpr size_t kMaxApiKeyBytes = 4096;
// Standard base64 (RFC 4648, with padding) of the PNG bytes.
std::string base64_encode(const std::string& bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])) << 16 |
                       static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8 |
                       static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 2]));
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
    out += kAlphabet[v >> 6 & 63];
    out += kAlphabet[v & 63];
  }
  if (const size_t rest = bytes.size() - i; rest > 0) {
    uint32_t v = static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    if (rest == 2) v |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
    out += rest == 2 ? kAlphabet[v >> 6 & 63] : '=';
    out += '=';
  }
  return out;
}

}  // namespace

std::string json_text(const Json& value) { return value.dump(-1, ' ', false, Json::error_handler_t::replace); }

// OpenAI's error type for a status: "server_error" for ours (5xx), "invalid_request_error" for the client's.
std::string error_type_for(int status) { return status >= 500 ? "server_error" : "invalid_request_error"; }

std::string error_body(int status, const std::string& message) {
  return RequestError(status, message, "", error_type_for(status)).to_json();
}

// The error object of a failed or cancelled job, as a generation request answers it. The job carries a
// status and a message only, so the type follows from the status.
int job_error_status(const JobStatus& job) {
  if (job.error_status >= 400 && job.error_status <= 599) return job.error_status;
  return job.state == JobState::kCancelled ? 409 : 500;
}
std::string job_error_message(const JobStatus& job) {
  if (!job.error.empty()) return job.error;
  return job.state == JobState::kCancelled ? "the job was cancelled" : "the job failed";
}

namespace {

// "data": [{"b64_json": ...}, ...], "ilf": {"seeds": [...], "block_forwards": k} -- the members an images
// response and a finished job share, as JSON text without the braces. Written by hand rather than through
// nlohmann::json: the base64 text (megabytes) needs no escaping and is copied once.
std::string images_members(const JobStatus& job) {
  size_t size = 64;
  for (const GeneratedImage& image : job.images) size += image.png.size() / 3 * 4 + 32;
  std::string out;
  out.reserve(size);
  out += "\"data\":[";
  Json seeds = Json::array();
  for (size_t i = 0; i < job.images.size(); ++i) {
    out += i ? ",{\"b64_json\":\"" : "{\"b64_json\":\"";
    out += base64_encode(job.images[i].png);
    out += "\"}";
    seeds.push_back(job.images[i].seed);
  }
  out += "],\"ilf\":";
  out += json_text(Json{{"seeds", seeds}, {"block_forwards", job.block_forwards}});
  return out;
}

}  // namespace

// 200 of POST /v1/images/generations: {"created", "data", "ilf"}.
std::string images_body(const JobStatus& job) {
  return "{\"created\":" + std::to_string(job.created) + "," + images_members(job) + "}";
}

// GET /v1/jobs/{id} and DELETE: {"id", "object", "status", "created", "step", "steps"} plus "data" and
// "ilf" when done (GET only: DELETE answers with the status, not megabytes of images), "error" when failed.
std::string job_body(const JobStatus& job, bool with_images) {
  Json head = {{"id", job.id},           {"object", "image.job"}, {"status", to_string(job.state)},
               {"created", job.created}, {"step", job.step},      {"steps", job.steps}};
  if (job.state == JobState::kFailed)
    head["error"] =
        Json::parse(
            RequestError(job_error_status(job), job_error_message(job), "", error_type_for(job_error_status(job))).to_json())
            .at("error");
  std::string text = json_text(head);
  if (with_images && job.state == JobState::kDone) {
    text.pop_back();  // the closing brace
    text += "," + images_members(job) + "}";
  }
  return text;
}

bool iequals_ascii(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

// "Authorization: Bearer KEY" (the scheme is case-insensitive, RFC 7235) with KEY equal to `api_key`.
// Every way of failing gives the same answer, and the key comparison takes the same time wherever the
// texts differ.
bool authorized(std::string_view header, const std::string& api_key) {
  constexpr std::string_view kScheme = "bearer";
  std::string token;
  if (header.size() > kScheme.size() && iequals_ascii(header.substr(0, kScheme.size()), kScheme) &&
      header[kScheme.size()] == ' ') {
    std::string_view rest = header.substr(kScheme.size());
    while (!rest.empty() && (rest.front() == ' ' || rest.front() == '\t')) rest.remove_prefix(1);
    while (!rest.empty() && (rest.back() == ' ' || rest.back() == '\t')) rest.remove_suffix(1);
    token = std::string(rest);
  }
  return constant_time_equal(token, api_key) && !token.empty();
}

void ServerOptions::validate() const {
  if (host.empty()) throw Error("--host must not be empty");
  if (port < 0 || port > 65535) throw Error("--port must be an integer from 0 to 65535 (got " + std::to_string(port) + ")");
  constexpr int64_t kMaxBodyBytes = int64_t{1} << 30;  // a request is held in memory whole
  if (max_body_bytes < 1 || max_body_bytes > kMaxBodyBytes)
    throw Error("--max-body-bytes must be an integer from 1 to " + std::to_string(kMaxBodyBytes) + " (got " +
                std::to_string(max_body_bytes) + ")");
  if (!std::isfinite(read_timeout_s) || read_timeout_s <= 0 || read_timeout_s > 86400)
    throw Error("--read-timeout must be a number of seconds above 0 and at most 86400 (got " + std::to_string(read_timeout_s) +
                ")");
  if (max_connections < 1 || max_connections > 1000000)
    throw Error("max_connections must be an integer from 1 to 1000000 (got " + std::to_string(max_connections) + ")");
  if (io_threads < 1 || io_threads > 256)
    throw Error("io_threads must be an integer from 1 to 256 (got " + std::to_string(io_threads) + ")");
  // A key a header cannot carry could never match: one token of visible ASCII characters.
  if (api_key.size() > kMaxApiKeyBytes) throw Error("the API key is longer than " + std::to_string(kMaxApiKeyBytes) + " bytes");
  for (const char c : api_key)
    if (c < 0x21 || c > 0x7e) throw Error("the API key must be visible ASCII characters only (no spaces or control characters)");
}

std::string read_api_key_file(const std::string& path) {
  require_regular_file(path, "API key file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("API key file " + path + ": cannot be read");
  std::string text(kMaxApiKeyBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxApiKeyBytes)
    throw Error("API key file " + path + ": longer than " + std::to_string(kMaxApiKeyBytes) + " bytes (expected one key)");
  const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
  while (!text.empty() && space(text.back())) text.pop_back();
  size_t begin = 0;
  while (begin < text.size() && space(text[begin])) ++begin;
  text.erase(0, begin);
  if (text.empty()) throw Error("API key file " + path + ": empty");
  for (const char c : text)
    if (c < 0x21 || c > 0x7e)
      throw Error("API key file " + path + ": the key must be one line of visible ASCII characters (no spaces)");
  struct stat info {};
  if (::stat(path.c_str(), &info) == 0 && (info.st_mode & (S_IRWXG | S_IRWXO)) != 0)
    spdlog::warn("API key file {} can be read by other users (chmod 600 it)", path);
  return text;
}

bool constant_time_equal(const std::string& a, const std::string& b) {
  // Every byte position of the longer text is visited, and the differences are or-ed together through
  // a volatile so the compiler cannot return at the first one.
  const size_t n = std::max(a.size(), b.size());
  volatile unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff = static_cast<unsigned char>(diff | (x ^ y));
  }
  return diff == 0;
}

}  // namespace ilf::serve
