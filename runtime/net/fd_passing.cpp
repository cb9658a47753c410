#include "net/fd_passing.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace rfaas::net {

void send_with_fd(int sock, const std::string& bytes, int fd) {
  uint32_t len = static_cast<uint32_t>(bytes.size());
  std::string frame(reinterpret_cast<const char*>(&len), 4);
  frame += bytes;
  iovec iov{frame.data(), frame.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  ssize_t n;
  do n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(frame.size()))
    throw NetError(n < 0 && errno == EPIPE ? NetErrc::closed : NetErrc::io, "send_with_fd failed");
}

std::string recv_with_fd(int sock, size_t max, int* fd) {
  *fd = -1;
  uint32_t len = 0;
  iovec iov{&len, 4};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_WAITALL);
  while (n < 0 && errno == EINTR);
  if (n == 0) throw NetError(NetErrc::closed, "recv_with_fd: peer closed");
  if (n != 4) throw NetError(NetErrc::io, "recv_with_fd: short header");
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c))
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) std::memcpy(fd, CMSG_DATA(c), sizeof(int));
  if (len > max) throw NetError(NetErrc::too_large, "recv_with_fd: message too large");
  std::string body(len, '\0');
  size_t got = 0;
  while (got < len) {
    ssize_t r = ::recv(sock, body.data() + got, len - got, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) throw NetError(NetErrc::closed, "recv_with_fd: truncated message");
    got += static_cast<size_t>(r);
  }
  return body;
}

}  // namespace rfaas::net
