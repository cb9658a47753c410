#include "executor/lease_user.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace rfaas::executor {

namespace {
[[noreturn]] void fail(const std::string& step) {
  throw std::runtime_error("becoming the lease's user: " + step + ": " + std::strerror(errno));
}
}  // namespace

void become_lease_user(uint32_t uid, uint32_t gid, bool confined, uint64_t memory_limit_bytes) {
  if (::geteuid() == 0) {
    // Registered memory is pinned: the lease's cgroup bounds it where there is one, else this
    // limit does; the user could not raise it once root is gone.
    rlimit memlock{RLIM_INFINITY, RLIM_INFINITY};
    if (!confined && memory_limit_bytes) memlock = {memory_limit_bytes, memory_limit_bytes};
    ::setrlimit(RLIMIT_MEMLOCK, &memlock);
    // Already that user (root's own lease): no credential change, which would also make the
    // kernel refuse RDMA descriptors opened before it (rdma_cm checks the opener's credentials).
    if (uid == ::getuid() && gid == ::getgid()) {
      if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("PR_SET_NO_NEW_PRIVS");
      return;
    }
    std::vector<char> buf(16384);
    passwd pw{}, *found = nullptr;
    ::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found);
    if (found) {
      if (::initgroups(found->pw_name, gid) != 0) fail("initgroups");
      ::setenv("HOME", found->pw_dir, 1);
      ::setenv("USER", found->pw_name, 1);
      ::setenv("LOGNAME", found->pw_name, 1);
    } else {
      gid_t only = gid;  // a uid without a passwd entry (a container, a directory-less node)
      if (::setgroups(1, &only) != 0) fail("setgroups");
    }
    if (::setresgid(gid, gid, gid) != 0) fail("setresgid");
    if (::setresuid(uid, uid, uid) != 0) fail("setresuid");
    if (uid != 0 && (::setuid(0) == 0 || ::geteuid() == 0)) throw std::runtime_error("becoming the lease's user: root is still reachable");
    // A changed uid makes the process undumpable, which would keep the user's own client
    // (shm's cross-memory copies) and tools, and /proc/self/fd (the library's memfd), from it.
    if (uid != 0 && ::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0) fail("PR_SET_DUMPABLE");
  } else if (::getuid() != uid || ::getgid() != gid) {
    errno = EPERM;
    fail("this executor runs as uid " + std::to_string(::getuid()) + " gid " + std::to_string(::getgid()) +
         ", the lease is uid " + std::to_string(uid) + " gid " + std::to_string(gid));
  }
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) fail("PR_SET_NO_NEW_PRIVS");
}

bool changes_user(uint32_t uid, uint32_t gid) { return uid != ::getuid() || gid != ::getgid(); }

std::string limit_by_rlimits(uint64_t memory_bytes, uint32_t max_tasks) {
  std::string set;
#if !defined(__SANITIZE_ADDRESS__)
  if (memory_bytes) {
    rlimit data{memory_bytes, memory_bytes};
    if (::setrlimit(RLIMIT_DATA, &data) == 0) set += "RLIMIT_DATA " + std::to_string(memory_bytes);
  }
#else
  (void)memory_bytes;
#endif
  if (max_tasks && ::getuid() != 0) {
    rlimit nproc{max_tasks, max_tasks};
    if (::setrlimit(RLIMIT_NPROC, &nproc) == 0) set += std::string(set.empty() ? "" : ", ") + "RLIMIT_NPROC " + std::to_string(max_tasks);
  }
  return set.empty() ? "none" : set;
}

}  // namespace rfaas::executor
