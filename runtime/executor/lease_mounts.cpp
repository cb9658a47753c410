#include "executor/lease_mounts.hpp"

#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace rfaas::executor {

namespace {
void add(std::string& list, const std::string& item) { list += (list.empty() ? "" : ", ") + item; }
}  // namespace

PrivateDirs make_private_dirs(uint64_t size_bytes, bool dev_shm) {
  PrivateDirs r;
  if (!dev_shm) add(r.shared, "/dev/shm (the shm fabric meets its peers there)");
  if (::geteuid() != 0) {
    add(r.shared, "/tmp (the daemon is not root)");
    if (dev_shm) add(r.shared, "/dev/shm (the daemon is not root)");
    return r;
  }
  // Our mounts must not reach the host: a namespace of our own, and / made a slave of the
  // host's so that nothing mounted here propagates back.
  if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0) {
    const std::string why = std::string("no mount namespace: ") + std::strerror(errno);
    add(r.shared, "/tmp (" + why + ")");
    if (dev_shm) add(r.shared, "/dev/shm (" + why + ")");
    return r;
  }
  const std::string options = "mode=1777,size=" + std::to_string(size_bytes ? size_bytes : uint64_t{64} << 20);
  for (const char* dir : {"/tmp", "/dev/shm"}) {
    if (std::strcmp(dir, "/dev/shm") == 0 && !dev_shm) continue;
    if (::mount("rfaas-lease", dir, "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) == 0) add(r.made, dir);
    else add(r.shared, std::string(dir) + " (mount: " + std::strerror(errno) + ")");
  }
  return r;
}

}  // namespace rfaas::executor
