#include "net/private_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace rfaas::net {

int create_new_file(const std::string& path, mode_t mode) {
  // Three tries: someone who can write the folder may plant the name again between the two calls.
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      throw std::runtime_error("cannot replace " + path + ": " + std::strerror(errno));
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd >= 0) {
      if (::fchmod(fd, mode) != 0) {  // the umask does not narrow what the caller asked for
        int err = errno;
        ::close(fd);
        throw std::runtime_error("cannot set the mode of " + path + ": " + std::strerror(err));
      }
      return fd;
    }
    if (errno != EEXIST) throw std::runtime_error("cannot create " + path + ": " + std::strerror(errno));
  }
  throw std::runtime_error("cannot create " + path + ": something keeps putting a file there");
}

void publish_file(const std::string& path, const std::string& text, mode_t mode) {
  const std::string tmp = path + ".tmp";
  int fd = create_new_file(tmp, mode);
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  int err = errno;
  ::close(fd);
  if (off != text.size()) {
    ::unlink(tmp.c_str());
    throw std::runtime_error("cannot write " + tmp + ": " + std::strerror(err));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {  // rename replaces a link at `path`, never follows it
    err = errno;
    ::unlink(tmp.c_str());
    throw std::runtime_error("cannot rename " + tmp + " to " + path + ": " + std::strerror(err));
  }
}

}  // namespace rfaas::net
