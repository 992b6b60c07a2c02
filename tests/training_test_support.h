// Helpers shared by the training tests: synthetic class-conditional shards, the tiny CPU config with
// its data redirected to them, an in-process trainer, child ilf_train processes, and metrics files.
#pragma once
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ilf/config/run_config.h"
#include "ilf/pipelines/training.h"
#include "ilf/training/datasets.h"
#include "ilf/training/distributed.h"
#include "ilf/training/trainer.h"
#include "test_helpers.h"

extern char** environ;

namespace ilf::test {

inline std::string tiny_config_path() { return std::string(ILF_SOURCE_DIR) + "/configs/train/tiny_cpu.json"; }
inline std::string ilf_train_binary() { return std::string(ILF_BINARY_DIR) + "/ilf_train"; }

// `count` samples of 1 x 32 x 32 in [-1, 1] split into shards of `per_shard`: each class has a fixed
// random smooth pattern, each sample adds a little noise. Labels cycle through 0..9.
inline void write_synthetic_shards(const std::string& folder, int64_t count = 96, int64_t per_shard = 40, uint64_t seed = 7) {
  torch::NoGradGuard no_grad;
  auto generator = make_cpu_generator(seed);
  const torch::Tensor coarse = torch::rand({10, 1, 4, 4}, generator) * 2 - 1;                // (10, 1, 4, 4)
  const torch::Tensor patterns = torch::upsample_bilinear2d(coarse, {32, 32}, false) * 0.8;  // (10, 1, 32, 32)
  const torch::Tensor labels = torch::arange(count, torch::kLong).remainder(10);             // (N,)
  const torch::Tensor images =
      (patterns.index_select(0, labels) + 0.1 * torch::randn({count, 1, 32, 32}, generator)).clamp(-1, 1);
  for (int64_t start = 0, k = 0; start < count; start += per_shard, ++k) {
    const int64_t n = std::min(per_shard, count - start);
    ConditionInputs condition;
    condition.class_labels = labels.narrow(0, start, n);
    char name[64];
    std::snprintf(name, sizeof(name), "/shard-%03lld.safetensors", static_cast<long long>(k));
    write_shard(folder + name, images.narrow(0, start, n), condition);
  }
}

// The overrides that point the tiny config at a shard folder.
inline std::vector<std::string> shard_overrides(const std::string& data_folder) {
  return {"data.kind=shards", "data.path=" + data_folder, "training.log_every=1"};
}

// The tiny config with the given overrides, parsed.
inline RunConfig tiny_config(const std::vector<std::string>& overrides) { return load_run_config(tiny_config_path(), overrides); }

// A single-process trainer on the tiny config (shards + overrides), writing into `out`.
struct InProcessRun {
  RunConfig config;
  std::unique_ptr<Distributed> distributed;
  std::unique_ptr<Trainer> trainer;

  InProcessRun(const std::string& data_folder, const std::string& out, const std::vector<std::string>& extra = {},
               bool resume = false) {
    auto overrides = shard_overrides(data_folder);
    overrides.insert(overrides.end(), extra.begin(), extra.end());
    config = tiny_config(overrides);
    distributed = std::make_unique<Distributed>(ProcessTopology{}, torch::Device(torch::kCPU), std::chrono::seconds(10));
    trainer = std::make_unique<Trainer>(make_trainer_setup(config, out, resume), *distributed);
  }
};

// A child process with extra environment variables, its output in `log`.
struct ChildProcess {
  pid_t pid = -1;
  std::string log;
};

inline ChildProcess spawn_process(const std::vector<std::string>& args, const std::map<std::string, std::string>& env_extra,
                                  const std::string& log) {
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e) {
    const std::string entry(*e);
    const std::string key = entry.substr(0, entry.find('='));
    if (!env_extra.count(key) && key != "RANK" && key != "WORLD_SIZE" && key.rfind("SLURM_", 0) != 0)
      env_strings.push_back(entry);
  }
  for (const auto& [k, v] : env_extra) env_strings.push_back(k + "=" + v);
  std::vector<char*> argv, envp;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : env_strings) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  ChildProcess child;
  child.log = log;
  const int rc = posix_spawn(&child.pid, args[0].c_str(), &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw std::runtime_error("cannot start " + args[0]);
  return child;
}

// Waits for the child; returns its exit status, 128 + signal when killed, or -1 after `timeout`
// (the child is then killed).
inline int wait_process(const ChildProcess& child, std::chrono::seconds timeout = std::chrono::seconds(60)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    int status = 0;
    const pid_t r = waitpid(child.pid, &status, WNOHANG);
    if (r == child.pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (std::chrono::steady_clock::now() > deadline) {
      kill(child.pid, SIGKILL);
      waitpid(child.pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline std::vector<Json> read_metrics(const std::string& out) {
  std::vector<Json> lines;
  std::ifstream in(out + "/metrics.jsonl");
  std::string line;
  while (std::getline(in, line))
    if (!line.empty()) lines.push_back(Json::parse(line));
  return lines;
}

inline size_t count_lines(const std::string& path) {
  std::ifstream in(path);
  size_t n = 0;
  std::string line;
  while (std::getline(in, line)) n += !line.empty();
  return n;
}

// Runs ilf_train on the tiny config with the shards and extra overrides; returns the child.
inline ChildProcess spawn_train(const std::string& data_folder, const std::string& out, const std::vector<std::string>& extra,
                                bool resume = false, const std::map<std::string, std::string>& env = {},
                                const std::string& log_name = "train.log") {
  std::vector<std::string> args = {ilf_train_binary(), "--config", tiny_config_path(), "--out", out};
  auto overrides = shard_overrides(data_folder);
  overrides.insert(overrides.end(), extra.begin(), extra.end());
  for (const auto& o : overrides) {
    args.push_back("--set");
    args.push_back(o);
  }
  if (resume) args.push_back("--resume");
  std::filesystem::create_directories(out);
  return spawn_process(args, env, out + "/../" + std::filesystem::path(out).filename().string() + "." + log_name);
}

// A TCP port that was free a moment ago (for a TCPStore rendezvous on 127.0.0.1).
inline int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace ilf::test
