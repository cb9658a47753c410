// The client's control session with the executor daemon for one lease: the allocate exchange,
// requests during the lease (renew, regions, usage), release, and the one place that reads how a
// lease ended. Cold path, TCP. The data path asks it only through poll_end(), which never waits
// longer than it is told (zero: not at all).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "net/tcp_socket.hpp"
#include "protocol/control.hpp"
#include "rfaas/client.hpp"

namespace rfaas::client {

// The daemon's error codes as the client's.
Errc from_control(protocol::ControlErrc c) noexcept;

class ControlChannel {
 public:
  ControlChannel() = default;
  ControlChannel(ControlChannel&&) = default;
  ControlChannel& operator=(ControlChannel&&) = default;

  // Connects to the daemon, asks for the lease and ships whichever of `library` and
  // `dependencies` (in the order of req.dependencies) the daemon asks for. Throws Error.
  protocol::Allocated allocate(const std::string& daemon_address, const protocol::AllocateRequest& req,
                               const std::vector<uint8_t>& library,
                               const std::vector<std::vector<uint8_t>>& dependencies,
                               std::chrono::milliseconds timeout, DeployTiming& timing);
  // A request during the lease: sends `message`, returns the reply of type `expected` within
  // `wait` (negative: the control timeout). Throws Error for an error reply, a lease that ended
  // (recorded: ended() says how), or a broken connection.
  protocol::ControlMessage request(const std::string& message, protocol::ControlType expected, const char* what,
                                   std::chrono::milliseconds wait = std::chrono::milliseconds(-1));
  // For the data path after it lost a worker's connection: reads what the daemon has sent, for
  // at most `wait`, and returns how the lease ended (Errc::ok: the daemon has not said yet).
  Errc poll_end(std::chrono::milliseconds wait = std::chrono::milliseconds(0)) noexcept;
  // Sends release and reads the daemon's lease_ended (bounded by the control timeout). The
  // usage the daemon reported, or the last one known. Never throws; closes the channel.
  Usage release() noexcept;

  Errc ended() const noexcept { return ended_; }  // ok while the daemon has not said
  const Usage& final_usage() const noexcept { return usage_; }
  std::string local_address() const { return stream_.local_address(); }
  explicit operator bool() const noexcept { return static_cast<bool>(stream_); }

 private:
  // One frame by `deadline`, read across calls without losing a partial one. Throws NetError.
  bool read_frame(net::Deadline deadline, protocol::ControlMessage* out);
  // Records a lease_ended notice: the one place that maps the daemon's reason to an Errc.
  Errc note_end(const protocol::LeaseEnded& end);

  net::TcpStream stream_;
  net::FrameReader reader_{protocol::kMaxControlFrame};
  std::chrono::milliseconds timeout_{10'000};
  Errc ended_ = Errc::ok;
  std::string ended_text_;
  Usage usage_;
};

}  // namespace rfaas::client
