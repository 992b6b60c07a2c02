// Training of the Learning-to-Cache router (accel/l2c.h), ilf_train's mode "l2c", following the
// official recipe (github horseee/learning-to-cache, DiT/train_router.py): the backbone stays frozen;
// the only parameters are one logit theta_kj per cache step k (of the alternation with a full step
// every full_every steps) and block j, drawn from N(0, 1) and clamped to [-5, 5] after every optimiser
// step (so a gate can always come back), gate beta = sigmoid(theta).
//
// Data: a pool of trajectories of the plain sampler (the run config's solver, step count and guidance;
// conditions from the training data), recorded once, keeping at every cache step k the model input,
// the model output eps^k (the teacher: the full model at the same input) and each block's residual
// r_j^{k-1} of the step before (the cache, exactly one step old, as at sampling). Each optimiser step
// draws a minibatch of trajectories for every cache step and runs the routed forward
//     h <- h + beta_kj * (B_j(h) - h) + (1 - beta_kj) * r_j^{k-1}
// with loss, per cache step as the paper's,  |eps_routed^k - eps^k|^2  +  lambda * sum_j beta_kj,
// summed over the cache steps (each row of theta only sees its own step's term). So beta_kj settles
// near 1 - lambda / (2 A_kj), A_kj the output error of reusing block j at step k: a gate falls where
// reuse costs less than about lambda / 2. AdamW (weight decay 0) over theta only.
//
// Both halves of the guided batch (conditional and null) are compared raw, not their guided
// combination: the paper trains unguided with dropped labels, which is what the null half is.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <map>
#include <string>

#include "ilf/accel/l2c.h"
#include "ilf/models/backbone.h"
#include "ilf/sampling/sampler.h"
#include "ilf/sampling/solvers.h"
#include "ilf/training/datasets.h"

namespace ilf {

struct L2CRouterOptions {
  int64_t iterations = 20000;             // optimiser steps (training.steps); the paper's DDIM-20 router: 20k
  int64_t batch = 64;                     // trajectories per cache step per optimiser step (training.batch_size)
  int64_t trajectories = 64;              // the pool recorded before training (l2c.trajectories)
  int64_t full_every = 2;                 // l2c.full_every: cache steps are k % full_every != 0
  double lr = 1e-3;                       // AdamW, weight decay 0 (training.lr); the paper's
  double sparsity = kL2CDefaultSparsity;  // lambda (l2c.sparsity)
  double clamp = 5;                       // logits clamped to [-clamp, clamp] after every step
  uint64_t seed = 0;                      // training.seed: initial logits, data order and noise
};

struct L2CRouterStep {
  int64_t iteration = 0;
  double loss = 0, reconstruction = 0, mean_gate = 0;  // reconstruction: mean over cache steps of the MSE
};

// Trains the router for `backbone` sampled by `solver` with `sampling` (steps, guidance) on conditions
// drawn from `data`; `log` is called after every iteration. Returns theta (cache steps, depth) on the CPU.
torch::Tensor train_l2c_router(Backbone& backbone, Solver& solver, const SamplingOptions& sampling, Dataset& data,
                               const L2CRouterOptions& options, const torch::Device& device,
                               const std::function<void(const L2CRouterStep&)>& log = nullptr);

// Writes the router file accel/l2c.h reads (atomically): `logits` (cache steps, depth) for `steps`
// sampling steps with a full step every `full_every`, with `metadata` beside the format.
void write_l2c_router(const std::string& path, const torch::Tensor& logits, int64_t steps, int64_t full_every,
                      std::map<std::string, std::string> metadata);

}  // namespace ilf
