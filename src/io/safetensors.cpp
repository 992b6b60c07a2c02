// safetensors reader and writer (see include/ilf/io/safetensors.h).
#include "ilf/io/safetensors.h"

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>

#include "ilf/error.h"
#include "ilf/io/atomic_file.h"
#include "ilf/io/json.h"
#include "ilf/util/checks.h"

namespace ilf {
namespace {

struct DtypeInfo {
  const char* name;
  torch::ScalarType type;
  size_t bytes;
};

constexpr DtypeInfo kDtypes[] = {
    {"F64", torch::kFloat64, 8}, {"F32", torch::kFloat32, 4}, {"F16", torch::kFloat16, 2}, {"BF16", torch::kBFloat16, 2},
    {"I64", torch::kInt64, 8},   {"I32", torch::kInt32, 4},   {"I16", torch::kInt16, 2},   {"I8", torch::kInt8, 1},
    {"U8", torch::kUInt8, 1},    {"BOOL", torch::kBool, 1},
};

const DtypeInfo& dtype_by_name(const std::string& name, const std::string& where) {
  for (const auto& d : kDtypes)
    if (name == d.name) return d;
  throw Error(where + ": unsupported dtype \"" + name + "\" (expected one of F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)");
}

const DtypeInfo& dtype_by_type(torch::ScalarType type, const std::string& where) {
  for (const auto& d : kDtypes)
    if (type == d.type) return d;
  throw Error(where + ": cannot store dtype " + std::string(c10::toString(type)) + " in safetensors");
}

}  // namespace

SafetensorsFile read_safetensors(const std::string& path) {
  require_regular_file(path, "safetensors file");
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) throw Error(path + ": cannot open file");
  const uint64_t file_size = static_cast<uint64_t>(in.tellg());
  in.seekg(0);
  if (file_size < 8) throw Error(path + ": not a safetensors file (" + std::to_string(file_size) + " bytes, need at least 8)");
  unsigned char len_bytes[8];
  in.read(reinterpret_cast<char*>(len_bytes), 8);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > kMaxSafetensorsHeaderBytes)
    throw Error(path + ": header length " + std::to_string(header_len) + " exceeds the limit of " +
                std::to_string(kMaxSafetensorsHeaderBytes) + " bytes: corrupt or not a safetensors file");
  if (header_len > file_size - 8) {
    throw Error(path + ": header length " + std::to_string(header_len) + " exceeds the file (" + std::to_string(file_size) +
                " bytes): truncated or not a safetensors file");
  }
  std::string header_text(header_len, '\0');
  in.read(header_text.data(), static_cast<std::streamsize>(header_len));
  if (!in) throw Error(path + ": could not read the " + std::to_string(header_len) + "-byte header");
  nlohmann::json header;
  try {
    header = parse_json_strict(header_text, path + ": header");
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": header is not valid JSON (" + e.what() + ")");
  }
  if (!header.is_object()) throw Error(path + ": header is not a JSON object");
  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = file_size - data_start;

  // Validate every entry before reading any data: dtype, shape, offsets and byte length.
  struct Entry {
    std::string name;
    const DtypeInfo* dtype;
    std::vector<int64_t> shape;
    uint64_t begin, end;
  };
  std::vector<Entry> entries;
  SafetensorsFile result;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") {
      if (!it->is_object()) throw Error(path + ": __metadata__ must be an object of strings");
      for (auto m = it->begin(); m != it->end(); ++m) {
        if (!m->is_string()) throw Error(path + ": __metadata__." + m.key() + " must be a string");
        result.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    const std::string where = path + ": tensor \"" + name + "\"";
    const auto& entry = *it;
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets"))
      throw Error(where + ": expected an object with dtype, shape and data_offsets");
    if (!entry["dtype"].is_string()) throw Error(where + ": dtype must be a string");
    const DtypeInfo& dt = dtype_by_name(entry["dtype"].get<std::string>(), where);
    std::vector<int64_t> shape;
    uint64_t numel = 1;
    bool overflow = false;
    if (!entry["shape"].is_array()) throw Error(where + ": shape must be an array of non-negative integers");
    for (const auto& d : entry["shape"]) {
      if (!d.is_number_unsigned() || d.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
        throw Error(where + ": shape must be an array of non-negative integers, got " + entry["shape"].dump());
      shape.push_back(d.get<int64_t>());
      overflow = overflow || __builtin_mul_overflow(numel, d.get<uint64_t>(), &numel);
    }
    uint64_t expected_bytes = 0;
    overflow = overflow || __builtin_mul_overflow(numel, static_cast<uint64_t>(dt.bytes), &expected_bytes);
    const auto& offsets = entry["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned())
      throw Error(where + ": data_offsets must be [begin, end]");
    const uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    if (begin > end || end > data_size)
      throw Error(where + ": data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) + "] lie outside the " +
                  std::to_string(data_size) + " data bytes (truncated file?)");
    if (overflow || end - begin != expected_bytes)
      throw Error(where + ": " + std::to_string(end - begin) + " bytes do not match shape " + entry["shape"].dump() +
                  " and dtype " + dt.name + " (" +
                  (overflow ? std::string("the size overflows") : std::to_string(expected_bytes)) + " expected)");
    entries.push_back(Entry{name, &dt, std::move(shape), begin, end});
  }

  // The format: the tensors' bytes are contiguous, do not overlap and exactly fill the data after the
  // header (the entries may be listed in any order).
  std::sort(entries.begin(), entries.end(),
            [](const Entry& a, const Entry& b) { return a.begin != b.begin ? a.begin < b.begin : a.end < b.end; });
  uint64_t covered = 0;
  const Entry* previous = nullptr;
  auto span = [](const Entry& e) { return "[" + std::to_string(e.begin) + ", " + std::to_string(e.end) + "]"; };
  for (const Entry& e : entries) {
    const std::string where = path + ": tensor \"" + e.name + "\"";
    if (e.begin < covered)
      throw Error(where + ": data_offsets " + span(e) + " overlap tensor \"" + previous->name + "\" " + span(*previous));
    if (e.begin > covered)
      throw Error(where + ": data_offsets " + span(e) + " leave a gap of " + std::to_string(e.begin - covered) + " bytes " +
                  (previous ? "after tensor \"" + previous->name + "\" " + span(*previous) : std::string("at the start")) +
                  " (the data must be contiguous)");
    covered = e.end;
    previous = &e;
  }
  if (covered != data_size)
    throw Error(
        path + ": " + std::to_string(data_size - covered) + " trailing bytes after " +
        (previous ? "the last tensor \"" + previous->name + "\" " + span(*previous) : std::string("the header (no tensors)")) +
        " (the data must exactly fill the file)");

  for (const Entry& e : entries) {
    torch::Tensor t = torch::empty(e.shape, torch::TensorOptions().dtype(e.dtype->type));
    if (e.end > e.begin) {
      in.seekg(static_cast<std::streamoff>(data_start + e.begin));
      in.read(static_cast<char*>(t.data_ptr()), static_cast<std::streamsize>(e.end - e.begin));
      if (!in)
        throw Error(path + ": tensor \"" + e.name + "\": could not read its " + std::to_string(e.end - e.begin) + " bytes");
    }
    result.tensors.emplace(e.name, std::move(t));
  }
  return result;
}

