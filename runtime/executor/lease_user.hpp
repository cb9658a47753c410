// The executor becomes the lease's user before it loads any of the lease's code, as slurmstepd
// starts a job step as the submitting user: supplementary groups, gid, uid (real, effective and
// saved), then no_new_privs, so that nothing the library runs can regain privileges.
#pragma once

#include <cstdint>
#include <string>

namespace rfaas::executor {

// Throws std::runtime_error naming the step that failed. As root: becomes uid/gid (any user,
// root included); else the caller must already be that user. Registered memory is pinned: the
// locked-memory limit becomes unlimited when the lease's cgroup bounds its memory (`confined`),
// else the lease's memory limit.
void become_lease_user(uint32_t uid, uint32_t gid, bool confined, uint64_t memory_limit_bytes);
// Whether becoming uid/gid changes this process's credentials.
bool changes_user(uint32_t uid, uint32_t gid);

// Where the daemon could not place the lease in a cgroup: the lease's memory as RLIMIT_DATA
// (not in sanitizer builds, which reserve terabytes of address space) and, for a user other than
// root, RLIMIT_NPROC. Returns what was set, for the log.
std::string limit_by_rlimits(uint64_t memory_bytes, uint32_t max_tasks);

}  // namespace rfaas::executor
