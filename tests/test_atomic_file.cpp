// Output files (ilf/io/atomic_file.h): only regular files are replaced, atomically; a symbolic link is
// written through to its target; temporary files of writers that died are removed.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "ilf/io/atomic_file.h"
#include "ilf/io/config.h"
#include "ilf/io/safetensors.h"
#include "ilf/pipelines/text_to_image.h"
#include "test_helpers.h"
#include "tool_test_support.h"

namespace ilf {
namespace {

namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// Output paths: only regular files are replaced; a symbolic link's target is written.

TEST(HardeningOutput, DirectoriesFifosAndDevicesAreNotReplaced) {
  const std::string dir = test::scratch_dir("hardening_output_kinds");
  auto write = [](const std::string& path) { write_file_atomically(path, [](std::ostream& o) { o << "x"; }); };
  fs::create_directories(dir + "/folder");
  const std::string folder = test::any_error_of([&] { write(dir + "/folder"); });
  EXPECT_NE(folder.find("a directory"), std::string::npos) << folder;
  EXPECT_TRUE(fs::is_directory(dir + "/folder"));
  ASSERT_EQ(::mkfifo((dir + "/fifo").c_str(), 0644), 0);
  const std::string fifo = test::any_error_of([&] { write(dir + "/fifo"); });
  EXPECT_NE(fifo.find("fifo"), std::string::npos) << fifo;
  EXPECT_TRUE(fs::is_fifo(dir + "/fifo"));
  const std::string device = test::any_error_of([] { resolve_output_path("/dev/null"); });
  EXPECT_NE(device.find("/dev/null"), std::string::npos) << device;
  EXPECT_NE(device.find("device"), std::string::npos) << device;
  // Through a link to a device, too.
  fs::create_symlink("/dev/null", dir + "/to_device");
  EXPECT_NE(test::any_error_of([&] { write(dir + "/to_device"); }).find("device"), std::string::npos);
  EXPECT_TRUE(fs::is_symlink(dir + "/to_device"));
  EXPECT_TRUE(fs::is_empty(dir + "/folder"));
  for (const auto& entry : fs::directory_iterator(dir))
    EXPECT_EQ(entry.path().filename().string().find(".tmp."), std::string::npos) << entry.path();
}

TEST(HardeningOutput, ASymbolicLinkIsKeptAndItsTargetReplaced) {
  const std::string dir = test::scratch_dir("hardening_output_symlink");
  fs::create_directories(dir + "/real");
  std::ofstream(dir + "/real/file.txt") << "old";
  fs::create_symlink("real/file.txt", dir + "/link.txt");
  write_file_atomically(dir + "/link.txt", [](std::ostream& o) { o << "new"; });
  EXPECT_TRUE(fs::is_symlink(dir + "/link.txt"));
  EXPECT_EQ(test::read_file(dir + "/real/file.txt"), "new");
  // A dangling link: its target is created.
  fs::create_symlink("real/created.txt", dir + "/dangling.txt");
  write_file_atomically(dir + "/dangling.txt", [](std::ostream& o) { o << "made"; });
  EXPECT_TRUE(fs::is_symlink(dir + "/dangling.txt"));
  EXPECT_EQ(test::read_file(dir + "/real/created.txt"), "made");
}

TEST(HardeningOutput, StaleTemporaryFilesOfDeadWritersAreRemoved) {
  const std::string dir = test::scratch_dir("hardening_stale_tmp");
  std::ofstream(dir + "/config.json.tmp.999999999") << "x";  // above any pid_max: a dead writer
  std::ofstream(dir + "/metrics.jsonl.tmp.999999998") << "x";
  const std::string mine = dir + "/feedback.safetensors.tmp." + std::to_string(::getpid());
  std::ofstream(mine) << "x";
  std::ofstream(dir + "/notes.tmp.txt") << "x";
  const auto removed = remove_stale_temporary_files(dir);
  EXPECT_EQ(removed.size(), 2u);
  EXPECT_FALSE(fs::exists(dir + "/config.json.tmp.999999999"));
  EXPECT_FALSE(fs::exists(dir + "/metrics.jsonl.tmp.999999998"));
  EXPECT_TRUE(fs::exists(mine));
  EXPECT_TRUE(fs::exists(dir + "/notes.tmp.txt"));
}

TEST(HardeningOutput, EveryAtomicWriteRemovesStaleTemporariesOfDeadWritersInItsFolder) {
  // Not only the trainer: any writer (samples, evaluations, forward dumps, searches) cleans its folder.
  const std::string dir = test::scratch_dir("hardening_stale_tmp_any_writer");
  std::ofstream(dir + "/sample.png.tmp.999999999") << "partial";  // a killed ilf_sample
  std::ofstream(dir + "/other.safetensors.tmp.999999997") << "partial";
  const std::string alive = dir + "/running.png.tmp.1";  // pid 1 is alive: its writer may still be at work
  std::ofstream(alive) << "x";
  write_file_atomically(dir + "/out.txt", [](std::ostream& o) { o << "new"; });
  EXPECT_FALSE(fs::exists(dir + "/sample.png.tmp.999999999"));
  EXPECT_FALSE(fs::exists(dir + "/other.safetensors.tmp.999999997"));
  EXPECT_TRUE(fs::exists(alive));
  EXPECT_EQ(test::read_file(dir + "/out.txt"), "new");
}

// Runs `f` in a child process that is killed after `seconds` (a reader that blocks on a fifo must fail
// the test, not hang the suite). Returns the child's message ("" when f threw nothing), or "TIMEOUT".
std::string error_in_child(const std::function<void()>& f, int seconds = 20) {
  int fds[2];
  if (::pipe(fds) != 0) return "pipe failed";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    ::alarm(static_cast<unsigned>(seconds));
    std::string message;
    try {
      f();
    } catch (const std::exception& e) {
      message = e.what();
      if (message.empty()) message = "(empty message)";
    }
    (void)!::write(fds[1], message.data(), message.size());
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string message;
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buffer, sizeof(buffer))) > 0) message.append(buffer, static_cast<size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (WIFSIGNALED(status)) return "TIMEOUT";
  return message;
}

