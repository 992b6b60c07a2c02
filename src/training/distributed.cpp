// Data parallelism over c10d (see include/ilf/training/distributed.h).
#include "ilf/training/distributed.h"

#include <torch/version.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#if TORCH_VERSION_MAJOR >= 2
#include <torch/csrc/distributed/c10d/Backend.hpp>
#else
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#endif

#include <cstdlib>
#include <map>

#include "ilf/error.h"

#ifdef ILF_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef ILF_HAVE_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace ilf {
namespace {

// LibTorch 1.x backends derive from c10d::ProcessGroup, 2.x backends from c10d::Backend; both have
// the same collective calls.
#if TORCH_VERSION_MAJOR >= 2
using CollectiveBackend = c10d::Backend;
#else
using CollectiveBackend = c10d::ProcessGroup;
#endif

int64_t parse_int(const std::string& name, const std::string& value) {
  try {
    size_t used = 0;
    const long long v = std::stoll(value, &used);
    if (used != value.size()) throw std::invalid_argument(value);
    return v;
  } catch (const std::logic_error&) {
    throw Error("environment variable " + name + " must be an integer, got \"" + value + "\"");
  }
}

bool is_loopback(const std::string& host) { return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1"; }

}  // namespace

std::string first_host_of_nodelist(const std::string& nodelist) {
  // The first top-level entry ("gpu[003-008,012]" of "gpu[003-008,012],cpu1").
  size_t end = nodelist.size();
  int depth = 0;
  for (size_t i = 0; i < nodelist.size(); ++i) {
    if (nodelist[i] == '[')
      ++depth;
    else if (nodelist[i] == ']')
      --depth;
    else if (nodelist[i] == ',' && depth == 0) {
      end = i;
      break;
    }
  }
  const std::string entry = nodelist.substr(0, end);
  const size_t open = entry.find('[');
  if (open == std::string::npos) return entry;
  const size_t close = entry.find(']', open);
  if (close == std::string::npos) throw Error("SLURM_JOB_NODELIST: unbalanced brackets in \"" + nodelist + "\"");
  const std::string ranges = entry.substr(open + 1, close - open - 1);
  const std::string first = ranges.substr(0, ranges.find_first_of(",-"));  // keeps zero padding
  return entry.substr(0, open) + first + entry.substr(close + 1);
}

ProcessTopology topology_from_environment(const EnvironmentLookup& lookup_arg) {
  const EnvironmentLookup lookup = lookup_arg ? lookup_arg : [](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  };
  auto int_var = [&](const std::string& name, std::optional<int64_t> fallback) -> int64_t {
    const auto v = lookup(name);
    if (!v) {
      if (fallback) return *fallback;
      throw Error("environment variable " + name + " is not set (needed with the other launcher variables)");
    }
    return parse_int(name, *v);
  };
  ProcessTopology topo;
  if (lookup("RANK") || lookup("WORLD_SIZE")) {
    topo.launcher = "torchrun";
    topo.rank = int_var("RANK", std::nullopt);
    topo.world_size = int_var("WORLD_SIZE", std::nullopt);
    topo.local_rank = int_var("LOCAL_RANK", 0);
    topo.master_addr = lookup("MASTER_ADDR").value_or("127.0.0.1");
    topo.master_port = int_var("MASTER_PORT", 29500);
  } else if (lookup("SLURM_PROCID") && lookup("SLURM_NTASKS")) {
    topo.launcher = "slurm";
    topo.rank = int_var("SLURM_PROCID", std::nullopt);
    topo.world_size = int_var("SLURM_NTASKS", std::nullopt);
    topo.local_rank = int_var("SLURM_LOCALID", 0);
    if (const auto addr = lookup("MASTER_ADDR")) {
      topo.master_addr = *addr;
    } else {
      const auto nodes = lookup("SLURM_JOB_NODELIST") ? lookup("SLURM_JOB_NODELIST") : lookup("SLURM_NODELIST");
      if (!nodes) throw Error("Slurm launch without SLURM_JOB_NODELIST or MASTER_ADDR: cannot find the rendezvous host");
      topo.master_addr = first_host_of_nodelist(*nodes);
    }
    topo.master_port = int_var("MASTER_PORT", 29500);
  } else {
    return topo;  // one process
  }
  if (topo.world_size < 1) throw Error("world size must be >= 1, got " + std::to_string(topo.world_size));
  if (topo.rank < 0 || topo.rank >= topo.world_size)
    throw Error("rank " + std::to_string(topo.rank) + " outside [0, " + std::to_string(topo.world_size) + ")");
  if (topo.local_rank < 0) throw Error("local rank must be >= 0, got " + std::to_string(topo.local_rank));
  if (topo.master_port < 1 || topo.master_port > 65535)
    throw Error("MASTER_PORT must be in 1..65535, got " + std::to_string(topo.master_port));
  return topo;
}

struct Distributed::Group {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<CollectiveBackend> backend;
  std::string name = "none";
};

Distributed::Distributed(const ProcessTopology& topology, const torch::Device& device, std::chrono::milliseconds timeout)
    : topology_(topology), device_(device), timeout_(timeout), group_(std::make_unique<Group>()) {
  if (topology_.world_size == 1) return;
  const std::string where = "rank " + std::to_string(topology_.rank) + "/" + std::to_string(topology_.world_size) +
                            " (rendezvous " + topology_.master_addr + ":" + std::to_string(topology_.master_port) + ")";
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<uint16_t>(topology_.master_port);
    options.isServer = topology_.rank == 0;
    options.numWorkers = static_cast<size_t>(topology_.world_size);
    options.waitWorkers = true;
    options.timeout = timeout_;
    group_->store = c10::make_intrusive<c10d::TCPStore>(topology_.master_addr, options);
  } catch (const std::exception& e) {
    throw Error(where + ": rendezvous failed within " + std::to_string(timeout_.count() / 1000) + " s: " + e.what());
  }
  const int rank = static_cast<int>(topology_.rank), size = static_cast<int>(topology_.world_size);
  try {
    if (device_.is_cuda()) {
#ifdef ILF_HAVE_NCCL
      c10::cuda::set_device(static_cast<c10::DeviceIndex>(device_.index() >= 0 ? device_.index() : topology_.local_rank));
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = timeout_;
      group_->backend = c10::make_intrusive<c10d::ProcessGroupNCCL>(group_->store, rank, size, options);
      group_->name = "nccl";
#else
      throw Error("this build has no NCCL support (LibTorch without CUDA/NCCL headers)");
#endif
    } else {
#ifdef ILF_HAVE_GLOO
      auto options = c10d::ProcessGroupGloo::Options::create(timeout_);
      if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"))
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      else if (is_loopback(topology_.master_addr))
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      else
        options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      group_->backend = c10::make_intrusive<c10d::ProcessGroupGloo>(group_->store, rank, size, options);
      group_->name = "gloo";
#else
      throw Error("this build has no Gloo support (install libgloo-dev and reconfigure)");
#endif
    }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(where + ": cannot create the process group: " + e.what());
  }
}

