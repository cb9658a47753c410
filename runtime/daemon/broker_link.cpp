#include "daemon/broker_link.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>

#include <sys/socket.h>

namespace rfaas::daemon {

using namespace std::chrono_literals;

BrokerLink::BrokerLink(std::string broker_address, std::string node, std::string control_address, uint32_t cores,
                       uint64_t memory_bytes, const protocol::ClusterSecret& secret, LeaseTable& leases)
    : broker_address_(std::move(broker_address)),
      node_(std::move(node)),
      control_address_(std::move(control_address)),
      cores_(cores),
      memory_bytes_(memory_bytes),
      secret_(secret),
      leases_(leases) {}

BrokerLink::~BrokerLink() { stop_threads(); }

void BrokerLink::stop_threads() {
  stop_.store(true);
  {
    std::lock_guard lock(prompt_mutex_);
    prompt_cv_.notify_all();
  }
  {
    std::lock_guard lock(polling_mutex_);
    if (polling_fd_ >= 0) ::shutdown(polling_fd_, SHUT_RDWR);
  }
  if (thread_.joinable()) thread_.join();
  if (prompt_thread_.joinable()) prompt_thread_.join();
}

protocol::NodeRegistration BrokerLink::registration(const std::string& purpose) const {
  protocol::NodeRegistration r{node_, control_address_, cores_, memory_bytes_, protocol::unix_now_ms(), "", purpose, {},
                               incarnation_, sequence_.fetch_add(1) + 1};
  r.sign(secret_);
  return r;
}

bool BrokerLink::send(protocol::BrokerType type, const nlohmann::json& body, nlohmann::json* reply) {
  try {
    auto s = net::TcpStream::connect(net::HostPort::parse(broker_address_), net::deadline_in(2s));
    std::string msg = protocol::make_message(type, body);
    s.send_frame(msg.data(), msg.size(), net::deadline_in(2s));
    auto r = protocol::ControlMessage::parse(s.recv_frame(protocol::kMaxControlFrame, net::deadline_in(2s)));
    if (r.is(protocol::BrokerType::error)) {
      std::fprintf(stderr, "rfaas-executord: broker refused '%s': %s\n", protocol::to_string(type),
                   r.body.value("message", std::string()).c_str());
      return false;
    }
    if (reply) *reply = r.body;
    return true;
  } catch (const std::exception&) {
    return false;  // the broker is down or unreachable: tried again later
  }
}

bool BrokerLink::heartbeat(net::TcpStream& stream, uint32_t hold_ms) {
  try {
    if (!stream) stream = net::TcpStream::connect(net::HostPort::parse(broker_address_), net::deadline_in(2s));
    // Taken before the registration is signed: leases admitted later may be newer than the answer.
    const uint64_t admitted_by = leases_.admissions();
    // The timestamp is taken before the list (braces evaluate left to right), and a lease is
    // freed before its end report is signed: a report signed before this heartbeat names a
    // lease that is not in its list. The broker relies on that order.
    protocol::NodeRegistration r{node_, control_address_, cores_, memory_bytes_, protocol::unix_now_ms(), "", "register",
                                 leases_.serving(), incarnation_, sequence_.fetch_add(1) + 1};
    r.sign(secret_);
    std::string msg = protocol::make_message(protocol::BrokerType::register_node, {{"registration", r}, {"hold_ms", hold_ms}});
    stream.send_frame(msg.data(), msg.size(), net::deadline_in(2s));
    auto reply = protocol::ControlMessage::parse(
        stream.recv_frame(protocol::kMaxControlFrame, net::deadline_in(std::chrono::milliseconds(hold_ms) + 5s)));
    if (reply.is(protocol::BrokerType::error)) {
      std::fprintf(stderr, "rfaas-executord: broker refused a heartbeat: %s\n",
                   reply.body.value("message", std::string()).c_str());
      return false;
    }
    std::vector<uint64_t> held;
    if (reply.body.contains("held") && reply.body["held"].is_array())
      for (const auto& id : reply.body["held"])
        if (id.is_number_unsigned()) held.push_back(id.get<uint64_t>());
    for (uint64_t id : leases_.end_unheld(held, admitted_by))
      std::fprintf(stderr, "rfaas-executord: lease %llu is not held at the broker (released, expired or revoked there): ending it\n",
                   static_cast<unsigned long long>(id));
    interval_ms_.store(std::max<uint32_t>(50, reply.body.value("heartbeat_interval_ms", 1000u)));
    if (!registered_.exchange(true))
      std::fprintf(stderr, "rfaas-executord: registered with the broker at %s\n", broker_address_.c_str());
    return true;
  } catch (const std::exception&) {
    return false;  // the broker is down or unreachable: the caller connects again
  }
}

void BrokerLink::start() {
  thread_ = std::thread([this] {
    net::TcpStream stream;
    while (!stop_.load()) {
      auto sent = std::chrono::steady_clock::now();
      if (!stream) {
        try {
          auto s = net::TcpStream::connect(net::HostPort::parse(broker_address_), net::deadline_in(2s));
          std::lock_guard lock(polling_mutex_);
          stream = std::move(s);
          polling_fd_ = stream.fd();
          if (stop_.load()) break;
        } catch (const std::exception&) {
        }
      }
      bool ok = stream && heartbeat(stream, interval_ms_.load());
      if (!ok && stream) {
        std::lock_guard lock(polling_mutex_);
        polling_fd_ = -1;
        stream = {};
      }
      // An answer sooner than asked (a lease ended at the broker) is followed by the next at
      // once, but no faster than 20 a second; a broker that cannot be reached is tried again
      // after an interval.
      auto gap = ok ? std::chrono::milliseconds(50) : std::chrono::milliseconds(interval_ms_.load());
      while (!stop_.load() && std::chrono::steady_clock::now() - sent < gap) std::this_thread::sleep_for(10ms);
    }
    std::lock_guard lock(polling_mutex_);
    polling_fd_ = -1;
    stream = {};
  });
  prompt_thread_ = std::thread([this] {
    for (;;) {
      {
        std::unique_lock lock(prompt_mutex_);
        prompt_cv_.wait(lock, [this] { return prompt_ || stop_.load(); });
        if (stop_.load()) return;
        prompt_ = false;
      }
      net::TcpStream once;
      heartbeat(once, 0);
    }
  });
}

void BrokerLink::report_now() {
  std::lock_guard lock(prompt_mutex_);
  prompt_ = true;
  prompt_cv_.notify_all();
}

void BrokerLink::drain() {
  stop_threads();
  send(protocol::BrokerType::drain, {{"registration", registration("drain")}}, nullptr);
}

void BrokerLink::report_usage(uint64_t lease_id, const protocol::Usage& reported, const nlohmann::json& served,
                              protocol::LeaseEndReason why) {
  const nlohmann::json usage = reported;
  const std::string reason = protocol::to_string(why);
  send(protocol::BrokerType::lease_usage,
       {{"registration", registration(protocol::usage_report_purpose(lease_id, usage, served, reason))},
        {"lease_id", lease_id}, {"usage", usage}, {"served", served}, {"reason", reason}},
       nullptr);
}

}  // namespace rfaas::daemon
