// Training data: the data sets the trainer reads (Fashion-MNIST as class-conditional pixels, sharded
// safetensors latents with class labels or caption embeddings) and the DataLoader that decides, for
// every global step, which samples each rank trains on and reads them ahead in the background.
//
// Batch semantics: global batch G = per-rank batch B x ranks W x accumulation A. Every epoch visits
// the data in an order fixed by (seed, epoch); global step s of the epoch covers the G consecutive
// items [s*G, (s+1)*G) of that order and drops the remainder of the epoch. Inside a global step,
// position p = (micro * W + rank) * B + i, so one rank with batch 2B, two ranks with batch B and one
// rank with batch B and accumulation 2 train on exactly the same samples.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ilf/io/safetensors.h"
#include "ilf/models/backbone.h"

namespace ilf {

// A batch of training samples.
struct TrainingBatch {
  torch::Tensor x0;                 // (B, C, H, W) float32: pixels in [-1, 1] or (already scaled) latents
  ConditionInputs condition;        // class_labels (B,) int64, or caption (B, L, D) float32 + caption_mask (B, L)
  std::vector<int64_t> indices;     // data set index of each sample
  std::vector<int64_t> sample_ids;  // run-wide number of each sample: step * G + position (seeds its noise)
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  virtual std::vector<int64_t> sample_shape() const = 0;  // (C, H, W)
  virtual std::string describe() const = 0;
  // The visiting order of one epoch: a permutation of [0, size()) fixed by (seed, epoch).
  virtual std::vector<int64_t> epoch_order(uint64_t seed, int64_t epoch) const;
  // Reads the given samples (in this order). Thread-safe: the read-ahead thread calls it.
  virtual TrainingBatch load(const std::vector<int64_t>& indices) = 0;
};
using DatasetPtr = std::shared_ptr<Dataset>;

// Fashion-MNIST from the idx files of the Debian package dataset-fashion-mnist
// (<folder>/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz). Samples are 1 x 32 x 32: the 28 x 28
// images padded by 2 pixels on every side with the background value, scaled to [-1, 1]
// (0 -> -1, 255 -> 1). Labels 0..9 (10 classes).
class FashionMnistDataset : public Dataset {
 public:
  // split: "train" (60000 images) or "test" (10000 images).
  FashionMnistDataset(const std::string& folder, const std::string& split);
  int64_t size() const override { return images_.size(0); }
  std::vector<int64_t> sample_shape() const override { return {1, 32, 32}; }
  std::string describe() const override;
  TrainingBatch load(const std::vector<int64_t>& indices) override;

  static constexpr int64_t kNumClasses = 10;

 private:
  std::string folder_, split_;
  torch::Tensor images_;  // (N, 28, 28) uint8
  torch::Tensor labels_;  // (N,) int64
};

// The largest idx data read (Fashion-MNIST's training images are 47 MB).
constexpr uint64_t kMaxIdxBytes = uint64_t{1} << 30;

// Reads one idx file (gzip-compressed or plain) into a uint8 tensor of the shape its header gives.
// The data must be exactly the declared size (at most kMaxIdxBytes, never inflated further), and a
// gzip stream must end with its trailer.
torch::Tensor read_idx_file(const std::string& path);

// A folder of safetensors shards (*.safetensors but kNullCaptionFile, in name order). Each shard holds
//   "latents"        (N, C, H, W) F32/F16/BF16, already multiplied by the VAE's scale factor;
//   and either "labels" (N,) I64/I32 (class-conditional)
//   or "captions" (N, L, D) F32/F16/BF16 + "caption_masks" (N, L) (non-zero = valid token);
//   optionally "image_hw" (N, 2) and "aspect_ratio" (N, 1) (PixArt-alpha MS micro-conditions).
// Only the shard headers are read at start; shards are loaded when needed and the `cache_shards` most
// recently used stay in memory. The epoch order shuffles the shard order, then the samples inside each
// shard, so reading stays sequential in shards.
// The file beside the shards that holds the text encoder's features of the empty prompt ("caption"
// (L, D), "caption_mask" (L)): the null caption for condition dropout of models without a learned one.
inline constexpr const char* kNullCaptionFile = "null_caption.safetensors";

class ShardDataset : public Dataset {
 public:
  explicit ShardDataset(const std::string& folder, int64_t cache_shards = 3);
  int64_t size() const override { return total_; }
  std::vector<int64_t> sample_shape() const override { return sample_shape_; }
  std::string describe() const override;
  std::vector<int64_t> epoch_order(uint64_t seed, int64_t epoch) const override;
  TrainingBatch load(const std::vector<int64_t>& indices) override;

