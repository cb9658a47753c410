// rfaas-executord: the executor daemon of one node. See executor_daemon.hpp and
// docs/executor.md. Flags override the JSON config file given with --config.
#include <signal.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <thread>

#include "daemon/executor_daemon.hpp"
#include "net/private_file.hpp"
#include "text/comma_list.hpp"
#include "cli/parse_options.hpp"

namespace po = boost::program_options;

namespace {
rfaas::daemon::ExecutorDaemon* g_daemon = nullptr;
void on_signal(int) {
  if (g_daemon) g_daemon->shutdown();
}
}  // namespace

int main(int argc, char** argv) {
  std::string config_path, listen, node_name, secret_file, executor_path, fabric_host, ready_file, cores_csv, broker,
      advertise;
  po::options_description desc("rfaas-executord: serves leases of this node's cores");
  desc.add_options()("help,h", "show this help")
      ("config", po::value(&config_path), "JSON config file (keys: listen, node_name, secret_file, cores, "
                                          "executor_path, fabric_host, max_library_bytes, library_cache_bytes, "
                                          "control_timeout_ms, broker, advertise, memory_bytes, max_connections, "
                                          "max_connections_per_peer, max_connections_per_identity, first_frame_timeout_ms)")
      ("listen", po::value(&listen), "control port, host:port (port 0 picks one)")
      ("node-name", po::value(&node_name), "the node name lease tokens must carry (default: hostname)")
      ("secret-file", po::value(&secret_file), "cluster secret shared with the broker (mode 0600)")
      ("cores", po::value(&cores_csv), "comma-separated core ids to lease (default: all)")
      ("executor", po::value(&executor_path), "path of rfaas-executor (default: beside this binary)")
      ("fabric-host", po::value(&fabric_host), "address executors listen on for client endpoints")
      ("broker", po::value(&broker), "lease broker host:port to register with (heartbeats, usage reports)")
      ("advertise", po::value(&advertise), "control address to give the broker (default: the listen address)")
      ("ready-file", po::value(&ready_file), "write the control address here once listening")
      ("max-connections", po::value<uint32_t>(), "control connections served at once (default 2048)")
      ("max-connections-per-peer", po::value<uint32_t>(), "of them from one peer address (default 256)");
  po::variables_map vm;
  if (auto exit = rfaas::cli::parse_options(argc, argv, desc, vm, "rfaas-executord")) return *exit;
  try {
    rfaas::daemon::DaemonConfig cfg;
    if (!config_path.empty()) cfg = rfaas::daemon::DaemonConfig::from_json_file(config_path);
    if (!listen.empty()) cfg.listen = listen;
    if (!node_name.empty()) cfg.node_name = node_name;
    if (!secret_file.empty()) cfg.secret_file = secret_file;
    if (!executor_path.empty()) cfg.executor_path = executor_path;
    if (!fabric_host.empty()) cfg.fabric_host = fabric_host;
    if (!broker.empty()) cfg.broker = broker;
    if (!advertise.empty()) cfg.advertise = advertise;
    if (vm.count("max-connections")) cfg.sessions.max_sessions = vm["max-connections"].as<uint32_t>();
    if (vm.count("max-connections-per-peer"))
      cfg.sessions.max_sessions_per_peer = vm["max-connections-per-peer"].as<uint32_t>();
    if (!cores_csv.empty()) {
      cfg.cores.clear();
      for (const auto& core : rfaas::text::split_commas(cores_csv)) cfg.cores.push_back(std::stoi(core));
    }
    if (cfg.secret_file.empty()) throw std::runtime_error("no cluster secret: give --secret-file or secret_file");
    cfg.fabric = rfaas::fabric::Config::from_env();  // the executors' transport: this environment, read here once
    signal(SIGPIPE, SIG_IGN);
    rfaas::daemon::ExecutorDaemon daemon(cfg);
    g_daemon = &daemon;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    if (!ready_file.empty()) {
      rfaas::net::publish_file(ready_file, daemon.address() + "\n");  // never through a planted link
    }
    daemon.serve();
    g_daemon = nullptr;
  } catch (const std::exception& e) {
    std::cerr << "rfaas-executord: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
