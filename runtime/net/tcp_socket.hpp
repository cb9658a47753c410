// TCP sockets with bounded waits, for cold-path channels: the fabric bootstrap handshake and
// (later) the control protocol. Every blocking call takes a deadline; nothing waits forever.
#pragma once

#include "rfaas/coded_error.hpp"
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace rfaas::net {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;

inline Deadline deadline_in(std::chrono::milliseconds ms) { return Clock::now() + ms; }

enum class NetErrc { timeout, closed, refused, invalid_address, too_large, io };
const char* to_string(NetErrc);

using NetError = CodedError<NetErrc>;

struct HostPort {
  std::string host;
  uint16_t port = 0;
  // Accepts "host:port" and "[v6]:port"; throws NetError(invalid_address).
  static HostPort parse(const std::string& text);
  std::string str() const;
};

// Owns one file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const noexcept { return fd_; }
  int release() noexcept { int f = fd_; fd_ = -1; return f; }
  void reset() noexcept;
  explicit operator bool() const noexcept { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// What the long-lived connections between nodes use (a daemon's clients, a client's control
// connection, the fabric's bootstrap connections): a silent peer is lost after about 5 s.
inline constexpr std::chrono::seconds kKeepAliveIdle{2}, kKeepAliveInterval{1};
inline constexpr int kKeepAliveProbes = 3;

class TcpStream {
 public:
  TcpStream() = default;
  explicit TcpStream(Fd fd) : fd_(std::move(fd)) {}
  static TcpStream connect(const HostPort& to, Deadline deadline);

  void send_all(const void* data, size_t size, Deadline deadline);
  void recv_all(void* data, size_t size, Deadline deadline);  // throws closed on EOF
  // Frames are a 4-byte little-endian length followed by the bytes.
  void send_frame(const void* data, size_t size, Deadline deadline);
  std::vector<uint8_t> recv_frame(size_t max_size, Deadline deadline);

  // Reads what has arrived, up to `size` bytes, without waiting: how many (0: nothing yet).
  // Throws NetError(closed) on EOF.
  size_t recv_available(void* data, size_t size);
  // A peer that goes silent (its host powered off, a partition: no FIN ever comes) breaks the
  // connection within about idle + interval * probes: TCP keepalive probes, and the same bound
  // on data left unacknowledged (TCP_USER_TIMEOUT). Then peer_closed() is true, poll() reports
  // POLLERR and reads fail. Throws NetError(io).
  void keep_alive(std::chrono::seconds idle, std::chrono::seconds interval, int probes);
  // Non-blocking check: true when the peer has closed the connection or it is broken.
  // Pending unread data does not count as closed.
  bool peer_closed() const noexcept;
  // The peer's numeric address without the port ("127.0.0.1", "::1"); "" when unknown.
  std::string peer_host() const;
  // Both ends as numeric "host:port" ("[v6]:port"); "" when unknown. What a client reached, as
  // the client and the server each see it (no NAT between them: the same text).
  std::string peer_address() const;
  std::string local_address() const;
  int fd() const noexcept { return fd_.get(); }
  explicit operator bool() const noexcept { return static_cast<bool>(fd_); }

 private:
  Fd fd_;
};

// One frame read across calls that never wait: one thread judges many peers' first frames
// side by side, and a peer that sends nothing holds up only itself. What it keeps follows the
// bytes that arrived.
class FrameReader {
 public:
  explicit FrameReader(size_t max_size) : max_size_(max_size) {}
  // Reads what `stream` has now; true once the whole frame is in frame(). Throws NetError
  // (closed, too_large, io).
  bool read_available(TcpStream& stream);
  const std::vector<uint8_t>& frame() const { return body_; }

 private:
  size_t max_size_;
  uint8_t header_[4] = {};
  size_t header_got_ = 0;
  size_t size_ = 0;
  std::vector<uint8_t> body_;
};

class TcpListener {
 public:
  // Port 0 picks a free port; port() tells which.
  // The backlog is capped by the kernel (net.core.somaxconn): a burst of connections from one peer
  // must not fill the queue that everyone's connections wait in before they are admitted.
  static TcpListener bind(const std::string& host, uint16_t port, int backlog = 4096);
  TcpStream accept(Deadline deadline);
  // A connection already waiting, or an empty stream: never waits.
  TcpStream try_accept();
  uint16_t port() const noexcept { return port_; }
  const std::string& host() const noexcept { return host_; }
  int fd() const noexcept { return fd_.get(); }

 private:
  Fd fd_;
  std::string host_;
  uint16_t port_ = 0;
};

}  // namespace rfaas::net
