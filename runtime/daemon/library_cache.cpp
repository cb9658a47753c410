#include "daemon/library_cache.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace rfaas::daemon {

LibraryCache::~LibraryCache() {
  for (auto& e : entries_) ::close(e.fd);
}

namespace {
void add_user(std::vector<uint32_t>& users, uint32_t uid) {
  if (std::find(users.begin(), users.end(), uid) == users.end()) users.push_back(uid);
}
}  // namespace

std::list<LibraryCache::Entry>::iterator LibraryCache::find_locked(const std::string& sha256) {
  auto it = std::find_if(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.sha256 == sha256; });
  if (it != entries_.end()) entries_.splice(entries_.begin(), entries_, it);  // the most recently used now
  return it;
}

std::optional<int> LibraryCache::open(const std::string& sha256, uint32_t uid) {
  std::lock_guard lock(mutex_);
  auto it = find_locked(sha256);
  if (it == entries_.end() || std::find(it->users.begin(), it->users.end(), uid) == it->users.end()) return std::nullopt;
  int fd = ::fcntl(it->fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  return fd;
}

int LibraryCache::insert(const std::string& sha256, const std::vector<uint8_t>& bytes, uint32_t uid) {
  {
    // Bytes another user sent before: this user has now sent them too.
    std::lock_guard lock(mutex_);
    if (auto it = find_locked(sha256); it != entries_.end()) {
      add_user(it->users, uid);
      int copy = ::fcntl(it->fd, F_DUPFD_CLOEXEC, 0);
      if (copy < 0) throw std::runtime_error(std::string("dup of a cached library: ") + std::strerror(errno));
      return copy;
    }
  }
  int fd = ::memfd_create(("rfaas-lib-" + sha256.substr(0, 16)).c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) throw std::runtime_error(std::string("memfd_create: ") + std::strerror(errno));
  size_t off = 0;
  while (off < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + off, bytes.size() - off);
    if (n <= 0) {
      ::close(fd);
      throw std::runtime_error(std::string("writing the library to its memfd: ") + std::strerror(errno));
    }
    off += static_cast<size_t>(n);
  }
  // Sealed: no lease can change the bytes another lease will load.
  ::fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL);
  int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  std::lock_guard lock(mutex_);
  if (auto it = find_locked(sha256); it != entries_.end()) {  // another session stored it meanwhile
    add_user(it->users, uid);
    ::close(fd);
    return copy;
  }
  entries_.push_front({sha256, fd, bytes.size(), {uid}});
  used_ += bytes.size();
  while (used_ > capacity_ && entries_.size() > 1) {
    used_ -= entries_.back().size;
    ::close(entries_.back().fd);
    entries_.pop_back();
  }
  return copy;
}

}  // namespace rfaas::daemon
