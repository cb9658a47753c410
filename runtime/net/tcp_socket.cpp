#include "net/tcp_socket.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace rfaas::net {

const char* to_string(NetErrc c) {
  switch (c) {
    case NetErrc::timeout: return "timeout";
    case NetErrc::closed: return "connection closed";
    case NetErrc::refused: return "connection refused";
    case NetErrc::invalid_address: return "invalid address";
    case NetErrc::too_large: return "message too large";
    case NetErrc::io: return "i/o error";
  }
  return "unknown";
}

namespace {

[[noreturn]] void fail(NetErrc code, const std::string& what) {
  throw NetError(code, what + ": " + to_string(code));
}

[[noreturn]] void fail_errno(const std::string& what, int err) {
  NetErrc code = NetErrc::io;
  if (err == ECONNREFUSED) code = NetErrc::refused;
  if (err == ECONNRESET || err == EPIPE || err == ENOTCONN) code = NetErrc::closed;
  throw NetError(code, what + ": " + std::strerror(err));
}

int ms_left(Deadline deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left < 0) return 0;
  return left > 1'000'000'000 ? 1'000'000'000 : static_cast<int>(left);
}

// Waits until fd is ready for `events`; throws timeout when the deadline passes.
void wait_ready(int fd, short events, Deadline deadline, const char* what) {
  for (;;) {
    pollfd p{fd, events, 0};
    int r = ::poll(&p, 1, ms_left(deadline));
    if (r > 0) return;
    if (r == 0) fail(NetErrc::timeout, what);
    if (errno != EINTR) fail_errno(what, errno);
  }
}

void set_nonblocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL, 0);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) fail_errno("fcntl", errno);
}

addrinfo* resolve(const std::string& host, uint16_t port, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* res = nullptr;
  std::string service = std::to_string(port);
  int rc = ::getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &res);
  if (rc != 0) fail(NetErrc::invalid_address, "resolve " + host + ": " + gai_strerror(rc));
  return res;
}

}  // namespace

HostPort HostPort::parse(const std::string& text) {
  HostPort hp;
  std::string port;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      fail(NetErrc::invalid_address, "address '" + text + "'");
    hp.host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string::npos) fail(NetErrc::invalid_address, "address '" + text + "' (want host:port)");
    hp.host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  if (hp.host.empty() || port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoul(port) > 65535)
    fail(NetErrc::invalid_address, "address '" + text + "' (want host:port)");
  hp.port = static_cast<uint16_t>(std::stoul(port));
  return hp;
}

std::string HostPort::str() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    reset();
    fd_ = o.release();
  }
  return *this;
}

void Fd::reset() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

TcpStream TcpStream::connect(const HostPort& to, Deadline deadline) {
  addrinfo* res = resolve(to.host, to.port, false);
  int last_err = ECONNREFUSED;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    Fd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
    if (!fd) { last_err = errno; continue; }
    set_nonblocking(fd.get());
    int rc = ::connect(fd.get(), ai->ai_addr, ai->ai_addrlen);
    if (rc < 0 && errno != EINPROGRESS) { last_err = errno; continue; }
    if (rc < 0) {
      try {
        wait_ready(fd.get(), POLLOUT, deadline, ("connect to " + to.str()).c_str());
      } catch (...) {
        ::freeaddrinfo(res);
        throw;
      }
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) { last_err = err; continue; }
    }
    int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ::freeaddrinfo(res);
    return TcpStream(std::move(fd));
  }
  ::freeaddrinfo(res);
  fail_errno("connect to " + to.str(), last_err);
}

void TcpStream::send_all(const void* data, size_t size, Deadline deadline) {
  auto* p = static_cast<const uint8_t*>(data);
  while (size > 0) {
    ssize_t n = ::send(fd_.get(), p, size, MSG_NOSIGNAL);
    if (n > 0) {
      p += n;
      size -= static_cast<size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      wait_ready(fd_.get(), POLLOUT, deadline, "send");
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      fail_errno("send", errno);
    }
  }
}

void TcpStream::recv_all(void* data, size_t size, Deadline deadline) {
  auto* p = static_cast<uint8_t*>(data);
  while (size > 0) {
    ssize_t n = ::recv(fd_.get(), p, size, 0);
    if (n > 0) {
      p += n;
      size -= static_cast<size_t>(n);
    } else if (n == 0) {
      fail(NetErrc::closed, "recv");
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      wait_ready(fd_.get(), POLLIN, deadline, "recv");
    } else if (errno != EINTR) {
      fail_errno("recv", errno);
    }
  }
}

void TcpStream::send_frame(const void* data, size_t size, Deadline deadline) {
  if (size > UINT32_MAX) fail(NetErrc::too_large, "send_frame");
  uint8_t header[4] = {static_cast<uint8_t>(size), static_cast<uint8_t>(size >> 8),
                       static_cast<uint8_t>(size >> 16), static_cast<uint8_t>(size >> 24)};
  send_all(header, sizeof header, deadline);
  send_all(data, size, deadline);
}

std::vector<uint8_t> TcpStream::recv_frame(size_t max_size, Deadline deadline) {
  uint8_t header[4];
  recv_all(header, sizeof header, deadline);
  size_t size = header[0] | (header[1] << 8) | (header[2] << 16) | (static_cast<size_t>(header[3]) << 24);
  if (size > max_size)
    fail(NetErrc::too_large, "recv_frame of " + std::to_string(size) + " bytes (limit " + std::to_string(max_size) + ")");
  // Memory follows the bytes that arrive, not the size announced: the capacity is reserved
  // (address space, no pages) and pages are touched a chunk at a time as bytes come, so a peer
  // that announces the limit and sends little costs a chunk, and an honest frame is not copied.
  constexpr size_t kChunk = size_t{1} << 20;
  std::vector<uint8_t> out;
  out.reserve(size);
  while (out.size() < size) {
    const size_t at = out.size(), n = std::min(kChunk, size - at);
    out.resize(at + n);
    recv_all(out.data() + at, n, deadline);
  }
  return out;
}

