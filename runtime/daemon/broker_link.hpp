// An executor daemon's side of the lease broker: signed registrations (sent again as
// heartbeats) and usage reports at lease end. Best effort and bounded: the data path never
// waits for the broker, and a broker that is down is retried at the next heartbeat.
//
// Heartbeats travel on one persistent connection, authenticated by each signed registration
// (a flood of unauthenticated connections from the node's address cannot crowd them out), and
// carry the leases this daemon serves. The broker holds each heartbeat's answer until one of the
// node's leases ends at the broker or the interval passes (a long poll, so a release there
// reaches the node at once), and answers with the leases it holds here: those it no longer
// holds are ended (LeaseTable::end_unheld), and the next heartbeat is the acknowledgement. A
// lease admitted here is told to the broker at once on a connection of its own (report_now()).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "daemon/lease_table.hpp"
#include "net/tcp_socket.hpp"
#include "protocol/broker_messages.hpp"
#include "protocol/lease_token.hpp"

namespace rfaas::daemon {

class BrokerLink {
 public:
  BrokerLink(std::string broker_address, std::string node, std::string control_address, uint32_t cores,
             uint64_t memory_bytes, const protocol::ClusterSecret& secret, LeaseTable& leases);
  ~BrokerLink();

  // Registers now, then heartbeats from a thread of its own until destroyed.
  void start();
  bool registered() const { return registered_.load(); }
  // What the daemon measured of a lease (`served`: cores, memory, how long) and what its executor
  // reported of itself (`reported`), at its end.
  void report_usage(uint64_t lease_id, const protocol::Usage& reported, const nlohmann::json& served,
                    protocol::LeaseEndReason reason);
  // A lease was admitted: the broker hears it now, not at the next heartbeat (and a lease it does
  // not hold is ended at once).
  void report_now();
  // Stops the heartbeats and tells the broker to place nothing more here (shutting down).
  void drain();

 private:
  protocol::NodeRegistration registration(const std::string& purpose) const;  // signed for that message only
  bool send(protocol::BrokerType type, const nlohmann::json& body, nlohmann::json* reply);
  // One heartbeat on `stream` (connected first if it is not): the broker may hold it up to
  // hold_ms. Ends the leases the answer does not hold. False if the broker could not be asked
  // or refused (the caller closes the stream).
  bool heartbeat(net::TcpStream& stream, uint32_t hold_ms);
  void stop_threads();

  std::string broker_address_, node_, control_address_;
  uint32_t cores_;
  uint64_t memory_bytes_;
  const protocol::ClusterSecret& secret_;
  // Every message this start of the daemon signs has its own sequence number: the broker takes
  // each once. The incarnation is this start's (its clock in microseconds).
  const uint64_t incarnation_ = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  mutable std::atomic<uint64_t> sequence_{0};
  LeaseTable& leases_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> registered_{false};
  std::atomic<uint32_t> interval_ms_{1000};
  std::thread thread_, prompt_thread_;
  std::mutex prompt_mutex_;
  std::condition_variable prompt_cv_;
  bool prompt_ = false;
  // The held heartbeat's socket, shut down by stop_threads() so a shutdown does not wait out the
  // broker's hold (guarded: the descriptor is never shut after it is closed and reused).
  std::mutex polling_mutex_;
  int polling_fd_ = -1;
};

}  // namespace rfaas::daemon
