// Admission of control connections for a daemon that serves each on a thread of its own.
//
// A connection is a stranger until it proves who it is (a MUNGE credential, a node's signed
// registration, a lease token): strangers are capped per peer address and in all, and a
// stranger past a cap pushes out the oldest *silent* stranger of its peer (or of all): one that
// has sent nothing yet. A flood of idle connections from one address (every user of a node
// shares it) thus never pushes out a newcomer that has spoken, however fast the flood churns and
// however long the newcomer's proof takes; only when every stranger has spoken does the oldest
// go. A daemon also gives a stranger only a short while for its first message. Authenticated sessions no longer count against their address, only
// against their identity's own cap: a user who authenticates a flood costs only herself.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>

namespace rfaas::net {

struct SessionLimits {
  uint32_t max_sessions = 2048;               // all peers
  uint32_t max_sessions_per_peer = 256;       // strangers from one address
  uint32_t max_sessions_per_identity = 256;   // authenticated as one user or node
  uint32_t first_frame_timeout_ms = 2000;     // a stranger's first message, at the latest
};

class SessionAdmission {
 public:
  using Ticket = uint64_t;
  explicit SessionAdmission(SessionLimits limits) : limits_(limits) {}

  // A ticket (counted as a stranger from `peer`) when the session on descriptor `fd` may start,
  // having pushed out the oldest stranger if a cap is reached (its descriptor shut down: its
  // read fails at once); 0 when refused (every session authenticated). release(ticket) before
  // the descriptor is closed. A refusal or push-out fills `why` at most once a second (with a
  // count of those since), so that a flood does not flood the log; otherwise `why` stays empty.
  Ticket admit(const std::string& peer, int fd, std::string* why);
  // The session's first message arrived (its thread read it): it has spoken.
  void heard(Ticket ticket);
  // The session proved it is `identity`: no longer a stranger. False when that identity is at
  // its cap (the caller answers, then ends the session).
  bool authenticated(Ticket ticket, const std::string& identity);
  void release(Ticket ticket);
  uint32_t sessions() const;
  const SessionLimits& limits() const { return limits_; }

 private:
  struct Session {
    std::string peer, identity;  // identity empty: a stranger
    int fd = -1;
    bool heard = false;  // its thread has read a message
  };
  // The oldest silent stranger (of `peer`, or of all), else the oldest stranger.
  bool push_out_locked(const std::string* peer);
  void tell_locked(const std::string& what, std::string* why);

  SessionLimits limits_;
  mutable std::mutex mutex_;
  Ticket next_ = 1;
  std::map<Ticket, Session> sessions_;  // in admission order: the oldest first
  std::map<std::string, uint32_t> strangers_per_peer_, per_identity_;
  std::chrono::steady_clock::time_point last_told_{};
  uint64_t untold_ = 0;  // refusals and push-outs since the last one told
};

class TcpListener;
class TcpStream;

// How many sessions run, and a bounded wait for none (a daemon's shutdown).
class SessionCount {
 public:
  void started();
  void ended();
  // True when none is left within `bound`.
  bool wait_none(std::chrono::milliseconds bound);

 private:
  std::mutex mutex_;
  std::condition_variable none_;
  int running_ = 0;
};

// The accept loop of a daemon that serves each connection on a thread of its own (the broker
// and the executor daemon): until `stopping()` (seen within 200 ms), each connection that
// `admission` admits runs `session` on a detached thread, counted in `count` until its ticket
// is released. A connection no thread can be had for is closed; accept failures (EMFILE) pause
// 100 ms rather than spin. `log` gets one line per problem.
void serve_sessions(TcpListener& listener, SessionAdmission& admission, SessionCount& count,
                    const std::function<bool()>& stopping,
                    const std::function<void(TcpStream&, SessionAdmission::Ticket)>& session,
                    const std::function<void(const std::string&)>& log);

}  // namespace rfaas::net
