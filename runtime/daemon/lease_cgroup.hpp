// Confinement of a lease's executor by the kernel: a control group per lease holding every
// process of the lease, with the leased cores (cpuset), the lease's memory and a task limit,
// and killed whole when the lease ends. Supports the hierarchy the host has, as Slurm's cgroup
// plugins do: cgroup v1 (cpuset, memory and pids, each mounted on its own) or cgroup v2 (one
// mount whose cgroup offers the controllers). Where neither can be written (not root, no
// controllers), no hierarchy: the daemon says so in its log and the executor falls back to
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

// One lease's cgroup (a folder per hierarchy in v1, one in v2): holds every process of the
// lease, killed whole when it closes.
class LeaseCgroup {
 public:
  // `procs_dir`: the folder whose cgroup.procs lists the lease's processes; `oom_file`: where
  // the kernel counts its OOM kills ("oom_kill N"); `kill_file`: v2's cgroup.kill ("" in v1).
  LeaseCgroup(std::vector<std::string> dirs, std::string procs_dir, std::string oom_file, std::string kill_file);
  ~LeaseCgroup();  // close()
  LeaseCgroup(const LeaseCgroup&) = delete;
  LeaseCgroup& operator=(const LeaseCgroup&) = delete;
  // kill_all(), then the folders go; "" or what could not be done (for the daemon's log).
  std::string close();
  // Moves a process (all its threads) in; what it starts later is born inside.
  void add(pid_t pid);
  // SIGKILL to every process inside until none is left (bounded: 2 s).
  void kill_all();
  // The kernel's OOM killer acted inside: the lease went past its memory.
  bool memory_exceeded() const;

 private:
  std::vector<std::string> dirs_;  // one per hierarchy, removed in reverse
  std::string procs_dir_, oom_file_, kill_file_;
  bool closed_ = false;
};

// Where this daemon makes its leases' cgroups: cgroup v1 (CgroupV1) or v2 (CgroupV2).
class CgroupHierarchy {
 public:
  virtual ~CgroupHierarchy() = default;
  virtual std::string describe() const = 0;  // for the daemon's log
  // A lease's cgroup with these limits. Throws CgroupError.
  virtual std::unique_ptr<LeaseCgroup> create(uint64_t lease_id, const LeaseLimits& limits) const = 0;
  // Removes the daemon's folders (empty once every lease's cgroup is gone).
  virtual void remove() const = 0;
};

// cpuset, memory and pids, each mounted on its own: a folder of the daemon's in each.
class CgroupV1 final : public CgroupHierarchy {
 public:
  CgroupV1(std::string cpuset, std::string memory, std::string pids)
      : cpuset_(std::move(cpuset)), memory_(std::move(memory)), pids_(std::move(pids)) {}
  std::string describe() const override;
  std::unique_ptr<LeaseCgroup> create(uint64_t lease_id, const LeaseLimits& limits) const override;
  void remove() const override;

 private:
  std::string cpuset_, memory_, pids_;
};

// One mount whose cgroup offers memory and pids (and perhaps cpuset): one folder of the daemon's.
class CgroupV2 final : public CgroupHierarchy {
 public:
  CgroupV2(std::string dir, bool cpuset) : dir_(std::move(dir)), cpuset_(cpuset) {}
  std::string describe() const override;
  std::unique_ptr<LeaseCgroup> create(uint64_t lease_id, const LeaseLimits& limits) const override;
  void remove() const override;

 private:
  std::string dir_;
  bool cpuset_;
};

// At the daemon's start, first: empties (SIGKILL) and removes the folders `prefix<pid>` whose
// daemon is gone (a crash): their leases' processes would go on running on cores leased anew.
// Returns what was removed ("" if nothing). Never throws.
std::string sweep_crashed_daemons_cgroups(const std::string& prefix);

// Then: makes this daemon's folder `prefix<pid>` in the hierarchy the host offers, v1 before v2,
// under the daemon's own cgroups. In v2, a daemon whose cgroup holds processes (under systemd
// or Slurm) moves itself into a leaf of that folder, so that the controllers can be handed
// down. Never throws: nullptr and *why when nothing usable was found (leases then rlimits only).
std::unique_ptr<CgroupHierarchy> make_daemon_cgroups(const std::string& prefix, std::string* why);

}  // namespace rfaas::daemon
