// Each lease gets a /tmp of its own (and a /dev/shm, where its fabric does not meet its peers
// there), as Slurm's job_container/tmpfs gives each job: the executor enters a mount namespace
// of its own and mounts fresh tmpfs there before it becomes the lease's user. Nothing the lease
// leaves there is seen by another lease or outlives it: the namespace, and its tmpfs, go with
// the lease's last process (the lease's cgroup ends them all). tmpfs pages are charged to the
// lease's memory cgroup; each mount is also capped at the lease's memory.
#pragma once

#include <cstdint>
#include <string>

namespace rfaas::executor {

struct PrivateDirs {
  std::string made;    // "/tmp, /dev/shm": what is private now
  std::string shared;  // what is not, and why ("/dev/shm (the shm fabric meets its peers there)")
};

// First thing in the executor, while it has one thread: a namespace entered later would hold
// only the thread that entered it, and threads started before (libfabric's) would still reach
// the node's /tmp through /proc/self/task/N/root. As root only; / becomes a slave of the
// node's, so nothing mounted here propagates back. Returns "" or why there is none.
std::string enter_mount_namespace();

// At the lease, as root, before the credential change: fresh tmpfs on /tmp (and /dev/shm) in
// that namespace, seen by every thread. Never throws: what could not be made private is named
// in `shared`. `namespace_error`: what enter_mount_namespace() returned.
PrivateDirs make_private_dirs(uint64_t size_bytes, bool dev_shm, const std::string& namespace_error);

}  // namespace rfaas::executor
