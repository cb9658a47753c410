// rfaas-broker: the cluster's lease broker. Executor daemons register (and heartbeat) with an
// authenticated registration; clients ask for leases and get a signed token for a node; every
// grant and release is journaled (fsync'd) before it is answered, and a restarted broker
// rebuilds its leases from the journal. The data path never touches the broker.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>

#include "auth/munge_credential.hpp"
#include "journal.hpp"
#include "lease_book.hpp"
#include "replay_guard.hpp"
#include "net/session_limits.hpp"
#include "net/tcp_socket.hpp"
#include "protocol/broker_messages.hpp"
#include "protocol/control.hpp"

namespace rfaas::broker {

struct BrokerConfig {
  std::string listen = "127.0.0.1:0";
  std::string secret_file;
  std::string journal_path;
  uint32_t heartbeat_timeout_ms = 5'000;  // a node silent this long is lost, its leases revoked
  uint32_t control_timeout_ms = 10'000;
  // Policy, on by default (docs/operations.md): the longest lease (and renewal) granted; the
  // longest a lease lives, renewals included; the most cores in one lease and held at once by
  // one user's leases (0: no cap); the most memory per core a lease asks for (0: its node's
  // share, the node's memory over its cores).
  int64_t max_lease_ms = 24 * 3600 * 1000;
  int64_t max_lease_lifetime_ms = 7 * 24 * 3600 * 1000LL;
  uint32_t max_cores_per_lease = 32;
  uint32_t max_cores_per_user = 128;
  uint64_t max_memory_per_core_bytes = 0;
  // The journal is compacted into a snapshot of the lease book after this many records.
  uint64_t journal_compact_records = 10'000;
  // Users authenticate with MUNGE: this munged socket ("": RFAAS_MUNGE_SOCKET, else MUNGE's
  // default). Operators (besides root) may drain and resume nodes and manage every lease.
  std::string munge_socket;
  std::vector<uint32_t> operator_uids;
  net::SessionLimits sessions;  // connections served at once: all, and per peer address
  // Users' requests name the broker they are meant for (the address the client reached); the
  // address a session was reached at is always taken, these too (a broker behind NAT or a proxy).
  std::vector<std::string> audiences;
  static BrokerConfig from_json_file(const std::string& path);
};
// A user name or a numeric uid, as the config and --operator name operators.
uint32_t operator_uid(const std::string& user);

class LeaseBroker {
 public:
  explicit LeaseBroker(BrokerConfig config);
  std::string address() const { return net::HostPort{listener_.host(), listener_.port()}.str(); }
  const Journal::ReplayResult& replayed() const { return replayed_; }
  void serve();  // until shutdown()
  void shutdown() { shutdown_.store(true); }

  // One request, one reply (a frame payload), the journal synced before it. Public for tests.
  std::string handle(const std::vector<uint8_t>& frame);

 private:
  std::string dispatch(const std::vector<uint8_t>& frame);
  // One connection's requests, until it closes, times out or is pushed out (a stranger).
  void session(net::TcpStream& stream, net::SessionAdmission::Ticket ticket);
  void sweep();
  void sweep_locked();
  void log_journal_error(const JournalError& e);
  // Signed, fresh, for this message (its purpose), and not seen before (replay_).
  bool registration_valid(const protocol::NodeRegistration& r, const std::string& purpose, std::string* why) const;
  std::string release_locked(uint64_t lease_id, const std::string& reason);
  // A daemon's heartbeat: its node refreshed with what it serves, answered with the leases held
  // there, after at most its hold_ms (sooner when one of them ends here).
  std::string heartbeat(const protocol::ControlMessage& msg, int64_t now);
  // The other message types' handlers (dispatch() finds them in handlers()).
  using Handler = std::string (LeaseBroker::*)(const protocol::ControlMessage& msg, int64_t now);
  static const std::map<protocol::BrokerType, Handler>& handlers();
  std::string on_lease(const protocol::ControlMessage& msg, int64_t now);
  std::string on_release(const protocol::ControlMessage& msg, int64_t now);
  std::string on_lease_usage(const protocol::ControlMessage& msg, int64_t now);
  std::string on_drain(const protocol::ControlMessage& msg, int64_t now);
  std::string on_renew(const protocol::ControlMessage& msg, int64_t now);
  std::string on_admin(const protocol::ControlMessage& msg, int64_t now);
  std::string on_status(const protocol::ControlMessage& msg, int64_t now);
  // 1 .. max_lease_ms, or MessageError(policy).
  void check_duration(int64_t duration_ms) const;
  // Who sent a user's request (its MUNGE credential), or MessageError(not_authenticated).
  auth::Identity authenticate(const protocol::ControlMessage& msg) const;
  bool is_operator(const auth::Identity& who) const;
  protocol::LeaseToken token_for(const LeaseRecord& rec, int64_t expires_at_ms) const;
  // The owner or an operator, else MessageError(not_permitted).
  void check_owner(const auth::Identity& who, const LeaseRecord& lease) const;

  BrokerConfig config_;
  protocol::ClusterSecret secret_;
  mutable ReplayGuard replay_;  // each signed message of a daemon is taken once
  std::mutex mutex_;  // guards book_, usage_ and journal appends
  Journal::ReplayResult replayed_;  // before book_: book_'s initialiser fills it
  LeaseBook book_;
  Journal journal_;
  // A lease's usage: cores, memory and time as its daemon measured them, and what its executor
  // reported of itself (untrusted: the lease's code runs there).
  struct UsageRecord {
    uint32_t uid = 0;
    uint32_t cores = 0;
    uint64_t memory_bytes = 0;
    uint64_t served_ms = 0;
    protocol::Usage reported;
  };
  std::map<uint64_t, UsageRecord> usage_;
  struct NodeWait {  // a node's held heartbeat waits here for one of its leases to end
    uint64_t generation = 0;
    std::condition_variable changed;
  };
  std::map<std::string, NodeWait> node_waits_;  // guarded by mutex_
  net::TcpListener listener_;
  std::atomic<bool> shutdown_{false};
  net::SessionCount sessions_;
  net::SessionAdmission admission_{config_.sessions};
  std::mutex journal_log_mutex_;
  std::string last_journal_error_;
};

}  // namespace rfaas::broker