TEST(HardeningInputs, FifosFoldersAndDevicesWhereAFileIsExpectedAreRefusedNamingThem) {
  const std::string dir = test::scratch_dir("hardening_inputs_kinds");
  ASSERT_EQ(::mkfifo((dir + "/fifo").c_str(), 0644), 0);
  fs::create_directories(dir + "/folder");
  // The check itself: by stat, never opening the file.
  for (const auto& entry : std::vector<std::pair<std::string, std::string>>{
           {dir + "/fifo", "fifo"}, {dir + "/folder", "directory"}, {"/dev/null", "device"}, {dir + "/none", "does not exist"}}) {
    const std::string& path = entry.first;  // a named variable: lambdas cannot capture structured bindings in C++17
    const std::string& kind = entry.second;
    const std::string message = test::any_error_of([&] { require_regular_file(path, "weights file"); });
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_NE(message.find(kind), std::string::npos) << message;
  }
  // The readers that blocked forever on a fifo (JSON: model.json, state.json, configs; safetensors) or
  // read a folder as "basic_filebuf::underflow".
  for (const std::string& path : {dir + "/fifo", dir + "/folder"}) {
    const std::string json = error_in_child([&] { load_json_file(path); });
    EXPECT_NE(json.find(path), std::string::npos) << json;
    EXPECT_EQ(json.find("underflow"), std::string::npos) << json;
    const std::string tensors = error_in_child([&] { read_safetensors(path); });
    EXPECT_NE(tensors.find(path), std::string::npos) << tensors;
    const std::string prompts = error_in_child([&] { read_prompts_file(path); });
    EXPECT_NE(prompts.find(path), std::string::npos) << prompts;
    EXPECT_NE(prompts.find("prompts file"), std::string::npos) << prompts;
  }
}

}  // namespace
}  // namespace ilf
