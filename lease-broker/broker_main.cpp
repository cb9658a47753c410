// rfaas-broker: the lease broker (see broker.hpp and docs/operations.md).
#include <signal.h>

#include <boost/program_options.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>

#include "broker.hpp"
#include "net/private_file.hpp"
#include "cli/parse_options.hpp"

namespace po = boost::program_options;

namespace {
rfaas::broker::LeaseBroker* g_broker = nullptr;
void on_signal(int) {
  if (g_broker) g_broker->shutdown();
}
}  // namespace

int main(int argc, char** argv) {
  std::string config_path, listen, secret_file, journal, ready_file;
  uint32_t heartbeat_timeout_ms = 0;
  std::string munge_socket;
  std::vector<std::string> operators, audiences;
  int64_t max_lease_ms = 0;
  po::options_description desc("rfaas-broker: leases idle cores of registered executor daemons");
  desc.add_options()("help,h", "show this help")
      ("config", po::value(&config_path), "JSON config (keys: listen, secret_file, journal, heartbeat_timeout_ms, control_timeout_ms, max_lease_ms, max_lease_lifetime_ms, max_cores_per_lease, max_cores_per_user, max_memory_per_core_bytes, journal_compact_records, munge_socket, operators, max_connections, max_connections_per_peer, max_connections_per_identity, first_frame_timeout_ms, audiences)")
      ("listen", po::value(&listen), "host:port to listen on (port 0 picks one)")
      ("secret-file", po::value(&secret_file), "cluster secret shared with the executor daemons (mode 0600)")
      ("journal", po::value(&journal), "journal file: grants and releases, fsync'd; replayed at start")
      ("heartbeat-timeout-ms", po::value(&heartbeat_timeout_ms), "a node silent this long is lost (default 5000)")
      ("max-lease-ms", po::value(&max_lease_ms), "the longest lease or renewal granted (default 86400000: 24 h)")
      ("max-lease-lifetime-ms", po::value<int64_t>(), "the longest a lease lives, renewals included (default 604800000: 7 days)")
      ("max-cores-per-lease", po::value<uint32_t>(), "the most cores in one lease (default 32; 0: no cap)")
      ("max-cores-per-user", po::value<uint32_t>(), "the most cores one user's leases hold at once (default 128; 0: no cap)")
      ("max-memory-per-core", po::value<uint64_t>(), "the most memory a lease asks for per core, in bytes (default 0: its node's memory over its cores)")
      ("journal-compact-records", po::value<uint64_t>(), "compact the journal into a snapshot after this many records (default 10000; 0: never)")
      ("munge-socket", po::value(&munge_socket), "munged's socket for checking users' credentials (default: RFAAS_MUNGE_SOCKET, else MUNGE's default)")
      ("operator", po::value(&operators)->composing(), "a user (name or uid) who may drain and resume nodes and manage every lease, besides root; repeatable")
      ("audience", po::value(&audiences)->composing(), "another host:port users' requests may name as the broker they are meant for, besides the address they reached (a broker behind NAT or a proxy); repeatable")
      ("max-connections", po::value<uint32_t>(), "connections served at once (default 2048)")
      ("max-connections-per-peer", po::value<uint32_t>(), "of them from one peer address (default 256)")
      ("ready-file", po::value(&ready_file), "write the listening address here once ready");
  po::variables_map vm;
  if (auto exit = rfaas::cli::parse_options(argc, argv, desc, vm, "rfaas-broker")) return *exit;
  try {
    rfaas::broker::BrokerConfig cfg;
    if (!config_path.empty()) cfg = rfaas::broker::BrokerConfig::from_json_file(config_path);
    if (!listen.empty()) cfg.listen = listen;
    if (!secret_file.empty()) cfg.secret_file = secret_file;
    if (!journal.empty()) cfg.journal_path = journal;
    if (heartbeat_timeout_ms) cfg.heartbeat_timeout_ms = heartbeat_timeout_ms;
    if (max_lease_ms) cfg.max_lease_ms = max_lease_ms;
    if (vm.count("max-lease-lifetime-ms")) cfg.max_lease_lifetime_ms = vm["max-lease-lifetime-ms"].as<int64_t>();
    if (vm.count("max-cores-per-lease")) cfg.max_cores_per_lease = vm["max-cores-per-lease"].as<uint32_t>();
    if (vm.count("max-cores-per-user")) cfg.max_cores_per_user = vm["max-cores-per-user"].as<uint32_t>();
    if (vm.count("max-memory-per-core")) cfg.max_memory_per_core_bytes = vm["max-memory-per-core"].as<uint64_t>();
    if (vm.count("journal-compact-records")) cfg.journal_compact_records = vm["journal-compact-records"].as<uint64_t>();
    if (!munge_socket.empty()) cfg.munge_socket = munge_socket;
    for (auto& o : operators) cfg.operator_uids.push_back(rfaas::broker::operator_uid(o));
    for (auto& a : audiences) cfg.audiences.push_back(a);
    if (vm.count("max-connections")) cfg.sessions.max_sessions = vm["max-connections"].as<uint32_t>();
    if (vm.count("max-connections-per-peer"))
      cfg.sessions.max_sessions_per_peer = vm["max-connections-per-peer"].as<uint32_t>();
    constexpr int64_t kCentury = 100LL * 365 * 24 * 3600 * 1000;  // no expiry arithmetic overflows
    if (cfg.max_lease_ms <= 0 || cfg.max_lease_ms > kCentury) throw std::runtime_error("max_lease_ms must be positive, at most a century");
    if (cfg.max_lease_lifetime_ms < cfg.max_lease_ms || cfg.max_lease_lifetime_ms > kCentury)
      throw std::runtime_error("max_lease_lifetime_ms must be at least max_lease_ms, at most a century");
    if (cfg.secret_file.empty() || cfg.journal_path.empty())
      throw std::runtime_error("need --secret-file and --journal (or the config keys)");
    signal(SIGPIPE, SIG_IGN);
    rfaas::broker::LeaseBroker broker(cfg);
    g_broker = &broker;
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    if (!ready_file.empty()) {
      rfaas::net::publish_file(ready_file, broker.address() + "\n");  // never through a planted link
    }
    broker.serve();
    g_broker = nullptr;
  } catch (const std::exception& e) {
    std::cerr << "rfaas-broker: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
