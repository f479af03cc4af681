#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "core/cgroup.hpp"
#include "core/config.hpp"

using gh::cgroup::cpu_v1_dir;

namespace {
// This machine's kind of /proc/self/mountinfo (cgroup v1 controllers, one each, plus a v2 mount without them).
constexpr const char* kMountinfo =
    "30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "32 30 0:29 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct\n"
    "33 30 0:30 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset\n"
    "40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
}  // namespace

TEST(Cgroup, FindsTheCpuV1DirectoryOfTheProcess) {
  EXPECT_EQ(cpu_v1_dir("4:memory:/x\n1:cpu:/\n0::/\n", kMountinfo), "/sys/fs/cgroup/cpu");
  EXPECT_EQ(cpu_v1_dir("2:cpuacct:/a\n1:cpu:/system.slice/gatehouse.service\n", kMountinfo),
            "/sys/fs/cgroup/cpu/system.slice/gatehouse.service");
  // cpuacct and cpuset are not cpu.
  EXPECT_EQ(cpu_v1_dir("2:cpuacct:/a\n3:cpuset:/b\n0::/\n", kMountinfo), "");
}

TEST(Cgroup, JoinedControllersAndOptionalMountFields) {
  // systemd's layout: cpu and cpuacct in one hierarchy, a mount with optional fields before the dash.
  const char* mi =
      "25 24 0:22 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup "
      "rw,cpu,cpuacct\n";
  EXPECT_EQ(cpu_v1_dir("3:cpu,cpuacct:/user.slice\n", mi), "/sys/fs/cgroup/cpu,cpuacct/user.slice");
}

TEST(Cgroup, AMountOfASubtreeIsResolvedFromItsRoot) {
  // A container that sees its own cgroup at the mount point.
  const char* mi = "50 40 0:28 /docker/abc /sys/fs/cgroup/cpu ro,relatime - cgroup cgroup rw,cpu\n";
  EXPECT_EQ(cpu_v1_dir("1:cpu:/docker/abc\n", mi), "/sys/fs/cgroup/cpu");
  EXPECT_EQ(cpu_v1_dir("1:cpu:/docker/abc/inner\n", mi), "/sys/fs/cgroup/cpu/inner");
  // Outside that subtree (or a mere name prefix of it) is not under this mount.
  EXPECT_EQ(cpu_v1_dir("1:cpu:/docker/abcd\n", mi), "");
  EXPECT_EQ(cpu_v1_dir("1:cpu:/other\n", mi), "");
}

TEST(Cgroup, CgroupV2OnlyHasNoV1Directory) {
  const char* mi = "30 22 0:27 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n";
  EXPECT_EQ(cpu_v1_dir("0::/system.slice/gatehouse.service\n", mi), "");
  EXPECT_EQ(cpu_v1_dir("", ""), "");
}

TEST(Cgroup, OffNamesTheSettingAndAGivenDirectoryIsUsedAsItIs) {
  auto off = gh::cgroup::prepare_idle("off");
  EXPECT_EQ(off.dir, "");
  EXPECT_NE(off.why_not.find("ANALYTICS_WRITER_CGROUP=off"), std::string::npos);
  EXPECT_EQ(gh::cgroup::prepare_idle("/sys/fs/cgroup/cpu/mine").dir, "/sys/fs/cgroup/cpu/mine");
}

TEST(Cgroup, TheSettingAcceptsAutoOffOrACgroupDirectory) {
  EXPECT_EQ(gh::load_settings({}).analytics_writer_cgroup, "auto");
  EXPECT_EQ(gh::load_settings({{"ANALYTICS_WRITER_CGROUP", "off"}}).analytics_writer_cgroup, "off");
  auto dir = std::filesystem::temp_directory_path() / ("gh-cgroup-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto refused = [](const std::string& value) {
    try {
      gh::load_settings({{"ANALYTICS_WRITER_CGROUP", value}});
    } catch (const gh::ConfigError& e) {
      return e.setting == "ANALYTICS_WRITER_CGROUP";
    }
    return false;
  };
  EXPECT_FALSE(gh::cgroup::is_cgroup_dir(dir.string()));
  EXPECT_TRUE(refused(dir.string()));  // a directory, but not a cgroup's
  std::ofstream(dir / "tasks").put('\n');  // even with the file a cgroup-v1 directory has
  EXPECT_TRUE(refused(dir.string()));
  EXPECT_TRUE(refused("relative/path"));
  EXPECT_TRUE(refused("yes"));
  std::filesystem::remove_all(dir);
  // A cgroup file system's directory is accepted (where this machine mounts one).
  for (const char* d : {"/sys/fs/cgroup", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/unified"}) {
    if (!gh::cgroup::is_cgroup_dir(d)) continue;
    EXPECT_EQ(gh::load_settings({{"ANALYTICS_WRITER_CGROUP", d}}).analytics_writer_cgroup, d);
  }
}

TEST(Cgroup, OnlyAutosOwnDirectoryIsRemovedAtExit) {
  auto base = std::filesystem::temp_directory_path() / ("gh-cgroup-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(base / "given");
  std::filesystem::create_directories(base / "ours");
  gh::cgroup::remove_ours({(base / "given").string(), {}, false});
  gh::cgroup::remove_ours({(base / "ours").string(), {}, true});
  EXPECT_TRUE(std::filesystem::exists(base / "given"));
  EXPECT_FALSE(std::filesystem::exists(base / "ours"));
  std::filesystem::remove_all(base);
}
