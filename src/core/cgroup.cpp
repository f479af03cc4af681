#include "core/cgroup.hpp"

#include <cerrno>
#include <cstring>
#include <sstream>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include "core/util.hpp"

namespace gh::cgroup {

namespace {

bool has_item(std::string_view list, std::string_view item) {
  for (auto part : split(list, ',')) if (part == item) return true;
  return false;
}

std::string errno_text(int e) { return std::strerror(e); }

// Writes `text` to the file `path` in one write(2): cgroup files take a value per write.
std::string write_file(const std::string& path, std::string_view text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return "cannot open " + path + ": " + errno_text(errno);
  auto n = ::write(fd, text.data(), text.size());
  int e = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size())) return "cannot write \"" + std::string(text) + "\" to " + path + ": " + errno_text(e);
  return {};
}

bool exists(const std::string& path) {
  struct stat st{};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

std::string cpu_v1_dir(std::string_view proc_cgroup, std::string_view mountinfo) {
  // /proc/self/cgroup (v1): "hierarchy:controller,controller:/path".
  std::string_view path;  // stays empty when no line names the cpu controller
  for (auto line : split(proc_cgroup, '\n')) {
    auto first = line.find(':');
    auto second = first == std::string_view::npos ? first : line.find(':', first + 1);
    if (second != std::string_view::npos && has_item(line.substr(first + 1, second - first - 1), "cpu")) {
      path = line.substr(second + 1);
      break;
    }
  }
  if (!path.starts_with('/')) return {};
  // /proc/self/mountinfo: "id parent major:minor root mount-point options [optional…] - type source super-options".
  for (auto line : split(mountinfo, '\n')) {
    auto dash = line.find(" - ");
    if (dash == std::string_view::npos) continue;
    auto left = split(line.substr(0, dash), ' ');
    auto right = split(line.substr(dash + 3), ' ');
    if (left.size() < 5 || right.size() < 3 || right[0] != "cgroup" || !has_item(right[2], "cpu")) continue;
    std::string_view root = left[3], mount = left[4];
    // The mount shows the hierarchy from `root` down (a container sees its own cgroup as "/").
    std::string_view rest;
    if (root == "/") rest = path;
    else if (path == root) rest = "";
    else if (path.starts_with(root) && path[root.size()] == '/') rest = path.substr(root.size());
    else continue;
    std::string dir(mount);
    if (rest != "/") dir += rest;
    return dir;
  }
  return {};
}

Idle prepare_idle(const std::string& setting) {
  if (setting == "off") return {{}, "ANALYTICS_WRITER_CGROUP=off"};
  if (setting != "auto") return {setting, {}};  // the operator's (checked to be a cgroup directory by the settings)
  auto parent = cpu_v1_dir(read_file("/proc/self/cgroup").value_or(""), read_file("/proc/self/mountinfo").value_or(""));
  if (parent.empty())
    return {{}, "no cgroup-v1 cpu controller (with cgroup v2, set ANALYTICS_WRITER_CGROUP to a threaded cgroup "
                "with cpu.idle = 1; docs/operations.md)"};
  std::string dir = parent + "/gatehouse-idle";
  bool made = false;
  if (::mkdir(dir.c_str(), 0755) == 0) made = true;
  else if (errno != EEXIST) return {{}, "cannot create " + dir + ": " + errno_text(errno)};
  if (auto error = write_file(dir + "/cpu.idle", "1"); !error.empty()) {
    if (made) ::rmdir(dir.c_str());
    return {{}, error};
  }
  return {dir, {}, true};
}

void remove_ours(const Idle& idle) {
  if (!idle.ours) return;
  auto parent = idle.dir.substr(0, idle.dir.rfind('/'));
  std::istringstream tasks(read_file(idle.dir + "/tasks").value_or(""));
  for (std::string tid; std::getline(tasks, tid);)
    if (::access(("/proc/self/task/" + tid).c_str(), F_OK) == 0) write_file(parent + "/tasks", tid);
  ::rmdir(idle.dir.c_str());
}

bool is_cgroup_dir(const std::string& dir) {
  constexpr long kCgroupV1 = 0x27e0eb, kCgroupV2 = 0x63677270;  // CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC
  struct statfs fs{};
  struct stat st{};
  return ::statfs(dir.c_str(), &fs) == 0 && (fs.f_type == kCgroupV1 || fs.f_type == kCgroupV2) &&
         ::stat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string join(const std::string& dir) {
  auto file = dir + (exists(dir + "/cgroup.threads") ? "/cgroup.threads" : "/tasks");
  return write_file(file, std::to_string(::gettid()));
}

}  // namespace gh::cgroup
