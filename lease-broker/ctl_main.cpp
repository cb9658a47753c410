// rfaas-ctl: asks the broker about nodes, leases and usage; drains and resumes nodes. Requests
// carry the caller's MUNGE credential: status shows a user's own leases (an operator's: all);
// drain and resume need root or an operator of the broker.
//   rfaas-ctl --broker HOST:PORT status [--json]
//   rfaas-ctl --broker HOST:PORT drain NODE    (no new leases; running ones continue)
//   rfaas-ctl --broker HOST:PORT resume NODE
#include <boost/program_options.hpp>
#include <cstdio>
#include <iostream>

#include "auth/munge_credential.hpp"
#include "net/tcp_socket.hpp"
#include "protocol/broker_messages.hpp"
#include "protocol/control.hpp"

namespace po = boost::program_options;
using namespace rfaas;

int main(int argc, char** argv) {
  std::string broker, command, node;
  bool json = false;
  po::options_description desc("rfaas-ctl: status of the rfaas lease broker");
  desc.add_options()("help,h", "show this help")("broker", po::value(&broker)->required(), "broker host:port")
      ("json", po::bool_switch(&json), "print the broker's answer as JSON")(
      "command", po::value(&command), "status | drain NODE | resume NODE")("node", po::value(&node), "node name");
  po::positional_options_description pos;
  pos.add("command", 1).add("node", 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(desc).positional(pos).run(), vm);
    if (vm.count("help")) {
      std::cout << "usage: rfaas-ctl --broker HOST:PORT status [--json]\n"
                   "       rfaas-ctl --broker HOST:PORT drain|resume NODE\n"
                   "(MUNGE authenticates the caller; its socket: RFAAS_MUNGE_SOCKET, else MUNGE's default)\n"
                << desc << "\n";
      return 0;
    }
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << "rfaas-ctl: " << e.what() << "\n";
    return 2;
  }
  if (command != "status" && command != "drain" && command != "resume") {
    std::cerr << "rfaas-ctl: unknown command '" << command << "' (have: status, drain, resume)\n";
    return 2;
  }
  if (command != "status" && node.empty()) {
    std::cerr << "rfaas-ctl: " << command << " needs a NODE\n";
    return 2;
  }
  try {
    auto s = net::TcpStream::connect(net::HostPort::parse(broker), net::deadline_in(std::chrono::seconds(5)));
    if (command != "status") {
      protocol::AdminCommand cmd{command == "drain" ? "drain_node" : "resume_node", node};
      std::string req = protocol::make_message(protocol::BrokerType::admin, auth::with_credential_for(s.peer_address(), "admin", cmd));
      s.send_frame(req.data(), req.size(), net::deadline_in(std::chrono::seconds(5)));
      auto reply = protocol::ControlMessage::parse(s.recv_frame(1 << 20, net::deadline_in(std::chrono::seconds(10))));
      if (!reply.is(protocol::BrokerType::done)) {
        std::cerr << "rfaas-ctl: " << reply.body.value("message", reply.body.dump()) << "\n";
        return 1;
      }
      std::cout << "rfaas-ctl: node " << node << (command == "drain" ? " drained (running leases continue)" : " resumed")
                << "\n";
      return 0;
    }
    std::string req = protocol::make_message(protocol::BrokerType::status, auth::with_credential_for(s.peer_address(), "status", nlohmann::json::object()));
    s.send_frame(req.data(), req.size(), net::deadline_in(std::chrono::seconds(5)));
    auto reply = protocol::ControlMessage::parse(s.recv_frame(1 << 24, net::deadline_in(std::chrono::seconds(10))));
    if (!reply.is(protocol::BrokerType::status)) {
      std::cerr << "rfaas-ctl: " << reply.body.value("message", reply.body.dump()) << "\n";
      return 1;
    }
    if (json) {
      std::cout << reply.body.dump(2) << "\n";
      return 0;
    }
    std::printf("%-20s %-24s %6s %6s %-9s %s\n", "NODE", "ADDRESS", "CORES", "FREE", "STATE", "HEARTBEAT");
    for (auto& n : reply.body["nodes"])
      std::printf("%-20s %-24s %6u %6u %-9s %.1f s ago\n", n["node"].get<std::string>().c_str(),
                  n["address"].get<std::string>().c_str(), n["cores"].get<unsigned>(), n["free_cores"].get<unsigned>(),
                  n["state"].get<std::string>().c_str(), n["heartbeat_age_ms"].get<double>() / 1000);
    std::printf("\n%-20s %-20s %6s %-14s %-8s %s\n", "LEASE", "NODE", "CORES", "EXPIRES IN", "UID", "CLIENT");
    int64_t now = protocol::unix_now_ms();
    for (auto& l : reply.body["leases"])
      std::printf("%-20llu %-20s %6u %11.1f s  %-8u %s\n", l["lease_id"].get<unsigned long long>(),
                  l["node"].get<std::string>().c_str(), l["cores"].get<unsigned>(),
                  (l["expires_at_ms"].get<int64_t>() - now) / 1000.0, l["uid"].get<unsigned>(),
                  l["client"].get<std::string>().c_str());
    // Core time as the node's daemon measured it; the rest is the executor's own word.
    std::printf("\n%-20s %8s %6s %14s | %-40s\n", "USAGE OF LEASE", "UID", "CORES", "CORE TIME (s)",
                "REPORTED BY THE EXECUTOR: INVOCATIONS, COMPUTE (ms)");
    for (auto& u : reply.body["usage"]) {
      const auto& r = u["reported_by_executor"];
      std::printf("%-20llu %8u %6u %14.3f | %12llu %14.3f\n", u["lease_id"].get<unsigned long long>(),
                  u["uid"].get<unsigned>(), u["cores"].get<unsigned>(), u["core_ms"].get<double>() / 1e3,
                  r["invocations"].get<unsigned long long>(), r["compute_ns"].get<double>() / 1e6);
    }
  } catch (const std::exception& e) {
    std::cerr << "rfaas-ctl: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
