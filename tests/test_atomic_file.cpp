// Output files (ilf/io/atomic_file.h): only regular files are replaced, atomically; a symbolic link is
// written through to its target; temporary files of writers that died are removed.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "ilf/io/atomic_file.h"
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

}  // namespace
}  // namespace ilf
