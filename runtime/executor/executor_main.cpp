// rfaas-executor: serves one lease. Started by rfaas-executord with the function library as an
// inherited memfd; reports on stdout, one JSON object per line:
//   {"event":"ready","address":"host:port"}          listening; the client may connect
//   {"event":"failed","code":"...","detail":"..."}   could not start (exit status 3)
//   {"event":"usage", "invocations":..., ...}        at exit
// Exits when the lease's expiry passes, on SIGTERM/SIGINT, or when every worker's client is gone.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <thread>

#include "executor/cycle_clock.hpp"
#include "executor/function_library.hpp"
#include "executor/worker.hpp"
#include "protocol/control.hpp"
#include "protocol/invocation.hpp"

namespace po = boost::program_options;
using namespace rfaas;
using namespace std::chrono_literals;

namespace {

std::atomic<bool> g_terminate{false};
void on_signal(int) { g_terminate.store(true); }

void report(const nlohmann::json& j) {
  std::string line = j.dump() + "\n";
  (void)!::write(STDOUT_FILENO, line.data(), line.size());
}

[[noreturn]] void fail(const char* code, const std::string& detail) {
  report({{"event", "failed"}, {"code", code}, {"detail", detail}});
  std::exit(3);
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, sep);)
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  int library_fd = -1;
  std::string functions_csv, cores_csv, listen_host = "127.0.0.1";
  uint32_t workers = 1, slots = 4;
  uint64_t input_capacity = 1 << 20, output_capacity = 1 << 20, lease_id = 0;
  int64_t hot_timeout_us = 10'000, expires_at_ms = 0, accept_timeout_ms = 10'000;
  po::options_description desc("rfaas-executor (started by rfaas-executord)");
  desc.add_options()("help", "show this help")
      ("library-fd", po::value(&library_fd)->required(), "inherited fd of the function library")
      ("functions", po::value(&functions_csv)->required(), "comma-separated function names; index = position")
      ("workers", po::value(&workers), "worker threads, one per leased core")
      ("cores", po::value(&cores_csv), "comma-separated core ids to pin the workers to")
      ("slots", po::value(&slots), "input slots per worker (invocations in flight)")
      ("input-capacity", po::value(&input_capacity), "payload bytes per input slot")
      ("output-capacity", po::value(&output_capacity), "result bytes per invocation")
      ("hot-timeout-us", po::value(&hot_timeout_us), "busy-poll this long before blocking; -1 always hot, 0 always warm")
      ("expires-at-ms", po::value(&expires_at_ms)->required(), "lease expiry, Unix epoch ms")
      ("lease-id", po::value(&lease_id)->required(), "lease id the client must present")
      ("listen", po::value(&listen_host), "address to listen on for the client's endpoints")
      ("accept-timeout-ms", po::value(&accept_timeout_ms), "how long to wait for the client's endpoints");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    if (vm.count("help")) {
      std::cout << desc << "\n";
      return 0;
    }
    po::notify(vm);
  } catch (const std::exception& e) {
    fail("executor_failed", std::string("bad arguments: ") + e.what());
  }
  if (workers == 0 || slots == 0 || slots > protocol::kMaxSlots || input_capacity > protocol::kMaxInputCapacity ||
      output_capacity > protocol::kMaxOutputCapacity)
    fail("executor_failed", "workers, slots or capacities out of range");
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  signal(SIGPIPE, SIG_IGN);

  auto names = split(functions_csv, ',');
  std::unique_ptr<executor::FunctionLibrary> library;
  try {
    library = std::make_unique<executor::FunctionLibrary>(library_fd, names);
  } catch (const executor::LibraryError& e) {
    fail("library_load_failed", e.what());
  }
  auto cores = split(cores_csv, ',');

  std::unique_ptr<fabric::Domain> domain;
  std::unique_ptr<fabric::Listener> listener;
  std::vector<std::unique_ptr<executor::Worker>> pool;
  try {
    domain = fabric::open_domain(fabric::Config::from_env());
    listener = domain->listen(listen_host, 0);
    for (uint32_t i = 0; i < workers; ++i) {
      executor::WorkerConfig wc;
      wc.index = i;
      wc.core = i < cores.size() ? std::stoi(cores[i]) : -1;
      wc.slots = slots;
      wc.input_capacity = input_capacity;
      wc.output_capacity = output_capacity;
      wc.hot_timeout_us = hot_timeout_us;
      pool.push_back(std::make_unique<executor::Worker>(*domain, wc, library->functions()));
    }
  } catch (const std::exception& e) {
    fail("executor_failed", e.what());
  }
  report({{"event", "ready"}, {"address", listener->address()}});

  // The client connects its endpoints in worker order.
  for (uint32_t i = 0; i < workers; ++i) {
    fabric::ConnectionData theirs;
    try {
      listener->accept(pool[i]->endpoint(), fabric::make_connection_data(pool[i]->input_region()), theirs,
                       std::chrono::milliseconds(accept_timeout_ms));
      auto hello = fabric::read_connection_data<protocol::WorkerHello>(theirs);
      if (hello.worker != i || hello.lease_id != lease_id || hello.version != protocol::kWorkerHelloVersion)
        fail("executor_failed", "worker connection " + std::to_string(i) + " presented a wrong hello");
    } catch (const fabric::Error& e) {
      fail("executor_failed", std::string("client endpoints did not connect: ") + e.what());
    }
  }
  double ticks_per_ns = executor::CycleClock::calibrate();
  for (auto& w : pool) w->start(ticks_per_ns);

  // Wait for expiry, a signal, or every client endpoint gone.
  for (;;) {
    if (g_terminate.load()) break;
    if (protocol::unix_now_ms() >= expires_at_ms) break;
    bool all_done = true;
    for (auto& w : pool) all_done &= w->finished();
    if (all_done) break;
    std::this_thread::sleep_for(5ms);
  }
  protocol::Usage total;
  for (auto& w : pool) {
    w->stop();
    w->join();
    auto u = w->usage();
    total.invocations += u.invocations;
    total.hot_polling_ns += u.hot_polling_ns;
    total.compute_ns += u.compute_ns;
  }
  nlohmann::json j = total;
  j["event"] = "usage";
  report(j);
  return 0;
}
