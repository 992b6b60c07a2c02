// safetensors round trips and the errors for truncated or corrupt files.
#include <gtest/gtest.h>

#include <fstream>

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
