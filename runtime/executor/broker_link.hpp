// An executor daemon's side of the lease broker: signed registrations (sent again as
// heartbeats) and usage reports at lease end. Best effort and bounded: the data path never
// waits for the broker, and a broker that is down is retried at the next heartbeat.
#pragma once

#include <atomic>
#include <string>
#include <thread>

#include "protocol/broker_messages.hpp"
#include "protocol/lease_token.hpp"

namespace rfaas::executor {

class BrokerLink {
 public:
  BrokerLink(std::string broker_address, std::string node, std::string control_address, uint32_t cores,
             uint64_t memory_bytes, const protocol::ClusterSecret& secret);
  ~BrokerLink();

  // Registers now, then heartbeats from a thread of its own until destroyed.
  void start();
  bool registered() const { return registered_.load(); }
  void report_usage(uint64_t lease_id, const protocol::Usage& usage, const std::string& reason);
  // Stops the heartbeats and tells the broker to place nothing more here (shutting down).
  void drain();

 private:
  protocol::NodeRegistration registration(const std::string& purpose) const;  // signed for that message only
  bool send(const std::string& type, const nlohmann::json& body, nlohmann::json* reply);

  std::string broker_address_, node_, control_address_;
  uint32_t cores_;
  uint64_t memory_bytes_;
  const protocol::ClusterSecret& secret_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> registered_{false};
  std::atomic<uint32_t> interval_ms_{1000};
  std::thread thread_;
};

}  // namespace rfaas::executor