void write_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> ordered;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : tensors) {
    if (!tensor.defined()) throw Error(path + ": tensor \"" + name + "\" is undefined");
    torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
    const DtypeInfo& dt = dtype_by_type(t.scalar_type(), path + ": tensor \"" + name + "\"");
    const uint64_t bytes = static_cast<uint64_t>(t.numel()) * dt.bytes;
    header[name] = {{"dtype", dt.name}, {"shape", t.sizes().vec()}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    ordered.push_back(t);
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text.push_back(' ');
  write_file_atomically(path, [&](std::ostream& out) {
    uint64_t len = text.size();
    unsigned char len_bytes[8];
    for (int i = 0; i < 8; ++i) len_bytes[i] = static_cast<unsigned char>((len >> (8 * i)) & 0xff);
    out.write(reinterpret_cast<const char*>(len_bytes), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const auto& t : ordered)
      out.write(static_cast<const char*>(t.data_ptr()), static_cast<std::streamsize>(t.numel() * t.element_size()));
  });
}

void require_finite_tensors(const TensorMap& tensors, const std::string& source) {
  for (const auto& [name, tensor] : tensors) require_finite(tensor, source + ": tensor \"" + name + "\"");
}

const torch::Tensor& require_tensor(const TensorMap& tensors, const std::string& name, const std::string& source) {
  auto it = tensors.find(name);
  if (it == tensors.end()) throw Error(source + ": missing tensor \"" + name + "\"");
  return it->second;
}

}  // namespace ilf
