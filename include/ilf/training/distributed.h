// Data parallelism over c10d: the process topology from torchrun's or Slurm's environment variables,
// a rendezvous through a TCPStore, and the collectives the trainer needs (bucketed gradient
// averaging, sums of small values, broadcast, barrier) over NCCL on CUDA or Gloo on CPU. A single
// process (no launcher variables) runs without any c10d object.
//
// Failure behaviour: every collective runs under the configured timeout; if another rank dies the
// survivors' next collective fails (Gloo: connection closed; otherwise the timeout) and the call
// throws an ilf::Error naming this rank and the operation, so no rank hangs.
#pragma once
#include <torch/torch.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ilf {

struct ProcessTopology {
  int64_t rank = 0;
  int64_t world_size = 1;
  int64_t local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int64_t master_port = 29500;
  std::string launcher = "single";  // "torchrun" (RANK, WORLD_SIZE, ...), "slurm" (SLURM_PROCID, ...) or "single"
};

using EnvironmentLookup = std::function<std::optional<std::string>(const std::string&)>;

// torchrun: RANK, WORLD_SIZE, LOCAL_RANK (default 0), MASTER_ADDR (default 127.0.0.1), MASTER_PORT
// (default 29500). Otherwise Slurm: SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, the first host of
// SLURM_JOB_NODELIST (MASTER_ADDR / MASTER_PORT override it when set). Otherwise one process.
// Throws ilf::Error for malformed or inconsistent values. `lookup` defaults to the process environment.
ProcessTopology topology_from_environment(const EnvironmentLookup& lookup = nullptr);

// The first host name of a Slurm node list: "gpu[003-008,012],cpu1" -> "gpu003".
std::string first_host_of_nodelist(const std::string& nodelist);

class Distributed {
 public:
  // Joins the group described by `topology` (no-op for one process): rank 0 serves a TCPStore at
  // master_addr:master_port, the others connect to it; then NCCL (CUDA device) or Gloo (CPU).
  Distributed(const ProcessTopology& topology, const torch::Device& device, std::chrono::milliseconds timeout);
  ~Distributed();
  Distributed(const Distributed&) = delete;
  Distributed& operator=(const Distributed&) = delete;

  int64_t rank() const { return topology_.rank; }
  int64_t world_size() const { return topology_.world_size; }
  int64_t local_rank() const { return topology_.local_rank; }
  bool is_main() const { return topology_.rank == 0; }
  const ProcessTopology& topology() const { return topology_; }
  std::string backend_name() const;  // "none", "gloo" or "nccl"

  // Replaces each tensor by its mean over the ranks, in place. Tensors are packed into flat buckets
  // of at most `bucket_bytes` per all-reduce (one bucket per dtype run).
  void average(const std::vector<torch::Tensor>& tensors, int64_t bucket_bytes = 25 << 20);
  // The element-wise sum of `values` over the ranks (losses, flags), in float64.
  std::vector<double> sum(const std::vector<double>& values);
  // Copies `root`'s tensors to every rank, in place.
  void broadcast(const std::vector<torch::Tensor>& tensors, int64_t root = 0);
  void barrier();

 private:
  struct Group;
  void all_reduce_sum(torch::Tensor& flat, const char* what);

  ProcessTopology topology_;
  torch::Device device_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<Group> group_;
};

}  // namespace ilf
