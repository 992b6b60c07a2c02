// Training of the Learning-to-Cache router (accel/l2c.h), ilf_train's mode "l2c". The backbone stays
// frozen; the only parameters are the router's logits theta (steps, depth), gate beta = sigmoid(theta).
// Each iteration samples a batch of trajectories with the plain sampler (the run config's solver, step
// count and guidance; conditions from the training data), recording at every step k the model input,
// each block's residual r_j^k and the model output eps^k. Then, for every step k >= 1, the routed
// forward mixes each block's fresh residual with the previous step's:
//     h <- h + beta_kj * (B_j(h) - h) + (1 - beta_kj) * r_j^{k-1}
// and the loss is  mean_k |eps_routed^k - eps^k|^2  +  sparsity * mean(beta),
// so a gate falls where reusing its block costs the output little. Only theta gets gradients; the
// blocks run with autograd for the path through h. ilf_sample then fixes the router to a static
// schedule at a chosen budget (l2c.budget).
#pragma once
#include <torch/torch.h>

#include <functional>
#include <string>

#include "ilf/models/backbone.h"
#include "ilf/sampling/sampler.h"
#include "ilf/sampling/solvers.h"
#include "ilf/training/datasets.h"

namespace ilf {

struct L2CRouterOptions {
  int64_t iterations = 100;    // optimizer steps (training.steps)
  int64_t batch = 8;           // trajectories per iteration (training.batch_size)
  double lr = 0.05;            // Adam (training.lr)
  double sparsity = 0.1;       // l2c.sparsity
  double initial_logit = 2.0;  // every gate starts at sigmoid(2) = 0.88: close to computing everything
  uint64_t seed = 0;           // training.seed: data order and noise
};

struct L2CRouterStep {
  int64_t iteration = 0;
  double loss = 0, reconstruction = 0, mean_gate = 0;
};

// Trains the router for `backbone` sampled by `solver` with `sampling` (steps, guidance) on conditions
// drawn from `data`; `log` is called after every iteration. Returns theta (steps, depth) on the CPU.
torch::Tensor train_l2c_router(Backbone& backbone, Solver& solver, const SamplingOptions& sampling, Dataset& data,
                               const L2CRouterOptions& options, const torch::Device& device,
                               const std::function<void(const L2CRouterStep&)>& log = nullptr);

// Writes the router file accel/l2c.h reads (atomically), with `metadata` beside the format.
void write_l2c_router(const std::string& path, const torch::Tensor& logits, std::map<std::string, std::string> metadata);

}  // namespace ilf
