// One control session of the daemon: a lease from the client's allocate to its end, as a state
// machine. negotiating (token and request checked, cores reserved, library received) ->
// deploying (executor assigned, confined, ready) -> serving (watched) -> ending (executor and
// cgroup gone, cores freed, broker and client told) -> done; a refusal goes from negotiating or
// deploying to done. While serving, each event (a tick, a client frame, the executor's exit, an
// executor report, a pending answer's deadline) has one handler. The watch loop never waits for
// the executor: a region or usage request is a pending answer, polled beside everything else, so
// expiry, revocation, the executor's exit and shutdown are seen throughout.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "daemon/executor_daemon.hpp"
#include "daemon/executor_process.hpp"
#include "daemon/lease_cgroup.hpp"
#include "net/tcp_socket.hpp"
#include "protocol/control.hpp"
#include "protocol/executor_messages.hpp"

namespace rfaas::daemon {

class LeaseSession {
 public:
  enum class State { negotiating, deploying, serving, ending, done };

  LeaseSession(ExecutorDaemon& daemon, net::TcpStream& stream, net::SessionAdmission::Ticket ticket);
  // The whole session; never throws. The cores are free when it returns.
  void run() noexcept;
  State state() const { return state_; }

 private:
  // A client request the executor answers (a region, the usage so far), waited for in the loop.
  struct Pending {
    protocol::ControlType kind;
    uint64_t seq = 0;
    uint64_t bytes = 0;  // a region's, given back if it is not made
    net::Deadline deadline;
  };

  void negotiate();  // -> deploying; throws MessageError (a refusal)
  void deploy();     // -> serving; throws MessageError
  void serve();      // -> ending
  void end();        // -> done
  void refuse(const protocol::MessageError& e);  // negotiating / deploying -> done
  void stop_executor() noexcept;  // the lease's cgroup, then its executor, gone (before its cores go)

  // serving's events; each may move the session to ending.
  void on_tick();
  void on_executor_exit();
  void on_client_frame();
  void on_reports();
  void on_pending_deadline();
  void on_create_region(const protocol::ControlMessage& m);
  void on_usage();
  void on_renew(const protocol::ControlMessage& m);
  void finish(protocol::LeaseEndReason reason, std::string detail);

  void send(const std::string& text);
  void answer_error(protocol::ControlErrc code, const std::string& what);
  void answer_pending_error(protocol::ControlErrc code, const std::string& what);

  ExecutorDaemon& d_;
  net::TcpStream& stream_;
  net::SessionAdmission::Ticket ticket_;
  const std::chrono::milliseconds timeout_;
  State state_ = State::negotiating;

  uint64_t lease_id_ = 0;
  bool reserved_ = false;
  int64_t served_until_ms_ = 0;   // once the lease is served: its token's latest expiry
  int64_t genuine_until_ms_ = 0;  // the token verified for this node: its expiry
  protocol::AllocateRequest req_;
  std::vector<int> cores_;
  std::string cores_csv_;
  uint64_t slot_memory_ = 0;
  bool cached_ = true;
  net::Fd library_;
  std::vector<std::pair<std::string, net::Fd>> dependencies_;

  protocol::LeaseAssignment assignment_;
  std::unique_ptr<ExecutorProcess> executor_;
  // Declared after the executor: destroyed first, killing whatever of the lease is left.
  std::unique_ptr<LeaseCgroup> cgroup_;
  std::string executor_address_;

  std::chrono::steady_clock::time_point served_since_;  // what the broker hears was served
  std::chrono::steady_clock::time_point replenish_at_;
  bool replenished_ = false;
  int64_t expires_at_ms_ = 0;  // moved by a renewal
  uint64_t memory_left_ = 0;   // for resident regions
  uint64_t executor_requests_ = 0;  // regions and usage asked of the executor, by sequence number
  std::optional<Pending> pending_;
  std::optional<protocol::FinalUsageReport> final_usage_;  // the executor's last report, once read
  bool usage_read_ = false;
  protocol::LeaseEnded end_;
};

const char* to_string(LeaseSession::State);

}  // namespace rfaas::daemon
