// Training data sets (Fashion-MNIST idx files, safetensors shards) and the DataLoader that assigns
// samples to ranks and reads them ahead (see include/ilf/training/datasets.h).
#include "ilf/training/datasets.h"

#include <ATen/CPUGeneratorImpl.h>
#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "ilf/error.h"
#include "ilf/io/atomic_file.h"
#include "ilf/io/json.h"
#include "ilf/io/safetensors.h"

namespace ilf {
namespace fs = std::filesystem;

uint64_t mix_seed(uint64_t a, uint64_t b) {
  // splitmix64 of a combined with b: distinct (a, b) pairs give unrelated seeds.
  uint64_t z = a * 0x9E3779B97F4A7C15ull + b + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

torch::Generator make_cpu_generator(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

ConditionInputs condition_to(const ConditionInputs& c, const torch::Device& device) {
  auto move = [&](const torch::Tensor& t) { return t.defined() ? t.to(device) : t; };
  return {move(c.class_labels), move(c.caption), move(c.caption_mask), move(c.image_hw), move(c.aspect_ratio)};
}

std::vector<int64_t> Dataset::epoch_order(uint64_t seed, int64_t epoch) const {
  auto generator = make_cpu_generator(mix_seed(seed, static_cast<uint64_t>(epoch)));
  const torch::Tensor perm = torch::randperm(size(), generator, torch::kLong);
  return std::vector<int64_t>(perm.data_ptr<int64_t>(), perm.data_ptr<int64_t>() + perm.numel());
}

// ---------------------------------------------------------------------------------------------
// Fashion-MNIST

torch::Tensor read_idx_file(const std::string& path) {
  if (std::filesystem::exists(path)) require_regular_file(path, "idx file");  // a fifo would block gzopen
  gzFile file = gzopen(path.c_str(), "rb");                                   // also reads uncompressed files
  if (!file) throw Error(path + ": cannot open idx file (install the Debian package dataset-fashion-mnist?)");
  struct Closer {
    gzFile& f;
    ~Closer() {
      if (f) gzclose(f);
    }
  } closer{file};
  // Reads exactly n bytes (fewer only at the end of the data); a gzip error throws.
  auto read = [&](void* into, size_t n) -> size_t {
    size_t got = 0;
    while (got < n) {
      const auto want = static_cast<unsigned>(std::min<size_t>(n - got, size_t{1} << 30));
      const int r = gzread(file, static_cast<char*>(into) + got, want);
      if (r < 0) throw Error(path + ": corrupt gzip data");
      if (r == 0) break;
      got += static_cast<size_t>(r);
    }
    return got;
  };
  // Header: two zero bytes, a type byte (0x08 = unsigned byte), the number of dimensions, then each
  // dimension as a big-endian u32. The data are read into a tensor of the declared size, never more:
  // a small file that inflates to gigabytes is refused after the declared bytes.
  uint8_t magic[4] = {0, 0, 0, 0};
  if (read(magic, 4) < 4 || magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 || magic[3] == 0)
    throw Error(path + ": not an unsigned-byte idx file (bad magic number)");
  const size_t ndim = magic[3];
  std::vector<uint8_t> dims(4 * ndim);
  if (read(dims.data(), dims.size()) < dims.size()) throw Error(path + ": truncated idx header");
  std::vector<int64_t> shape;
  // `bound` is the product with zero dimensions counted as 1: it bounds the strides too (a zero in
  // front of huge dimensions holds no data, but its strides would overflow int64; found by fuzzing).
  uint64_t count = 1, bound = 1;
  for (size_t d = 0; d < ndim; ++d) {
    const uint8_t* p = dims.data() + 4 * d;
    const int64_t dim = (int64_t{p[0]} << 24) | (int64_t{p[1]} << 16) | (int64_t{p[2]} << 8) | int64_t{p[3]};
    shape.push_back(dim);
    count *= static_cast<uint64_t>(dim);  // <= bound, so it cannot overflow
    if (__builtin_mul_overflow(bound, static_cast<uint64_t>(std::max<int64_t>(dim, 1)), &bound) || bound > kMaxIdxBytes)
      throw Error(path + ": the idx header declares more than the limit of " + std::to_string(kMaxIdxBytes) +
                  " bytes (dimension " + std::to_string(d) + " is " + std::to_string(dim) + ")");
  }
  torch::Tensor out = torch::empty(shape, torch::kUInt8);
  const size_t got = read(out.data_ptr<uint8_t>(), static_cast<size_t>(count));
  uint8_t extra = 0;
  if (got < count || read(&extra, 1) != 0)
    throw Error(path + ": idx data holds " + (got < count ? std::to_string(got) : "more than " + std::to_string(count)) +
                " bytes, the header promises " + std::to_string(count));
  const int closed = gzclose(file);
  file = nullptr;
  if (closed == Z_BUF_ERROR) throw Error(path + ": truncated gzip file (the stream ends without its trailer)");
  if (closed != Z_OK) throw Error(path + ": corrupt gzip data");
  return out;
}

FashionMnistDataset::FashionMnistDataset(const std::string& folder, const std::string& split) : folder_(folder), split_(split) {
  std::string prefix;
  if (split == "train")
    prefix = "train";
  else if (split == "test")
    prefix = "t10k";
  else
    throw Error("Fashion-MNIST split must be \"train\" or \"test\", got \"" + split + "\"");
  const std::string images_path = (fs::path(folder) / (prefix + "-images-idx3-ubyte.gz")).string();
  const std::string labels_path = (fs::path(folder) / (prefix + "-labels-idx1-ubyte.gz")).string();
  images_ = read_idx_file(images_path);
  labels_ = read_idx_file(labels_path).to(torch::kLong);
  if (images_.dim() != 3 || images_.size(1) != 28 || images_.size(2) != 28)
    throw Error(images_path + ": expected images of shape (N, 28, 28), got " + c10::str(images_.sizes()));
  if (labels_.dim() != 1 || labels_.size(0) != images_.size(0))
    throw Error(labels_path + ": expected " + std::to_string(images_.size(0)) + " labels, got shape " +
                c10::str(labels_.sizes()));
  if (labels_.max().item<int64_t>() >= kNumClasses) throw Error(labels_path + ": labels outside 0..9");
}

std::string FashionMnistDataset::describe() const {
  return "Fashion-MNIST " + split_ + " (" + std::to_string(size()) + " images, 1x32x32 padded, 10 classes) from " + folder_;
}

TrainingBatch FashionMnistDataset::load(const std::vector<int64_t>& indices) {
  const torch::Tensor index = torch::tensor(indices, torch::kLong);
  torch::Tensor pixels = images_.index_select(0, index).to(torch::kFloat32);  // (B, 28, 28)
  pixels = (pixels / 127.5 - 1.0).unsqueeze(1);                               // (B, 1, 28, 28) in [-1, 1]
  TrainingBatch batch;
  batch.x0 = torch::constant_pad_nd(pixels, {2, 2, 2, 2}, -1.0);  // (B, 1, 32, 32), background -1
  batch.condition.class_labels = labels_.index_select(0, index);  // (B,)
  batch.indices = indices;
  return batch;
}

// ---------------------------------------------------------------------------------------------
// safetensors shards

namespace {

// The JSON header of a safetensors file (without reading the data).
nlohmann::json read_safetensors_header(const std::string& path) {
  require_regular_file(path, "shard");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open shard");
  unsigned char len_bytes[8];
  if (!in.read(reinterpret_cast<char*>(len_bytes), 8)) throw Error(path + ": not a safetensors file (too short)");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | len_bytes[i];
  if (header_len > kMaxSafetensorsHeaderBytes) throw Error(path + ": implausible safetensors header length");
  std::string text(header_len, '\0');
  if (!in.read(text.data(), static_cast<std::streamsize>(header_len))) throw Error(path + ": truncated safetensors header");
  try {
    return parse_json_strict(text, path + ": header");
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": invalid safetensors header (" + e.what() + ")");
  }
}

std::vector<int64_t> header_shape(const nlohmann::json& header, const std::string& key, const std::string& path) {
  if (!header.contains(key)) return {};
  return header.at(key).at("shape").get<std::vector<int64_t>>();
}

bool is_float_dtype(const nlohmann::json& header, const std::string& key) {
  const std::string dtype = header.at(key).at("dtype").get<std::string>();
  return dtype == "F32" || dtype == "F16" || dtype == "BF16" || dtype == "F64";
}

}  // namespace

ShardDataset::ShardDataset(const std::string& folder, int64_t cache_shards)
    : folder_(folder), cache_shards_(std::max<int64_t>(1, cache_shards)) {
  if (!fs::is_directory(folder)) throw Error(folder + ": shard folder does not exist");
  // Every *.safetensors file but the null caption that ilf_prepare_data writes beside the shards.
  for (const auto& entry : fs::directory_iterator(folder))
    if (entry.is_regular_file() && entry.path().extension() == ".safetensors" && entry.path().filename() != kNullCaptionFile)
      shards_.push_back(entry.path().string());
  std::sort(shards_.begin(), shards_.end());
  if (shards_.empty()) throw Error(folder + ": no *.safetensors shards in the folder");

  offsets_.push_back(0);
  for (size_t k = 0; k < shards_.size(); ++k) {
    const std::string& path = shards_[k];
    const nlohmann::json header = read_safetensors_header(path);
    const auto latents = header_shape(header, "latents", path);
    if (latents.size() != 4) throw Error(path + ": expected a tensor \"latents\" of shape (N, C, H, W)");
    if (!is_float_dtype(header, "latents")) throw Error(path + ": \"latents\" must be a floating-point tensor");
    const int64_t n = latents[0];
    const std::vector<int64_t> shape(latents.begin() + 1, latents.end());
    const bool captions = header.contains("captions");
    if (k == 0) {
      sample_shape_ = shape;
      has_captions_ = captions;
    } else if (shape != sample_shape_ || captions != has_captions_) {
      throw Error(path + ": shard differs from " + shards_[0] + " (sample shape or condition kind)");
    }
    if (captions) {
      const auto c = header_shape(header, "captions", path);
      const auto m = header_shape(header, "caption_masks", path);
      if (c.size() != 3 || c[0] != n)
        throw Error(path + ": \"captions\" must have shape (N, L, D) with N = " + std::to_string(n));
      if (m.size() != 2 || m[0] != n || m[1] != c[1])
        throw Error(path + ": \"caption_masks\" must have shape (N, L) matching \"captions\"");
    } else {
      const auto l = header_shape(header, "labels", path);
      if (l.size() != 1 || l[0] != n)
        throw Error(path + ": expected \"labels\" (N,) or \"captions\" (N, L, D) + \"caption_masks\" (N, L) with N = " +
                    std::to_string(n));
    }
    offsets_.push_back(offsets_.back() + n);
  }
  total_ = offsets_.back();
  if (total_ == 0) throw Error(folder + ": the shards hold no samples");
}

std::string ShardDataset::describe() const {
  std::string shape;
  for (auto d : sample_shape_) shape += (shape.empty() ? "" : "x") + std::to_string(d);
  return "shards in " + folder_ + " (" + std::to_string(shards_.size()) + " files, " + std::to_string(total_) + " samples of " +
         shape + ", " + (has_captions_ ? "captions" : "class labels") + ")";
}

std::vector<int64_t> ShardDataset::epoch_order(uint64_t seed, int64_t epoch) const {
  const uint64_t epoch_seed = mix_seed(seed, static_cast<uint64_t>(epoch));
  auto generator = make_cpu_generator(epoch_seed);
  const torch::Tensor shard_order = torch::randperm(num_shards(), generator, torch::kLong);
  std::vector<int64_t> order;
  order.reserve(static_cast<size_t>(total_));
  for (int64_t i = 0; i < num_shards(); ++i) {
    const int64_t k = shard_order[i].item<int64_t>();
    auto shard_generator = make_cpu_generator(mix_seed(epoch_seed, static_cast<uint64_t>(k) + 1));
    const torch::Tensor perm = torch::randperm(offsets_[k + 1] - offsets_[k], shard_generator, torch::kLong);
    const int64_t* p = perm.data_ptr<int64_t>();
    for (int64_t j = 0; j < perm.numel(); ++j) order.push_back(offsets_[k] + p[j]);
  }
  return order;
}

std::shared_ptr<const ShardDataset::ShardData> ShardDataset::shard(int64_t k) {
  std::shared_future<std::shared_ptr<const ShardData>> pending;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    recently_used_.erase(std::remove(recently_used_.begin(), recently_used_.end(), k), recently_used_.end());
    recently_used_.push_back(k);
    auto it = cache_.find(k);
    if (it == cache_.end()) {
      const std::string path = shards_[k];
      pending = std::async(std::launch::deferred, [path] {
                  auto data = std::make_shared<ShardData>();
                  data->tensors = read_safetensors(path).tensors;
                  return std::shared_ptr<const ShardData>(data);
                }).share();
      cache_[k] = pending;
    } else {
      pending = it->second;
    }
    while (static_cast<int64_t>(recently_used_.size()) > cache_shards_) {
      cache_.erase(recently_used_.front());  // callers still holding the data keep it alive
      recently_used_.pop_front();
    }
  }
  return pending.get();  // the first caller reads the file; concurrent callers wait for it
}

TrainingBatch ShardDataset::load(const std::vector<int64_t>& indices) {
  const int64_t batch = static_cast<int64_t>(indices.size());
  // Group the requested samples by shard, remembering where each goes in the batch.
  std::map<int64_t, std::pair<std::vector<int64_t>, std::vector<int64_t>>> by_shard;  // shard -> (local, position)
  for (int64_t pos = 0; pos < batch; ++pos) {
    const int64_t index = indices[pos];
    if (index < 0 || index >= total_) throw Error(folder_ + ": sample index " + std::to_string(index) + " out of range");
    const int64_t k = std::upper_bound(offsets_.begin(), offsets_.end(), index) - offsets_.begin() - 1;
    by_shard[k].first.push_back(index - offsets_[k]);
    by_shard[k].second.push_back(pos);
  }
  TrainingBatch out;
  out.indices = indices;
  auto gather = [&](torch::Tensor& target, const torch::Tensor& source, const torch::Tensor& local,
                    const torch::Tensor& positions, torch::ScalarType type) {
    torch::Tensor rows = source.index_select(0, local).to(type);
    if (!target.defined()) {
      auto shape = rows.sizes().vec();
      shape[0] = batch;
      target = torch::zeros(shape, type);
    }
    target.index_copy_(0, positions, rows);
  };
  for (const auto& [k, lists] : by_shard) {
    const auto data = shard(k);
    const auto& t = data->tensors;
    const torch::Tensor local = torch::tensor(lists.first, torch::kLong);
    const torch::Tensor positions = torch::tensor(lists.second, torch::kLong);
    gather(out.x0, require_tensor(t, "latents", shards_[k]), local, positions, torch::kFloat32);
    if (has_captions_) {
      gather(out.condition.caption, require_tensor(t, "captions", shards_[k]), local, positions, torch::kFloat32);
      gather(out.condition.caption_mask, require_tensor(t, "caption_masks", shards_[k]), local, positions, torch::kLong);
    } else {
      gather(out.condition.class_labels, require_tensor(t, "labels", shards_[k]), local, positions, torch::kLong);
    }
    if (t.count("image_hw")) gather(out.condition.image_hw, t.at("image_hw"), local, positions, torch::kFloat32);
    if (t.count("aspect_ratio")) gather(out.condition.aspect_ratio, t.at("aspect_ratio"), local, positions, torch::kFloat32);
  }
  return out;
}

void write_shard(const std::string& path, const torch::Tensor& latents, const ConditionInputs& condition,
                 const std::map<std::string, std::string>& metadata) {
  if (latents.dim() != 4) throw Error(path + ": latents must be (N, C, H, W), got " + c10::str(latents.sizes()));
  TensorMap tensors{{"latents", latents}};
  if (condition.caption.defined()) {
    tensors["captions"] = condition.caption;
    tensors["caption_masks"] = condition.caption_mask.defined()
                                   ? condition.caption_mask.to(torch::kLong)
                                   : torch::ones({condition.caption.size(0), condition.caption.size(1)}, torch::kLong);
  } else if (condition.class_labels.defined()) {
    tensors["labels"] = condition.class_labels.to(torch::kLong);
  } else {
    throw Error(path + ": a shard needs class labels or captions");
  }
  if (condition.image_hw.defined()) tensors["image_hw"] = condition.image_hw;
  if (condition.aspect_ratio.defined()) tensors["aspect_ratio"] = condition.aspect_ratio;
  Metadata meta(metadata.begin(), metadata.end());
  meta["format"] = "ilf.shard";
  write_safetensors(path, tensors, meta);
}

DatasetPtr make_dataset(const DataOptions& options) {
  if (options.kind == "fashion_mnist") return std::make_shared<FashionMnistDataset>(options.path, options.split);
  return std::make_shared<ShardDataset>(options.path, options.cache_shards);
}

// ---------------------------------------------------------------------------------------------
// DataLoader

DataLoader::DataLoader(DatasetPtr dataset, const DataLoaderOptions& options) : dataset_(std::move(dataset)), options_(options) {
  if (options_.batch_size < 1 || options_.grad_accum < 1 || options_.world_size < 1 || options_.rank < 0 ||
      options_.rank >= options_.world_size)
    throw Error("DataLoader: invalid batch/rank settings");
  steps_per_epoch_ = dataset_->size() / global_batch();
  if (steps_per_epoch_ == 0)
    throw Error(dataset_->describe() + ": holds " + std::to_string(dataset_->size()) + " samples, fewer than one global batch (" +
                std::to_string(global_batch()) + " = batch_size " + std::to_string(options_.batch_size) + " x ranks " +
                std::to_string(options_.world_size) + " x grad_accum " + std::to_string(options_.grad_accum) + ")");
}

DataLoader::~DataLoader() {
  for (auto& p : queue_)
    if (p.batch.valid()) p.batch.wait();
}

std::shared_ptr<const std::vector<int64_t>> DataLoader::order(int64_t epoch) const {
  std::lock_guard<std::mutex> lock(order_mutex_);
  if (cached_epoch_ != epoch) {
    cached_order_ = std::make_shared<const std::vector<int64_t>>(dataset_->epoch_order(options_.seed, epoch));
    cached_epoch_ = epoch;
  }
  return cached_order_;
}

std::vector<int64_t> DataLoader::indices(int64_t step, int64_t micro, std::vector<int64_t>* sample_ids) const {
  const DataPosition where = position(step);
  const int64_t B = options_.batch_size;
  const int64_t offset = (micro * options_.world_size + options_.rank) * B;  // position p of the first sample
  const int64_t first = where.step_in_epoch * global_batch() + offset;
  const auto ord = order(where.epoch);
  std::vector<int64_t> out(ord->begin() + first, ord->begin() + first + B);
  if (sample_ids) {
    sample_ids->resize(static_cast<size_t>(B));
    for (int64_t i = 0; i < B; ++i) (*sample_ids)[i] = step * global_batch() + offset + i;
  }
  return out;
}

TrainingBatch DataLoader::load(int64_t step, int64_t micro) const {
  std::vector<int64_t> ids;
  const auto idx = indices(step, micro, &ids);
  TrainingBatch batch = dataset_->load(idx);
  batch.sample_ids = std::move(ids);
  return batch;
}

TrainingBatch DataLoader::next(int64_t step, int64_t micro) {
  TrainingBatch batch;
  if (!queue_.empty() && queue_.front().step == step && queue_.front().micro == micro) {
    batch = queue_.front().batch.get();
    queue_.pop_front();
  } else {
    for (auto& p : queue_)
      if (p.batch.valid()) p.batch.wait();
    queue_.clear();
    batch = load(step, micro);
  }
  // Keep `read_ahead` micro-batches in flight after this one.
  int64_t s = queue_.empty() ? step : queue_.back().step;
  int64_t m = queue_.empty() ? micro : queue_.back().micro;
  while (static_cast<int64_t>(queue_.size()) < options_.read_ahead) {
    if (++m == options_.grad_accum) m = 0, ++s;
    queue_.push_back({s, m, std::async(std::launch::async, [this, s, m] { return load(s, m); })});
  }
  return batch;
}

}  // namespace ilf
