// safetensors round trips and the errors for truncated or corrupt files.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "ilf/error.h"
#include "ilf/io/safetensors.h"
#include "test_helpers.h"

using namespace ilf;

TEST(Safetensors, RoundTripKeepsEveryDtypeShapeAndValue) {
  const std::string dir = test::scratch_dir("safetensors_roundtrip");
  TensorMap in;
  in["f32"] = torch::randn({3, 4});
  in["f16"] = torch::randn({5}).to(torch::kFloat16);
  in["bf16"] = torch::randn({2, 2, 2}).to(torch::kBFloat16);
  in["i64"] = torch::arange(7, torch::kInt64);
  in["scalar"] = torch::tensor(3.5f).reshape({});
  in["empty"] = torch::zeros({0, 3});
  write_safetensors(dir + "/a.safetensors", in, {{"family", "dit"}});
  const auto out = read_safetensors(dir + "/a.safetensors");
  ASSERT_EQ(out.tensors.size(), in.size());
  EXPECT_EQ(out.metadata.at("family"), "dit");
  for (const auto& [name, t] : in) {
    const auto& u = out.tensors.at(name);
    EXPECT_EQ(u.scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(u.sizes(), t.sizes()) << name;
    EXPECT_TRUE(torch::equal(u, t)) << name;
  }
}

TEST(Safetensors, TruncatedFileIsRejectedWithItsName) {
  const std::string dir = test::scratch_dir("safetensors_truncated");
  write_safetensors(dir + "/a.safetensors", {{"w", torch::randn({64, 64})}});
  std::ifstream in(dir + "/a.safetensors", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  for (size_t keep : {size_t{3}, size_t{12}, bytes.size() / 2, bytes.size() - 1}) {
    std::ofstream(dir + "/cut.safetensors", std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(keep));
    try {
      read_safetensors(dir + "/cut.safetensors");
      FAIL() << "accepted a file truncated to " << keep << " bytes";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("cut.safetensors"), std::string::npos) << e.what();
    }
  }
}

TEST(Safetensors, CorruptHeaderIsRejected) {
  const std::string dir = test::scratch_dir("safetensors_corrupt");
  auto write_raw = [&](const std::string& header, size_t data_bytes) {
    std::ofstream out(dir + "/bad.safetensors", std::ios::binary);
    uint64_t n = header.size();
    out.write(reinterpret_cast<const char*>(&n), 8);
    out << header << std::string(data_bytes, '\0');
  };
  write_raw("{not json", 0);
  EXPECT_THROW(read_safetensors(dir + "/bad.safetensors"), Error);
  write_raw(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", 16);  // 16 bytes for 2 floats
  EXPECT_THROW(read_safetensors(dir + "/bad.safetensors"), Error);
  write_raw(R"({"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", 8);
  EXPECT_THROW(read_safetensors(dir + "/bad.safetensors"), Error);
  write_raw(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 4);  // offsets past the end
  EXPECT_THROW(read_safetensors(dir + "/bad.safetensors"), Error);
  EXPECT_THROW(read_safetensors(dir + "/does_not_exist.safetensors"), Error);
}

TEST(Safetensors, FailedWriteLeavesNoFile) {
  const std::string dir = test::scratch_dir("safetensors_failed_write");
  TensorMap bad{{"a", torch::randn({2})}, {"b", torch::Tensor()}};
  EXPECT_THROW(write_safetensors(dir + "/x.safetensors", bad), Error);
  EXPECT_TRUE(std::filesystem::is_empty(dir));
}

// ---------------------------------------------------------------------------------------------
// Strict reading: the data must be contiguous, non-overlapping and exactly fill the file
// after the header; no duplicate keys; byte lengths match shape x dtype. Every error names the file
// and the tensor key.

namespace {

// Writes an 8-byte little-endian header length, `header` and `data_bytes` bytes of data.
std::string write_raw_safetensors(const std::string& dir, const std::string& header, size_t data_bytes,
                                  uint64_t declared_header_len = UINT64_MAX) {
  const std::string path = dir + "/raw.safetensors";
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  const uint64_t n = declared_header_len == UINT64_MAX ? header.size() : declared_header_len;
  unsigned char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>((n >> (8 * i)) & 0xff);
  out.write(reinterpret_cast<const char*>(len), 8);
  out << header << std::string(data_bytes, '\x01');
  return path;
}

// The message of the ilf::Error that reading `path` throws ("" when it reads fine).
std::string read_error(const std::string& path) {
  try {
    read_safetensors(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

void expect_refused(const std::string& path, const std::vector<std::string>& words) {
  const std::string message = read_error(path);
  ASSERT_FALSE(message.empty()) << "accepted " << path;
  EXPECT_NE(message.find("raw.safetensors"), std::string::npos) << message;
  for (const auto& w : words) EXPECT_NE(message.find(w), std::string::npos) << "missing \"" << w << "\" in: " << message;
}

}  // namespace

TEST(SafetensorsStrict, GapBetweenTensorsIsRefused) {
  const std::string dir = test::scratch_dir("safetensors_strict_gap");
  expect_refused(write_raw_safetensors(dir,
                                       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[12,20]}})",
                                       20),
                 {"\"b\"", "gap", "\"a\""});
  // A gap before the first tensor.
  expect_refused(write_raw_safetensors(dir, R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12), {"\"a\"", "gap"});
}

TEST(SafetensorsStrict, OverlappingTensorsAreRefused) {
  const std::string dir = test::scratch_dir("safetensors_strict_overlap");
  expect_refused(write_raw_safetensors(dir,
                                       R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                                       16),
                 {"overlap", "\"a\"", "\"b\""});
  // Two names for the same bytes.
  expect_refused(write_raw_safetensors(dir,
                                       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                       R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                                       8),
                 {"overlap"});
}

TEST(SafetensorsStrict, TrailingBytesAreRefused) {
  const std::string dir = test::scratch_dir("safetensors_strict_trailing");
  expect_refused(write_raw_safetensors(dir, R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 9),
                 {"trailing", "\"a\""});
  expect_refused(write_raw_safetensors(dir, R"({})", 4), {"trailing"});
}

TEST(SafetensorsStrict, HeaderLengthOffByOneIsRefused) {
  // The issue's case: a header length one too short shifts every tensor by a byte.
  const std::string dir = test::scratch_dir("safetensors_strict_offbyone");
  write_safetensors(dir + "/ok.safetensors", {{"w", torch::randn({4, 4})}});
  std::ifstream in(dir + "/ok.safetensors", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), {});
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  for (uint64_t m : {n - 1, n + 1}) {
    std::string copy = bytes;
    std::memcpy(copy.data(), &m, 8);
    std::ofstream(dir + "/raw.safetensors", std::ios::binary | std::ios::trunc) << copy;
    EXPECT_FALSE(read_error(dir + "/raw.safetensors").empty()) << "header length " << m << " accepted";
  }
}

TEST(SafetensorsStrict, ListingOrderDoesNotMatterWhenCoverageIsExact) {
  // JSON objects are unordered: "b" may come first in the data while "a" comes first by name.
  const std::string dir = test::scratch_dir("safetensors_strict_order");
  const auto path = write_raw_safetensors(dir,
                                          R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[3,5]},)"
                                          R"("b":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},)"
                                          R"("z":{"dtype":"U8","shape":[0],"data_offsets":[5,5]}})",
                                          5);
  const auto file = read_safetensors(path);
  EXPECT_EQ(file.tensors.at("a").numel(), 2);
  EXPECT_EQ(file.tensors.at("b").numel(), 3);
  EXPECT_EQ(file.tensors.at("z").numel(), 0);
}

