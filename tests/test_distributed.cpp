// Data parallelism: launcher environment parsing (torchrun, Slurm), Gloo collectives between two
// ranks, two ilf_train ranks with batch B matching one with batch 2B, and a dead rank failing the
// survivor with a clear error instead of a hang.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <thread>

#include "ilf/error.h"
#include "ilf/feedback/feedback.h"
#include "ilf/io/safetensors.h"
#include "ilf/training/distributed.h"
#include "training_test_support.h"

namespace ilf {
namespace {

EnvironmentLookup lookup_in(const std::map<std::string, std::string>& env) {
  return [env](const std::string& name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
}

TEST(Distributed, NoLauncherVariablesMeansOneProcess) {
  const ProcessTopology t = topology_from_environment(lookup_in({}));
  EXPECT_EQ(t.world_size, 1);
  EXPECT_EQ(t.rank, 0);
  EXPECT_EQ(t.launcher, "single");
}

TEST(Distributed, TorchrunVariablesGiveTheTopology) {
  const ProcessTopology t = topology_from_environment(
      lookup_in({{"RANK", "5"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "node7"}, {"MASTER_PORT", "1234"}}));
  EXPECT_EQ(t.launcher, "torchrun");
  EXPECT_EQ(t.rank, 5);
  EXPECT_EQ(t.world_size, 8);
  EXPECT_EQ(t.local_rank, 1);
  EXPECT_EQ(t.master_addr, "node7");
  EXPECT_EQ(t.master_port, 1234);
}

TEST(Distributed, SlurmVariablesUseTheFirstHostOfTheNodeList) {
  const ProcessTopology t = topology_from_environment(lookup_in({{"SLURM_PROCID", "9"},
                                                                 {"SLURM_NTASKS", "16"},
                                                                 {"SLURM_LOCALID", "1"},
                                                                 {"SLURM_JOB_NODELIST", "gpu[007-009,012],login1"}}));
  EXPECT_EQ(t.launcher, "slurm");
  EXPECT_EQ(t.rank, 9);
  EXPECT_EQ(t.world_size, 16);
  EXPECT_EQ(t.local_rank, 1);
  EXPECT_EQ(t.master_addr, "gpu007");
  EXPECT_EQ(t.master_port, 29500);
  EXPECT_EQ(first_host_of_nodelist("nodeA"), "nodeA");
  EXPECT_EQ(first_host_of_nodelist("a1,b2"), "a1");
  EXPECT_EQ(first_host_of_nodelist("rack-2-n[3,5-6]"), "rack-2-n3");
  EXPECT_EQ(first_host_of_nodelist("n[01-02]-ib"), "n01-ib");
}

TEST(Distributed, InconsistentLauncherVariablesAreErrors) {
  EXPECT_THROW(topology_from_environment(lookup_in({{"RANK", "0"}})), Error);  // WORLD_SIZE missing
  EXPECT_THROW(topology_from_environment(lookup_in({{"RANK", "2"}, {"WORLD_SIZE", "2"}})), Error);
  EXPECT_THROW(topology_from_environment(lookup_in({{"RANK", "x"}, {"WORLD_SIZE", "2"}})), Error);
  EXPECT_THROW(topology_from_environment(lookup_in({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}})), Error);  // no host
}

// The CPU process group is Gloo's. A build without it (against a pip torch wheel, which ships no gloo
// headers) reports the tests that need it as skipped rather than leaving them out.
#ifdef ILF_HAVE_GLOO
#define ILF_SKIP_WITHOUT_GLOO()
#else
#define ILF_SKIP_WITHOUT_GLOO() GTEST_SKIP() << "this build has no Gloo process group (LibTorch without gloo headers)"
#endif

TEST(Distributed, TwoGlooRanksAverageSumAndBroadcast) {
  ILF_SKIP_WITHOUT_GLOO();
  const int port = test::free_port();
  std::vector<torch::Tensor> averaged(2), broadcasted(2);
  std::vector<std::vector<double>> sums(2);
  std::vector<std::string> errors(2);
  auto rank_main = [&](int rank) {
    try {
      ProcessTopology t;
      t.rank = rank, t.world_size = 2, t.master_port = port, t.launcher = "test";
      Distributed d(t, torch::Device(torch::kCPU), std::chrono::seconds(20));
      // Three tensors in small buckets (one per tensor) and one big bucket give the same mean.
      std::vector<torch::Tensor> grads = {torch::full({3}, 1.0 + rank), torch::full({2, 2}, 10.0 * rank),
                                          torch::full({5}, -2.0 * rank)};
      d.average(grads, /*bucket_bytes=*/8);
      averaged[rank] = torch::cat({grads[0].flatten(), grads[1].flatten(), grads[2].flatten()});
      sums[rank] = d.sum({1.0 + rank, 0.5});
      torch::Tensor b = torch::full({4}, static_cast<double>(rank + 7));
      d.broadcast({b}, 0);
      broadcasted[rank] = b;
      d.barrier();
    } catch (const std::exception& e) {
      errors[rank] = e.what();
    }
  };
  std::thread r1(rank_main, 1);
  rank_main(0);
  r1.join();
  ASSERT_EQ(errors[0], "");
  ASSERT_EQ(errors[1], "");
  const torch::Tensor expected = torch::cat({torch::full({3}, 1.5), torch::full({4}, 5.0), torch::full({5}, -1.0)});
  EXPECT_TRUE(torch::equal(averaged[0], expected));
  EXPECT_TRUE(torch::equal(averaged[1], expected));
  EXPECT_EQ(sums[0], (std::vector<double>{3.0, 1.0}));
  EXPECT_EQ(sums[1], sums[0]);
  EXPECT_TRUE(torch::equal(broadcasted[1], torch::full({4}, 7.0)));
}

class DistributedTraining : public ::testing::Test {
 protected:
  static std::string data() {
    static const std::string folder = [] {
      // Per process: ctest may run the tests of this suite in parallel processes.
      const std::string dir = test::scratch_dir("distributed_data_" + std::to_string(getpid()));
      test::write_synthetic_shards(dir);
      return dir;
    }();
    return folder;
  }
};

TEST_F(DistributedTraining, TwoRanksWithBatchBMatchOneRankWithBatch2B) {
  ILF_SKIP_WITHOUT_GLOO();
  const std::string root = test::scratch_dir("distributed_equivalence");
  const std::vector<std::string> common = {"training.steps=6", "training.checkpoint_every=0"};
  auto single_settings = common;
  single_settings.push_back("training.batch_size=8");
  const auto single = test::spawn_train(data(), root + "/one_rank", single_settings);

  auto pair_settings = common;
  pair_settings.push_back("training.batch_size=4");
  const std::string port = std::to_string(test::free_port());
  std::vector<test::ChildProcess> ranks;
  for (int rank = 0; rank < 2; ++rank)
    ranks.push_back(test::spawn_train(data(), root + "/two_ranks", pair_settings, false,
                                      {{"RANK", std::to_string(rank)},
                                       {"WORLD_SIZE", "2"},
                                       {"LOCAL_RANK", std::to_string(rank)},
                                       {"MASTER_ADDR", "127.0.0.1"},
                                       {"MASTER_PORT", port}},
                                      "rank" + std::to_string(rank) + ".log"));
  ASSERT_EQ(test::wait_process(single), 0) << test::read_text(single.log);
  for (const auto& r : ranks) ASSERT_EQ(test::wait_process(r), 0) << test::read_text(r.log);

  const auto a = read_safetensors(root + "/one_rank/feedback.safetensors").tensors;
  const auto b = read_safetensors(root + "/two_ranks/feedback.safetensors").tensors;
  ASSERT_EQ(a.size(), b.size());
  double worst = 0;
  for (const auto& [name, value] : a) worst = std::max(worst, test::relative_error(b.at(name), value));
  const auto la = test::read_metrics(root + "/one_rank"), lb = test::read_metrics(root + "/two_ranks");
  ASSERT_EQ(la.size(), lb.size());
  double worst_loss = 0;
  for (size_t i = 0; i < la.size(); ++i)
    worst_loss = std::max(worst_loss, std::abs(la[i]["loss"].get<double>() - lb[i]["loss"].get<double>()));
  std::cout << "[ measured ] 2 ranks x batch 4 vs 1 rank x batch 8 after 6 steps: max relative feedback weight "
            << "difference " << worst << ", max loss difference " << worst_loss << "\n";
  EXPECT_LT(worst, 1e-5);
  EXPECT_LT(worst_loss, 1e-5);
  // Only rank 0 writes logs and checkpoints: one metrics line per step.
  EXPECT_EQ(lb.size(), 6u);
}

TEST_F(DistributedTraining, ADeadRankMakesTheOtherFailWithAClearErrorInsteadOfHanging) {
  ILF_SKIP_WITHOUT_GLOO();
  const std::string root = test::scratch_dir("distributed_dead_rank");
  const std::string port = std::to_string(test::free_port());
  const std::vector<std::string> settings = {"training.steps=100000", "training.checkpoint_every=0", "training.batch_size=4",
                                             "training.collective_timeout_s=20"};
  std::vector<test::ChildProcess> ranks;
  for (int rank = 0; rank < 2; ++rank)
    ranks.push_back(test::spawn_train(data(), root + "/run", settings, false,
                                      {{"RANK", std::to_string(rank)}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", port}},
                                      "rank" + std::to_string(rank) + ".log"));
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (test::count_lines(root + "/run/metrics.jsonl") < 3 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  kill(ranks[1].pid, SIGKILL);
  const auto killed_at = std::chrono::steady_clock::now();
  EXPECT_EQ(test::wait_process(ranks[1]), 128 + SIGKILL);
  const int status = test::wait_process(ranks[0], std::chrono::seconds(40));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  std::cout << "[ measured ] the surviving rank exited " << seconds << " s after the other was killed\n";
  EXPECT_EQ(status, 1) << test::read_text(ranks[0].log);
  EXPECT_NE(test::read_text(ranks[0].log).find("rank 0/2"), std::string::npos) << test::read_text(ranks[0].log);
}

}  // namespace
}  // namespace ilf
