#include "executor/broker_link.hpp"

#include <chrono>
#include <cstdio>

#include "net/tcp_socket.hpp"

namespace rfaas::executor {

using namespace std::chrono_literals;

BrokerLink::BrokerLink(std::string broker_address, std::string node, std::string control_address, uint32_t cores,
                       uint64_t memory_bytes, const protocol::ClusterSecret& secret)
    : broker_address_(std::move(broker_address)),
      node_(std::move(node)),
      control_address_(std::move(control_address)),
      cores_(cores),
      memory_bytes_(memory_bytes),
      secret_(secret) {}

BrokerLink::~BrokerLink() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

protocol::NodeRegistration BrokerLink::registration(const std::string& purpose) const {
  protocol::NodeRegistration r{node_, control_address_, cores_, memory_bytes_, protocol::unix_now_ms(), "", purpose};
  r.sign(secret_);
  return r;
}

bool BrokerLink::send(const std::string& type, const nlohmann::json& body, nlohmann::json* reply) {
  try {
    auto s = net::TcpStream::connect(net::HostPort::parse(broker_address_), net::deadline_in(2s));
    std::string msg = protocol::make_message(type, body);
    s.send_frame(msg.data(), msg.size(), net::deadline_in(2s));
    auto r = protocol::ControlMessage::parse(s.recv_frame(protocol::kMaxControlFrame, net::deadline_in(2s)));
    if (r.type == "error") {
      std::fprintf(stderr, "rfaas-executord: broker refused '%s': %s\n", type.c_str(),
                   r.body.value("message", std::string()).c_str());
      return false;
    }
    if (reply) *reply = r.body;
    return true;
  } catch (const std::exception&) {
    return false;  // the broker is down or unreachable: tried again later
  }
}

void BrokerLink::start() {
  thread_ = std::thread([this] {
    while (!stop_.load()) {
      nlohmann::json reply;
      bool ok = send("register", registration("register"), &reply);
      if (ok && !registered_.exchange(true))
        std::fprintf(stderr, "rfaas-executord: registered with the broker at %s\n", broker_address_.c_str());
      if (ok) interval_ms_.store(std::max<uint32_t>(50, reply.value("heartbeat_interval_ms", 1000u)));
      for (uint32_t waited = 0; waited < interval_ms_.load() && !stop_.load(); waited += 10)
        std::this_thread::sleep_for(10ms);
    }
  });
}

void BrokerLink::drain() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
  send("drain", {{"registration", registration("drain")}}, nullptr);
}

void BrokerLink::report_usage(uint64_t lease_id, const protocol::Usage& usage, const std::string& reason) {
  send("lease_usage", {{"registration", registration("lease_usage:" + std::to_string(lease_id))}, {"lease_id", lease_id}, {"usage", usage}, {"reason", reason}},
       nullptr);
}

}  // namespace rfaas::executor