TEST(SafetensorsStrict, DuplicateKeysInTheHeaderAreRefused) {
  const std::string dir = test::scratch_dir("safetensors_strict_duplicate");
  expect_refused(write_raw_safetensors(dir,
                                       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                                       R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                                       8),
                 {"duplicate", "\"a\""});
  expect_refused(write_raw_safetensors(dir,
                                       R"({"__metadata__":{"k":"1","k":"2"},)"
                                       R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                                       8),
                 {"duplicate", "__metadata__.k"});
}

TEST(SafetensorsStrict, HeaderAboveTheLimitIsRefusedBeforeReading) {
  const std::string dir = test::scratch_dir("safetensors_strict_limit");
  expect_refused(write_raw_safetensors(dir, "{}", 0, kMaxSafetensorsHeaderBytes + 1), {"limit"});
}

TEST(SafetensorsStrict, DtypeShapeAndByteLengthMismatchesNameTheTensor) {
  const std::string dir = test::scratch_dir("safetensors_strict_mismatch");
  expect_refused(write_raw_safetensors(dir, R"({"w":{"dtype":"F16","shape":[2],"data_offsets":[0,8]}})", 8), {"\"w\"", "F16"});
  expect_refused(write_raw_safetensors(dir, R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8), {"\"w\"", "shape"});
  expect_refused(write_raw_safetensors(dir, R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", 8),
                 {"\"w\"", "shape"});
  // A shape whose size overflows 64 bits.
  expect_refused(write_raw_safetensors(dir, R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", 8),
                 {"\"w\"", "overflow"});
  expect_refused(write_raw_safetensors(dir, R"({"w":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,8]}})", 8),
                 {"\"w\"", "shape"});
}

TEST(SafetensorsStrict, WrittenFilesExactlyFillTheirData) {
  const std::string dir = test::scratch_dir("safetensors_strict_writer");
  TensorMap in{{"b", torch::randn({3, 5})},
               {"a", torch::arange(7, torch::kInt16)},
               {"e", torch::zeros({0})},
               {"c", torch::ones({2}, torch::kBool)}};
  write_safetensors(dir + "/w.safetensors", in, {{"k", "v"}});
  std::ifstream f(dir + "/w.safetensors", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), {});
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  const auto header = nlohmann::json::parse(bytes.substr(8, n));
  uint64_t total = 0;
  for (auto it = header.begin(); it != header.end(); ++it)
    if (it.key() != "__metadata__")
      total += it->at("data_offsets")[1].get<uint64_t>() - it->at("data_offsets")[0].get<uint64_t>();
  EXPECT_EQ(8 + n + total, bytes.size());
  EXPECT_NO_THROW(read_safetensors(dir + "/w.safetensors"));
}