size_t TcpStream::recv_available(void* data, size_t size) {
  for (;;) {
    ssize_t n = ::recv(fd_.get(), data, size, MSG_DONTWAIT);
    if (n > 0) return static_cast<size_t>(n);
    if (n == 0) fail(NetErrc::closed, "recv");
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    if (errno != EINTR) fail_errno("recv", errno);
  }
}

bool FrameReader::read_available(TcpStream& stream) {
  while (header_got_ < sizeof header_) {
    size_t n = stream.recv_available(header_ + header_got_, sizeof header_ - header_got_);
    if (n == 0) return false;
    header_got_ += n;
    if (header_got_ == sizeof header_) {
      size_ = header_[0] | (header_[1] << 8) | (header_[2] << 16) | (static_cast<size_t>(header_[3]) << 24);
      if (size_ > max_size_)
        fail(NetErrc::too_large, "frame of " + std::to_string(size_) + " bytes (limit " + std::to_string(max_size_) + ")");
    }
  }
  uint8_t chunk[4096];
  while (body_.size() < size_) {
    size_t n = stream.recv_available(chunk, std::min(sizeof chunk, size_ - body_.size()));
    if (n == 0) return false;
    body_.insert(body_.end(), chunk, chunk + n);
  }
  return true;
}

void TcpStream::keep_alive(std::chrono::seconds idle, std::chrono::seconds interval, int probes) {
  const int on = 1, idle_s = static_cast<int>(idle.count()), interval_s = static_cast<int>(interval.count());
  const unsigned user_timeout_ms = static_cast<unsigned>((idle + interval * probes).count() * 1000);
  if (!fd_ || ::setsockopt(fd_.get(), SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on) != 0 ||
      ::setsockopt(fd_.get(), IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s) != 0 ||
      ::setsockopt(fd_.get(), IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof interval_s) != 0 ||
      ::setsockopt(fd_.get(), IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes) != 0 ||
      ::setsockopt(fd_.get(), IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof user_timeout_ms) != 0)
    throw NetError(NetErrc::io, std::string("keepalive: ") + std::strerror(errno));
}

bool TcpStream::peer_closed() const noexcept {
  if (!fd_) return true;
  uint8_t byte;
  ssize_t n = ::recv(fd_.get(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0) return false;
  if (n == 0) return true;
  return !(errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
}

std::string TcpStream::peer_host() const {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (!fd_ || ::getpeername(fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "";
  char host[NI_MAXHOST];
  if (::getnameinfo(reinterpret_cast<sockaddr*>(&ss), len, host, sizeof host, nullptr, 0, NI_NUMERICHOST) != 0) return "";
  return host;
}

namespace {
// The same text at both ends of one connection: an IPv4 peer of a dual-stack listener
// (::ffff:a.b.c.d at the server) as plain IPv4, and no scope id (each end names its own link).
std::string numeric_address(sockaddr_storage ss, socklen_t len) {
  if (ss.ss_family == AF_INET6) {
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) {
      sockaddr_in v4{};
      v4.sin_family = AF_INET;
      v4.sin_port = v6->sin6_port;
      std::memcpy(&v4.sin_addr, v6->sin6_addr.s6_addr + 12, 4);
      std::memcpy(&ss, &v4, sizeof v4);
      len = sizeof v4;
    } else {
      v6->sin6_scope_id = 0;
    }
  }
  char host[NI_MAXHOST], port[NI_MAXSERV];
  if (::getnameinfo(reinterpret_cast<const sockaddr*>(&ss), len, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return "";
  return HostPort{host, static_cast<uint16_t>(std::atoi(port))}.str();
}
}  // namespace

std::string TcpStream::peer_address() const {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (!fd_ || ::getpeername(fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "";
  return numeric_address(ss, len);
}

std::string TcpStream::local_address() const {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (!fd_ || ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "";
  return numeric_address(ss, len);
}

TcpListener TcpListener::bind(const std::string& host, uint16_t port, int backlog) {
  addrinfo* res = resolve(host, port, true);
  int last_err = EADDRNOTAVAIL;
  for (addrinfo* ai = res; ai; ai = ai->ai_next) {
    Fd fd(::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol));
    if (!fd) { last_err = errno; continue; }
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd.get(), ai->ai_addr, ai->ai_addrlen) < 0 || ::listen(fd.get(), backlog) < 0) {
      last_err = errno;
      continue;
    }
    set_nonblocking(fd.get());
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
    TcpListener l;
    l.port_ = ntohs(ss.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                            : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
    l.host_ = host;
    l.fd_ = std::move(fd);
    ::freeaddrinfo(res);
    return l;
  }
  ::freeaddrinfo(res);
  fail_errno("bind " + host + ":" + std::to_string(port), last_err);
}

TcpStream TcpListener::try_accept() {
  for (;;) {
    int fd = ::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0) {
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return TcpStream(Fd(fd));
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) return TcpStream();
    if (errno != EINTR && errno != ECONNABORTED) fail_errno("accept", errno);
  }
}

TcpStream TcpListener::accept(Deadline deadline) {
  for (;;) {
    if (auto s = try_accept()) return s;
    wait_ready(fd_.get(), POLLIN, deadline, "accept");
  }
}

}  // namespace rfaas::net