  bool has_captions() const { return has_captions_; }
  int64_t num_shards() const { return static_cast<int64_t>(shards_.size()); }

 private:
  struct ShardData {
    TensorMap tensors;
  };
  std::shared_ptr<const ShardData> shard(int64_t k);

  std::string folder_;
  std::vector<std::string> shards_;
  std::vector<int64_t> offsets_;  // first global index of each shard; offsets_.back() == total_
  int64_t total_ = 0;
  std::vector<int64_t> sample_shape_;
  bool has_captions_ = false;
  int64_t cache_shards_;
  std::mutex mutex_;
  std::map<int64_t, std::shared_future<std::shared_ptr<const ShardData>>> cache_;
  std::deque<int64_t> recently_used_;
};

// Writes one shard in the format ShardDataset reads (the preparation tool and tests use it).
// `condition` holds class_labels, or caption + caption_mask (and optionally image_hw, aspect_ratio).
void write_shard(const std::string& path, const torch::Tensor& latents, const ConditionInputs& condition,
                 const std::map<std::string, std::string>& metadata = {});

// The "data" section: {"kind": "fashion_mnist", "path", "split"} or {"kind": "shards", "path",
// "cache_shards"}, and the DataLoader's read-ahead.
struct DataOptions {
  std::string kind = "fashion_mnist";                      // "fashion_mnist" or "shards"
  std::string path = "/usr/share/datasets/fashion-mnist";  // the idx folder, or the shard folder (required for shards)
  std::string split = "train";                             // fashion_mnist: "train" or "test"
  int64_t cache_shards = 3;                                // shards: shards kept in memory
  int64_t read_ahead = 4;                                  // micro-batches loaded ahead in the background
};

DatasetPtr make_dataset(const DataOptions& options);

struct DataLoaderOptions {
  uint64_t seed = 0;
  int64_t batch_size = 1;  // per rank, per micro-batch (B)
  int64_t grad_accum = 1;  // A
  int64_t rank = 0;
  int64_t world_size = 1;  // W
  int64_t read_ahead = 4;  // micro-batches loaded ahead in the background (0: none)
};

// Where a global step falls in the data.
struct DataPosition {
  int64_t epoch = 0;
  int64_t step_in_epoch = 0;
};

class DataLoader {
 public:
  DataLoader(DatasetPtr dataset, const DataLoaderOptions& options);
  ~DataLoader();

  int64_t global_batch() const { return options_.batch_size * options_.world_size * options_.grad_accum; }
  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  DataPosition position(int64_t step) const { return {step / steps_per_epoch_, step % steps_per_epoch_}; }

  // This rank's micro-batch `micro` (0..A-1) of global step `step` (0-based). Requests in order
  // (step, micro) -> (step, micro + 1) -> (step + 1, 0) are served from the read-ahead queue.
  TrainingBatch next(int64_t step, int64_t micro);

  // The data set indices (and sample ids) of that micro-batch, without loading it.
  std::vector<int64_t> indices(int64_t step, int64_t micro, std::vector<int64_t>* sample_ids = nullptr) const;

  const Dataset& dataset() const { return *dataset_; }

 private:
  TrainingBatch load(int64_t step, int64_t micro) const;
  std::shared_ptr<const std::vector<int64_t>> order(int64_t epoch) const;

  DatasetPtr dataset_;
  DataLoaderOptions options_;
  int64_t steps_per_epoch_ = 0;
  mutable std::mutex order_mutex_;
  mutable int64_t cached_epoch_ = -1;
  mutable std::shared_ptr<const std::vector<int64_t>> cached_order_;
  struct Pending {
    int64_t step, micro;
    std::future<TrainingBatch> batch;
  };
  std::deque<Pending> queue_;
};

// Seeds a CPU generator from several numbers (splitmix64 mixing), for per-sample and per-epoch streams.
uint64_t mix_seed(uint64_t a, uint64_t b);
torch::Generator make_cpu_generator(uint64_t seed);

// A batch's condition on `device` (undefined tensors stay undefined).
ConditionInputs condition_to(const ConditionInputs& condition, const torch::Device& device);

}  // namespace ilf