Distributed::~Distributed() = default;

std::string Distributed::backend_name() const { return group_->name; }

void Distributed::all_reduce_sum(torch::Tensor& flat, const char* what) {
  std::vector<at::Tensor> tensors{flat};
  try {
    auto work = group_->backend->allreduce(tensors);
    work->wait();
  } catch (const std::exception& e) {
    throw Error("rank " + std::to_string(topology_.rank) + "/" + std::to_string(topology_.world_size) + ": " + what +
                " failed (another rank died or stalled past the " + std::to_string(timeout_.count() / 1000) +
                " s timeout): " + e.what());
  }
}

void Distributed::average(const std::vector<torch::Tensor>& tensors, int64_t bucket_bytes) {
  if (topology_.world_size == 1) return;
  torch::NoGradGuard no_grad;
  size_t i = 0;
  while (i < tensors.size()) {
    // One bucket: consecutive tensors of one dtype up to bucket_bytes (at least one tensor).
    std::vector<torch::Tensor> bucket{tensors[i]};
    int64_t bytes = tensors[i].numel() * tensors[i].element_size();
    size_t j = i + 1;
    while (j < tensors.size() && tensors[j].scalar_type() == tensors[i].scalar_type() &&
           bytes + tensors[j].numel() * tensors[j].element_size() <= bucket_bytes) {
      bytes += tensors[j].numel() * tensors[j].element_size();
      bucket.push_back(tensors[j++]);
    }
    std::vector<torch::Tensor> flat_parts;
    for (const auto& t : bucket) flat_parts.push_back(t.reshape({-1}));
    torch::Tensor flat = torch::cat(flat_parts);  // (sum numel,)
    all_reduce_sum(flat, "gradient all-reduce");
    flat.div_(static_cast<double>(topology_.world_size));
    int64_t offset = 0;
    for (const auto& t : bucket) {
      t.copy_(flat.narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
    i = j;
  }
}

std::vector<double> Distributed::sum(const std::vector<double>& values) {
  if (topology_.world_size == 1 || values.empty()) return values;
  torch::Tensor flat = torch::tensor(values, torch::kFloat64).to(device_);
  all_reduce_sum(flat, "all-reduce of step statistics");
  flat = flat.cpu();
  return std::vector<double>(flat.data_ptr<double>(), flat.data_ptr<double>() + flat.numel());
}

void Distributed::broadcast(const std::vector<torch::Tensor>& tensors, int64_t root) {
  if (topology_.world_size == 1) return;
  torch::NoGradGuard no_grad;
  for (const auto& t : tensors) {
    std::vector<at::Tensor> one{t.is_contiguous() ? t : t.contiguous()};
    c10d::BroadcastOptions options;
    options.rootRank = root;
    try {
      group_->backend->broadcast(one, options)->wait();
    } catch (const std::exception& e) {
      throw Error("rank " + std::to_string(topology_.rank) + ": broadcast failed (another rank died or stalled): " + e.what());
    }
    if (!t.is_contiguous()) t.copy_(one[0]);
  }
}

void Distributed::barrier() {
  if (topology_.world_size == 1) return;
  torch::Tensor flag = torch::zeros({1}, torch::TensorOptions().dtype(torch::kFloat32).device(device_));
  all_reduce_sum(flag, "barrier");
}

}  // namespace ilf
