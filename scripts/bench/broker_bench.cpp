// rfaas-bench broker: the lease broker's control plane under load, in one run.
//
// Starts its own rfaas-broker (journal in --journal-dir, fsync'd as always), registers N
// simulated executor daemons (signed registrations, 64 cores each; nothing serves them, the
// broker only books), then for C concurrent clients measures lease + release round trips through
// the public client API (broker_lease / broker_release: one TCP connection per call, as clients
// do): pairs per second, p50 and p99. Then the broker's memory per held lease and per node
// (VmRSS deltas). With --sbatch-samples and a reachable Slurm (SLURM_CONF), also the time from
// sbatch to RUNNING of a trivial job: what a user does today instead of leasing.
// Every lease comes from one user: the broker's per-user core cap is raised (not lifted, so it
// is still checked on every grant) to what the held leases need; its other policy is the default.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "net/tcp_socket.hpp"
#include "protocol/broker_messages.hpp"
#include "protocol/control.hpp"
#include "protocol/lease_token.hpp"
#include "rfaas/client.hpp"
#include "cli/parse_options.hpp"

namespace po = boost::program_options;
using namespace rfaas;
using Clock = std::chrono::steady_clock;

namespace {

[[noreturn]] void die(const std::string& what) { throw std::runtime_error(what); }

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

struct Broker {
  pid_t pid = -1;
  std::string address;
  std::string dir;

