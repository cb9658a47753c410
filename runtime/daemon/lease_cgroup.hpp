// Confinement of a lease's executor by the kernel: a control group per lease holding every
// process of the lease, with the leased cores (cpuset), the lease's memory and a task limit,
// and killed whole when the lease ends. Supports the hierarchy the host has, as Slurm's cgroup
// plugins do: cgroup v1 (cpuset, memory and pids, each mounted on its own) or cgroup v2 (one
// mount whose cgroup offers the controllers). Where neither can be written (not root, no
// controllers), Kind::none: the daemon says so in its log and the executor falls back to
// rlimits (docs/security.md). Cold path: used at deploy and at the lease's end.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace rfaas::daemon {

struct LeaseLimits {
  std::vector<int> cores;     // cpuset
  uint64_t memory_bytes = 0;  // the kernel kills the lease's processes beyond it
  uint32_t max_tasks = 0;     // processes and threads
};

class CgroupError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class LeaseCgroup;

class CgroupHierarchy {
 public:
  enum class Kind { none, v1, v2 };
  // What this host offers this process, under a folder `prefix` + this process's pid in the
  // daemon's own cgroups (created here). Folders of earlier daemons with that prefix whose
  // process is gone (a crash) are emptied and removed first: *swept says what was found there.
  // Never throws: Kind::none and *why when nothing usable was found.
  static CgroupHierarchy detect(const std::string& prefix, std::string* why, std::string* swept);
  Kind kind() const { return kind_; }
  std::string describe() const;  // for the daemon's log
  // A lease's cgroup with these limits. Throws CgroupError.
  std::unique_ptr<LeaseCgroup> create(uint64_t lease_id, const LeaseLimits& limits) const;
  // Removes the daemon's folders (empty once every lease's cgroup is gone).
  void remove() const;

 private:
  Kind kind_ = Kind::none;
  // v1: the folder in the cpuset, memory and pids hierarchies; v2: one folder.
  std::string cpuset_, memory_, pids_;
};

class LeaseCgroup {
 public:
  LeaseCgroup(CgroupHierarchy::Kind kind, std::vector<std::string> dirs, std::string memory_dir, std::string procs_dir);
  ~LeaseCgroup();  // close()
  // kill_all(), then the folders go; "" or what could not be done (for the daemon's log).
  std::string close();
  LeaseCgroup(const LeaseCgroup&) = delete;
  LeaseCgroup& operator=(const LeaseCgroup&) = delete;

  // Moves a process (all its threads) in; what it starts later is born inside.
  void add(pid_t pid);
  // SIGKILL to every process inside until none is left (bounded: 2 s).
  void kill_all();
  // The kernel's OOM killer acted inside: the lease went past its memory.
  bool memory_exceeded() const;

 private:
  CgroupHierarchy::Kind kind_;
  std::vector<std::string> dirs_;  // one per hierarchy, removed in reverse
  std::string memory_dir_, procs_dir_;
  bool closed_ = false;
};

}  // namespace rfaas::daemon
