// The analytics writer's cgroup (ANALYTICS_WRITER_CGROUP). The writer runs in Linux's SCHED_IDLE class, but
// the kernel applies that class only among the tasks of one scheduling group: against a client or upstream
// in another autogroup or systemd cgroup, the gateway's whole group competes at normal weight, and a process
// woken on the writer's core may wait for it. A cgroup with `cpu.idle = 1` holding only the writer's thread
// makes the kernel preempt it for any other task on the machine (docs/operations.md).
#pragma once
#include <string>
#include <string_view>

namespace gh::cgroup {

// The directory of this process's cgroup in the cgroup-v1 `cpu` hierarchy, from the text of /proc/self/cgroup
// and /proc/self/mountinfo; empty when the `cpu` controller is not mounted as cgroup v1 (cgroup v2 alone).
std::string cpu_v1_dir(std::string_view proc_cgroup, std::string_view mountinfo);

struct Idle {
  std::string dir;      // where the writer's thread goes; empty: it stays where the process is
  std::string why_not;  // when `dir` is empty: why
  bool ours = false;    // `auto`'s own directory: removed at exit (remove_ours)
};
// `setting`: "off"; "auto" (cgroup v1: `gatehouse-idle` under the process's own `cpu` cgroup, created if
// missing, with `cpu.idle` set to 1: needs write access there, normally root); or the directory of a cgroup
// the operator prepared (v2: a threaded cgroup with `cpu.idle = 1`), used as it is.
Idle prepare_idle(const std::string& setting);

// At exit: moves this process's threads out of `auto`'s directory (to the process's own cgroup) and removes
// it, unless another instance's writer is in it (the kernel refuses to remove a cgroup with tasks).
void remove_ours(const Idle& idle);

// Is `dir` a directory of a cgroup file system (v1 or v2)?
bool is_cgroup_dir(const std::string& dir);

// Moves the calling thread into the cgroup at `dir` (its `cgroup.threads`, or `tasks` in cgroup v1). Returns
// "" or what failed.
std::string join(const std::string& dir);

}  // namespace gh::cgroup