  Broker(const std::string& binary, const std::string& journal_dir, uint64_t user_cores) {
    char tmpl[] = "/tmp/rfaas-bbench-XXXXXX";
    if (!mkdtemp(tmpl)) die("mkdtemp");
    dir = tmpl;
    protocol::ClusterSecret::generate(dir + "/secret");
    std::string journal = journal_dir + "/rfaas-bench-broker-" + std::to_string(::getpid()) + ".journal";
    std::string ready = dir + "/ready";
    const std::string cap = std::to_string(user_cores);
    pid = fork();
    if (pid == 0) {
      FILE* log = std::fopen((dir + "/broker.log").c_str(), "w");  // one line per registration: keep it out
      if (log) {
        ::dup2(fileno(log), STDOUT_FILENO);
        ::dup2(fileno(log), STDERR_FILENO);
      }
      execl(binary.c_str(), binary.c_str(), "--listen", "127.0.0.1:0", "--secret-file", (dir + "/secret").c_str(),
            "--journal", journal.c_str(), "--heartbeat-timeout-ms", "3600000", "--ready-file", ready.c_str(),
            "--max-cores-per-user", cap.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    journal_path = journal;
    for (int i = 0; i < 200 && address.empty(); ++i) {
      std::ifstream f(ready);
      std::getline(f, address);
      if (address.empty()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (address.empty()) die("rfaas-broker did not start");
  }
  ~Broker() {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      int st;
      ::waitpid(pid, &st, 0);
    }
    std::remove(journal_path.c_str());
    std::system(("rm -rf " + dir).c_str());
  }
  uint64_t rss_kib() const {
    std::ifstream f("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(f, line))
      if (line.rfind("VmRSS:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10);
    return 0;
  }
  std::string journal_path;
};

// Registers nodes [first, last) over one connection, as their daemons would.
void register_nodes(const Broker& b, int first, int last) {
  auto secret = protocol::ClusterSecret::load(b.dir + "/secret");
  auto s = net::TcpStream::connect(net::HostPort::parse(b.address), net::deadline_in(std::chrono::seconds(5)));
  for (int i = first; i < last; ++i) {
    protocol::NodeRegistration r;
    r.node = "sim" + std::to_string(100000 + i);
    r.control_address = "127.0.0.1:" + std::to_string(20000 + i % 40000);
    r.cores = 64;
    r.memory_bytes = 256ull << 30;
    r.timestamp_ms = protocol::unix_now_ms();
    r.incarnation = 1;  // each simulated daemon registers once
    r.sequence = 1;
    r.sign(secret);
    std::string msg = protocol::make_message(protocol::BrokerType::register_node, r);
    s.send_frame(msg.data(), msg.size(), net::deadline_in(std::chrono::seconds(5)));
    auto reply = protocol::ControlMessage::parse(
        s.recv_frame(protocol::kMaxControlFrame, net::deadline_in(std::chrono::seconds(5))));
    if (!reply.is(protocol::BrokerType::registered)) die("registration refused: " + reply.body.dump());
  }
}

struct LoadResult {
  double pairs_per_s = 0, p50_us = 0, p99_us = 0;
  size_t pairs = 0;
};

LoadResult run_clients(const Broker& b, int clients, double seconds) {
  std::vector<std::vector<double>> lat(clients);
  std::atomic<bool> failed{false};
  std::string error;
  auto end = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&, c] {
      BrokerLeaseOptions o;
      o.cores = 1;
      o.memory_bytes = 1 << 30;
      o.duration = std::chrono::minutes(5);
      o.client = "bench-" + std::to_string(c);
      try {
        while (Clock::now() < end && !failed) {
          auto s = Clock::now();
          auto g = broker_lease(b.address, o);
          broker_release(b.address, g.lease_id);
          lat[c].push_back(std::chrono::duration<double, std::micro>(Clock::now() - s).count());
        }
      } catch (const std::exception& e) {
        if (!failed.exchange(true)) error = e.what();
      }
    });
  for (auto& t : threads) t.join();
  double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  if (failed) die("a client failed: " + error);
  std::vector<double> all;
  for (auto& v : lat) all.insert(all.end(), v.begin(), v.end());
  return {static_cast<double>(all.size()) / elapsed, percentile(all, 0.5), percentile(all, 0.99), all.size()};
}

// sbatch -> RUNNING of `sleep 1`, in ms, or empty when no Slurm answers.
std::vector<double> sbatch_to_running(int samples) {
  std::vector<double> ms;
  if (samples <= 0 || std::system("sinfo -h >/dev/null 2>&1") != 0) return ms;
  for (int i = 0; i < samples; ++i) {
    auto t0 = Clock::now();
    FILE* p = popen("sbatch --parsable -o /dev/null --wrap 'sleep 1' 2>/dev/null", "r");
    char buf[64] = {};
    if (!p || !fgets(buf, sizeof buf, p)) {
      if (p) pclose(p);
      break;
    }
    pclose(p);
    std::string id = std::string(buf).substr(0, std::string(buf).find_first_of(";\n"));
    bool running = false;
    for (int k = 0; k < 3000 && !running; ++k) {
      FILE* q = popen(("squeue -h -j " + id + " -o %T 2>/dev/null").c_str(), "r");
      char st[64] = {};
      if (q && fgets(st, sizeof st, q)) running = std::string(st).rfind("RUNNING", 0) == 0;
      if (q) pclose(q);
      if (!running) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (running) ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    std::system(("scancel " + id + " >/dev/null 2>&1").c_str());
    std::this_thread::sleep_for(std::chrono::milliseconds(7500));  // KillWait + 2 s before the next can start
  }
  return ms;
}

}  // namespace

int broker_bench_main(int argc, char** argv) {
  std::string binary = RFAAS_BROKER_DEFAULT, journal_dir = "/tmp", nodes_csv = "1000,10000", clients_csv = "1,4,16,64";
  double seconds = 2;
  int hold = 10000, sbatch_samples = 0;
  po::options_description desc("rfaas-bench broker: lease grant + release under load");
  desc.add_options()("help,h", "show this help")("broker", po::value(&binary)->default_value(binary), "rfaas-broker")(
      "journal-dir", po::value(&journal_dir)->default_value(journal_dir), "where the broker's journal lives")(
      "nodes", po::value(&nodes_csv)->default_value(nodes_csv), "simulated node counts, ascending")(
      "clients", po::value(&clients_csv)->default_value(clients_csv), "concurrent client counts")(
      "seconds", po::value(&seconds)->default_value(seconds), "seconds per measurement")(
      "hold", po::value(&hold)->default_value(hold), "leases held for the memory figure")(
      "sbatch-samples", po::value(&sbatch_samples)->default_value(0), "sbatch -> RUNNING samples (needs Slurm)");
  po::variables_map vm;
  if (auto exit = rfaas::cli::parse_options(argc, argv, desc, vm, "rfaas-bench broker")) return *exit;
  auto ints = [](const std::string& csv) {
    std::vector<int> v;
    for (size_t pos = 0; pos < csv.size();) {
      size_t c = csv.find(',', pos);
      v.push_back(std::atoi(csv.substr(pos, c - pos).c_str()));
      pos = c == std::string::npos ? csv.size() : c + 1;
    }
    return v;
  };
  try {
    int most_clients = 0;
    for (int c : ints(clients_csv)) most_clients = std::max(most_clients, c);
    Broker b(binary, journal_dir, static_cast<uint64_t>(hold) + static_cast<uint64_t>(most_clients));
    std::printf("rfaas-bench broker  journal in %s (group-committed fdatasync before each answer), %.1f s per point\n",
                journal_dir.c_str(), seconds);
    std::printf("%8s %8s %14s %10s %10s %10s\n", "nodes", "clients", "pairs/s", "p50 us", "p99 us", "pairs");
    int registered = 0;
    uint64_t rss_start = b.rss_kib();
    double kib_per_node = 0;
    for (int n : ints(nodes_csv)) {
      register_nodes(b, registered, n);
      if (n > registered) kib_per_node = static_cast<double>(b.rss_kib() - rss_start) / (n);
      registered = std::max(registered, n);
      for (int c : ints(clients_csv)) {
        auto r = run_clients(b, c, seconds);
        std::printf("%8d %8d %14.0f %10.1f %10.1f %10zu\n", n, c, r.pairs_per_s, r.p50_us, r.p99_us, r.pairs);
        std::printf("{\"bench\":\"broker\",\"nodes\":%d,\"clients\":%d,\"pairs_per_s\":%.1f,\"p50_us\":%.2f,"
                    "\"p99_us\":%.2f}\n",
                    n, c, r.pairs_per_s, r.p50_us, r.p99_us);
        std::fflush(stdout);
      }
    }
    // Memory per held lease.
    uint64_t before = b.rss_kib();
    std::vector<uint64_t> ids;
    BrokerLeaseOptions o;
    o.memory_bytes = 1 << 20;
    o.client = "bench-hold";
    auto t0 = Clock::now();
    for (int i = 0; i < hold; ++i) ids.push_back(broker_lease(b.address, o).lease_id);
    double grant_s = std::chrono::duration<double>(Clock::now() - t0).count();
    uint64_t after = b.rss_kib();
    for (auto id : ids) broker_release(b.address, id);
    std::printf("\nmemory: %.2f KiB per held lease (%d leases held, VmRSS %llu -> %llu KiB; granted at %.0f/s), "
                "%.2f KiB per registered node\n",
                hold ? static_cast<double>(after - before) / hold : 0.0, hold, static_cast<unsigned long long>(before),
                static_cast<unsigned long long>(after), hold / grant_s, kib_per_node);
    auto sb = sbatch_to_running(sbatch_samples);
    if (!sb.empty())
      std::printf("slurm: sbatch -> RUNNING of a trivial job: median %.0f ms, min %.0f, max %.0f (%zu samples)\n",
                  percentile(sb, 0.5), *std::min_element(sb.begin(), sb.end()), *std::max_element(sb.begin(), sb.end()),
                  sb.size());
    else if (sbatch_samples > 0)
      std::printf("slurm: no Slurm answered (set SLURM_CONF); sbatch -> RUNNING not measured\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rfaas-bench broker: %s\n", e.what());
    return 1;
  }
  return 0;
}
