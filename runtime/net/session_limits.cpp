#include "net/session_limits.hpp"

#include <sys/ioctl.h>
#include <sys/socket.h>

#include <system_error>
#include <thread>

#include "net/tcp_socket.hpp"

namespace rfaas::net {

void SessionAdmission::tell_locked(const std::string& what, std::string* why) {
  auto now = std::chrono::steady_clock::now();
  if (now - last_told_ >= std::chrono::seconds(1)) {
    if (why) *why = what + (untold_ ? " (and " + std::to_string(untold_) + " more since, untold)" : "");
    last_told_ = now;
    untold_ = 0;
  } else {
    ++untold_;
  }
}

namespace {
// Bytes wait on the descriptor that its thread has not read yet: the peer has spoken.
bool bytes_waiting(int fd) {
  int n = 0;
  return ::ioctl(fd, FIONREAD, &n) == 0 && n > 0;
}
}  // namespace

bool SessionAdmission::push_out_locked(const std::string* peer) {
  // O(sessions) only when a cap is reached: a flood pays for itself. Silent strangers first:
  // the oldest one that has sent nothing (neither read by its thread nor waiting to be).
  auto victim = sessions_.end(), oldest = sessions_.end();
  for (auto it = sessions_.begin(); it != sessions_.end(); ++it) {
    const Session& s = it->second;
    if (!s.identity.empty() || (peer && s.peer != *peer)) continue;
    if (oldest == sessions_.end()) oldest = it;
    if (!s.heard && !bytes_waiting(s.fd)) {
      victim = it;
      break;
    }
  }
  if (victim == sessions_.end()) victim = oldest;
  if (victim == sessions_.end()) return false;
  const Session& s = victim->second;
  ::shutdown(s.fd, SHUT_RDWR);  // its thread's read fails now; it releases its ticket
  if (auto p = strangers_per_peer_.find(s.peer); p != strangers_per_peer_.end() && --p->second == 0)
    strangers_per_peer_.erase(p);
  sessions_.erase(victim);
  return true;
}

SessionAdmission::Ticket SessionAdmission::admit(const std::string& peer, int fd, std::string* why) {
  std::lock_guard lock(mutex_);
  if (auto it = strangers_per_peer_.find(peer); it != strangers_per_peer_.end() && it->second >= limits_.max_sessions_per_peer) {
    push_out_locked(&peer);
    tell_locked(peer + " is at the cap of " + std::to_string(limits_.max_sessions_per_peer) +
                    " unauthenticated connections: its oldest pushed out",
                why);
  }
  if (sessions_.size() >= limits_.max_sessions) {
    if (!push_out_locked(nullptr)) {
      tell_locked("at the cap of " + std::to_string(limits_.max_sessions) + " connections, all authenticated", why);
      return 0;
    }
    tell_locked("at the cap of " + std::to_string(limits_.max_sessions) + " connections: the oldest unauthenticated pushed out",
                why);
  }
  Ticket t = next_++;
  sessions_[t] = {peer, "", fd};
  ++strangers_per_peer_[peer];
  return t;
}

void SessionAdmission::heard(Ticket ticket) {
  std::lock_guard lock(mutex_);
  if (auto it = sessions_.find(ticket); it != sessions_.end()) it->second.heard = true;
}

bool SessionAdmission::authenticated(Ticket ticket, const std::string& identity) {
  std::lock_guard lock(mutex_);
  auto it = sessions_.find(ticket);
  if (it == sessions_.end()) return false;  // pushed out meanwhile
  Session& s = it->second;
  if (s.identity == identity) return true;
  if (per_identity_[identity] >= limits_.max_sessions_per_identity) return false;
  if (s.identity.empty()) {
    if (auto p = strangers_per_peer_.find(s.peer); p != strangers_per_peer_.end() && --p->second == 0)
      strangers_per_peer_.erase(p);
  } else if (auto p = per_identity_.find(s.identity); p != per_identity_.end() && --p->second == 0) {
    per_identity_.erase(p);
  }
  s.identity = identity;
  ++per_identity_[identity];
  return true;
}

void SessionAdmission::release(Ticket ticket) {
  std::lock_guard lock(mutex_);
  auto it = sessions_.find(ticket);
  if (it == sessions_.end()) return;  // pushed out: uncounted already
  const Session& s = it->second;
  auto& counts = s.identity.empty() ? strangers_per_peer_ : per_identity_;
  const std::string& key = s.identity.empty() ? s.peer : s.identity;
  if (auto p = counts.find(key); p != counts.end() && --p->second == 0) counts.erase(p);
  sessions_.erase(it);
}

uint32_t SessionAdmission::sessions() const {
  std::lock_guard lock(mutex_);
  return static_cast<uint32_t>(sessions_.size());
}

void SessionCount::started() {
  std::lock_guard lock(mutex_);
  ++running_;
}

void SessionCount::ended() {
  std::lock_guard lock(mutex_);
  if (--running_ == 0) none_.notify_all();
}

bool SessionCount::wait_none(std::chrono::milliseconds bound) {
  std::unique_lock lock(mutex_);
  return none_.wait_for(lock, bound, [this] { return running_ == 0; });
}

void serve_sessions(TcpListener& listener, SessionAdmission& admission, SessionCount& count,
                    const std::function<bool()>& stopping,
                    const std::function<void(TcpStream&, SessionAdmission::Ticket)>& session,
                    const std::function<void(const std::string&)>& log) {
  using namespace std::chrono_literals;
  while (!stopping()) {
    TcpStream stream;
    try {
      stream = listener.accept(deadline_in(200ms));
    } catch (const NetError& e) {
      if (e.code() != NetErrc::timeout) {
        // Out of descriptors (EMFILE) and the like: pause instead of spinning on the listener.
        log(std::string("accept: ") + e.what());
        std::this_thread::sleep_for(100ms);
      }
      continue;
    }
    std::string why;
    auto ticket = admission.admit(stream.peer_host(), stream.fd(), &why);
    if (!why.empty()) log("connections: " + why);
    if (!ticket) continue;  // closed as it goes out of scope
    count.started();
    auto ended = [&admission, &count, ticket] {
      admission.release(ticket);
      count.ended();
    };
    try {
      // The stream outlives release(): a pushed-out descriptor is never one reused meanwhile.
      // `session` copied: the thread may outlive this call.
      std::thread([session, s = std::move(stream), ticket, ended]() mutable {
        session(s, ticket);
        ended();
      }).detach();
    } catch (const std::system_error& e) {  // no thread to be had: this connection only
      log(std::string("refused a connection: no thread: ") + e.what());
      ended();
    }
  }
}

}  // namespace rfaas::net
