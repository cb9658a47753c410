#include "executor/lease_mounts.hpp"

#include <dirent.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace rfaas::executor {

namespace {
void add(std::string& list, const std::string& item) { list += (list.empty() ? "" : ", ") + item; }
}  // namespace

std::string enter_mount_namespace() {
  if (::geteuid() != 0) return "the daemon is not root";
  DIR* tasks = ::opendir("/proc/self/task");
  int threads = 0;
  if (tasks) {
    while (dirent* e = ::readdir(tasks))
      if (e->d_name[0] != '.') ++threads;
    ::closedir(tasks);
  }
  if (threads != 1) return "the executor has " + std::to_string(threads) + " threads already";
  if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0)
    return std::string("no mount namespace: ") + std::strerror(errno);
  return "";
}

PrivateDirs make_private_dirs(uint64_t size_bytes, bool dev_shm, const std::string& namespace_error) {
  PrivateDirs r;
  if (!dev_shm) add(r.shared, "/dev/shm (the shm fabric meets its peers there)");
  if (!namespace_error.empty()) {
    add(r.shared, "/tmp (" + namespace_error + ")");
    if (dev_shm) add(r.shared, "/dev/shm (" + namespace_error + ")");
    return r;
  }
  const std::string options = "mode=1777,size=" + std::to_string(size_bytes ? size_bytes : uint64_t{64} << 20);
  for (const char* dir : {"/tmp", "/dev/shm"}) {
    if (std::strcmp(dir, "/dev/shm") == 0 && !dev_shm) continue;
    if (::mount("rfaas-lease", dir, "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) == 0) add(r.made, dir);
    else add(r.shared, std::string(dir) + " (mount: " + std::strerror(errno) + ")");
  }
  // Programs that follow TMPDIR (the daemon's may name a shared scratch folder) use the private one.
  if (r.made.rfind("/tmp", 0) == 0) ::setenv("TMPDIR", "/tmp", 1);
  return r;
}

}  // namespace rfaas::executor
