// Writes the seed inputs of the fuzz targets (tests/fuzz/corpus/<target>/seed-*), so that each target
// starts from valid files of the current formats and mutates from there: safetensors files of every
// dtype with metadata and a checkpoint, written by the library's own writers; idx files plain and
// gzip-compressed; a minimal SentencePiece model built here field by field (the real 240 KB models
// would make every corpus entry that large; scripts/fuzz.sh fuzzes from one in a scratch folder); and
// copies of the project's configs and model.json files.
// Usage: make_seeds <source folder> <corpus folder>   (the fuzz build runs it as `make fuzz_seeds`)
#include <torch/torch.h>
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "ilf/io/safetensors.h"
#include "ilf/training/checkpoint.h"
#include "ilf/training/datasets.h"

namespace fs = std::filesystem;

namespace {

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string idx_bytes() {  // 3 images of 4x4 unsigned bytes
  std::string b = {0, 0, 0x08, 3, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 4};
  for (int i = 0; i < 48; ++i) b.push_back(static_cast<char>(i * 5));
  return b;
}

// Protobuf wire format, just enough for a SentencePiece ModelProto.
std::string varint(uint64_t v) {
  std::string s;
  while (v >= 0x80) {
    s.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  s.push_back(static_cast<char>(v));
  return s;
}
std::string field(int number, int wire) { return varint(static_cast<uint64_t>(number) << 3 | wire); }
std::string bytes_field(int number, const std::string& value) { return field(number, 2) + varint(value.size()) + value; }
std::string varint_field(int number, uint64_t value) { return field(number, 0) + varint(value); }
std::string piece(const std::string& text, float score, int type) {
  std::string s = bytes_field(1, text) + field(2, 5);
  s.append(reinterpret_cast<const char*>(&score), 4);
  return s + varint_field(3, static_cast<uint64_t>(type));
}

std::string tiny_spiece_model() {  // types: 1 normal, 2 unknown, 3 control, 4 user defined
  std::string m =
      bytes_field(1, piece("<pad>", 0, 3)) + bytes_field(1, piece("</s>", 0, 3)) + bytes_field(1, piece("<unk>", 0, 2));
  const std::vector<std::string> normal = {"\xe2\x96\x81",
                                           "a",
                                           "b",
                                           "e",
                                           "o",
                                           "s",
                                           "\xe2\x96\x81"
                                           "a",
                                           "ab",
                                           "sneak",
                                           "er",
                                           ",",
                                           "2"};
  for (size_t i = 0; i < normal.size(); ++i) m += bytes_field(1, piece(normal[i], -1.0f - static_cast<float>(i), 1));
  m += bytes_field(1, piece("<extra_id_0>", 0, 4));
  m += bytes_field(2, varint_field(3, 1) + varint_field(35, 0));                      // trainer_spec: unigram
  m += bytes_field(3, varint_field(3, 1) + varint_field(4, 1) + varint_field(5, 1));  // normalizer_spec
  return m;
}

void copy_matching(const fs::path& from, const std::string& suffix, const fs::path& to, const std::string& prefix) {
  if (!fs::exists(from)) return;
  for (const auto& entry : fs::recursive_directory_iterator(from)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || name.size() < suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    const std::string flat = fs::relative(entry.path(), from).string();
    std::string seed = prefix;
    for (char c : flat) seed.push_back(c == '/' ? '_' : c);
    fs::copy_file(entry.path(), to / seed, fs::copy_options::overwrite_existing);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: make_seeds <source folder> <corpus folder>\n");
    return 2;
  }
  const fs::path source = argv[1], corpus = argv[2];
  for (const char* t : {"safetensors", "checkpoint", "idx", "tokenizer", "run_config", "model_json"})
    fs::create_directories(corpus / t);
  torch::manual_seed(0);

  ilf::TensorMap tensors;
  tensors["f32"] = torch::randn({2, 3});
  tensors["f16"] = torch::randn({4}).to(torch::kFloat16);
  tensors["bf16"] = torch::randn({2, 2}).to(torch::kBFloat16);
  tensors["i64"] = torch::arange(5, torch::kInt64);
  tensors["u8"] = torch::arange(3, torch::kUInt8);
  tensors["empty"] = torch::zeros({0, 3});
  ilf::write_safetensors((corpus / "safetensors/seed-dtypes.safetensors").string(), tensors,
                         {{"format", "pt"}, {"note", "fuzz seed"}});
  ilf::write_safetensors((corpus / "safetensors/seed-one.safetensors").string(), {{"x", torch::ones({1})}});

  ilf::TrainingCheckpoint checkpoint;
  checkpoint.step = 2;
  checkpoint.epoch = 0;
  checkpoint.step_in_epoch = 2;
  checkpoint.mode = "ilf";
  checkpoint.config_json = R"({"training":{"steps":4}})";
  checkpoint.trainable = {{"scale", torch::zeros({3})}, {"block.weight", torch::randn({2, 2})}};
  checkpoint.ema = checkpoint.trainable;
  for (const auto& [name, value] : checkpoint.trainable)
    checkpoint.optimizer[name] = ilf::AdamState{2, torch::randn_like(value), torch::rand_like(value)};
  checkpoint.cpu_rng_state = ilf::make_cpu_generator(7).get_state();
  const fs::path folder = corpus / "checkpoint/.writing";
  const std::string written = ilf::save_checkpoint(folder.string(), checkpoint, 1);
  fs::rename(written, corpus / "checkpoint/seed-step2.safetensors");
  fs::remove_all(folder);

  write_bytes(corpus / "idx/seed-plain.idx", idx_bytes());
  const std::string gz = (corpus / "idx/seed-gzip.idx.gz").string();
  gzFile f = gzopen(gz.c_str(), "wb");
  const std::string idx = idx_bytes();
  gzwrite(f, idx.data(), static_cast<unsigned>(idx.size()));
  gzclose(f);
  write_bytes(corpus / "idx/seed-labels.idx", std::string{0, 0, 0x08, 1, 0, 0, 0, 3, 1, 9, 0});

  write_bytes(corpus / "tokenizer/seed-tiny.model", tiny_spiece_model());

  copy_matching(source / "configs", ".json", corpus / "run_config", "seed-");
  write_bytes(corpus / "run_config/seed-overrides", std::string(R"({"sampling":{"steps":10}})") + '\0' + "sampling.steps=5" +
                                                        '\0' + "model.depth=2" + '\0' + "ilf.feedback_steps=[1,2]" + '\0' +
                                                        "eval=null");
  copy_matching(source / "tests/data/t2i", "model.json", corpus / "model_json", "seed-");
  copy_matching(source / "models", "model.json", corpus / "model_json", "seed-");
  std::printf("make_seeds: seeds written under %s\n", corpus.string().c_str());
  return 0;
}
