// rfaas-executor: serves one lease. rfaas-executord starts it ahead of need ("standby"): it
// initialises libfabric, opens its own fabric domain and listener and measures its cycle clock,
// then waits on fd 3 (a Unix socket to the daemon) for its LeaseAssignment, which arrives with
// the function library's memfd attached. So a lease's cold start pays none of that. Before it
// loads the library it becomes the lease's user (executor/lease_user.hpp): started by a root
// daemon, everything of the lease's own runs as the user who leased it.
// It reports on the stdout it was started with, one JSON object per line (the function library's
// own stdout goes to stderr instead, a pipe the daemon drains into its log line by line, labelled
// with the lease and rate-limited: a chatty function neither blocks nor mixes its bytes into the
// reports, and no descriptor of root's log is in the lease's hands). Reports are the executor's
// word about itself, and leased code runs in this process: the daemon takes them for what the
// executor says (invocation counts), never for accounting that matters (daemon/executor_process.hpp):
// ready (serving; the client may connect), failed (could not serve: exit status 3), usage (at
// exit), and the answers to the daemon's commands (protocol/executor_messages.hpp).
// It exits when the lease's expiry passes, on SIGTERM/SIGINT, when every worker's client is
// gone, or (while on standby) when the daemon goes away.
#include <cstdlib>
#include <cstring>
#include <cerrno>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>

#include "clock/cycle_clock.hpp"
#include "executor/function_library.hpp"
#include "executor/output_guard.hpp"
#include "executor/lease_mounts.hpp"
#include "executor/lease_user.hpp"
#include "executor/worker.hpp"
#include "net/fd_passing.hpp"
#include "protocol/control.hpp"
#include "protocol/executor_messages.hpp"
#include "protocol/invocation.hpp"

namespace po = boost::program_options;
using namespace rfaas;
using namespace std::chrono_literals;

namespace {

constexpr int kDaemonSocket = 3;
std::atomic<bool> g_terminate{false};
void on_signal(int) { g_terminate.store(true); }
int g_reports = STDOUT_FILENO;  // the daemon's pipe, moved off fd 1 before any user code runs

// One report line (protocol/executor_messages.hpp).
template <class T>
void report(const T& m) {
  std::string line = protocol::make_report(m) + "\n";
  (void)!::write(g_reports, line.data(), line.size());
}

[[noreturn]] void fail(protocol::ControlErrc code, const std::string& detail) {
  report(protocol::FailedReport{code, detail});
  std::exit(3);
}

}  // namespace

int main(int argc, char** argv) {
  // Nothing of the daemon's beyond stdin, stdout, stderr and its socket (fd 3) reaches the lease.
  ::close_range(kDaemonSocket + 1, ~0U, 0);
  // While this process has one thread (executor/lease_mounts.hpp).
  const std::string namespace_error = executor::enter_mount_namespace();
  // Each worker owns one leased core: threaded math libraries in a function library must not
  // fan out over the node (the daemon's environment may still say otherwise).
  ::setenv("OPENBLAS_NUM_THREADS", "1", 0);
  ::setenv("OMP_NUM_THREADS", "1", 0);
  std::string listen_host = "127.0.0.1";
  po::options_description desc("rfaas-executor (started by rfaas-executord; waits for its lease on fd 3)");
  desc.add_options()("help", "show this help")("listen", po::value(&listen_host),
                                                 "address to listen on for the client's endpoints");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    fail(protocol::ControlErrc::executor_failed, std::string("bad arguments: ") + e.what());
  }
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  // Reports keep the pipe; fd 1 becomes stderr for everything else (libfabric, the library).
  if (int fd = ::fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 10); fd >= 0 && ::dup2(STDERR_FILENO, STDOUT_FILENO) >= 0)
    g_reports = fd;
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  signal(SIGPIPE, SIG_IGN);

  // Standby: everything that does not depend on the lease.
  std::unique_ptr<fabric::Domain> domain;
  std::unique_ptr<fabric::Listener> listener;
  // The endpoints bind where the listener does: clients on other hosts reach both.
  fabric::Config fabric_config;
  try {
    fabric_config = fabric::Config::from_env();
  } catch (const std::exception& e) {
    fail(protocol::ControlErrc::executor_failed, e.what());
  }
  // Its clients are other processes: an in-process transport cannot reach them.
  if (fabric_config.backend == fabric::Backend::loopback)
    fail(protocol::ControlErrc::executor_failed, "RFAAS_FABRIC=loopback is in-process only; an executor serves other processes");
  fabric_config.local_host = listen_host;
  // "auto": the standby guesses what most of its leases will want (a daemon on loopback serves
  // only its host); a lease that wants the other provider opens it below.
  const bool loopback = listen_host == "localhost" || listen_host == "::1" || listen_host.rfind("127.", 0) == 0;
  fabric_config.ofi_provider = fabric_config.ofi_provider_for(loopback);
  try {
    domain = fabric::open_domain(fabric_config);
    listener = domain->listen(listen_host, 0);
  } catch (const std::exception& e) {
    fail(protocol::ControlErrc::executor_failed, e.what());
  }
  CycleClock::ticks_per_ns();  // measured now, not when the lease arrives
  // Workers report the end of their loop here, so the wait below needs no polling period.
  const int finished_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (finished_fd < 0) fail(protocol::ControlErrc::executor_failed, std::string("eventfd: ") + std::strerror(errno));

  protocol::LeaseAssignment lease;
  int library_fd = -1;
  std::vector<std::pair<std::string, int>> dependencies;  // the library's, before the assignment
  try {
    for (;;) {
      int fd = -1;
      auto text = net::recv_with_fd(kDaemonSocket, protocol::kMaxControlFrame, &fd);
      auto command = protocol::ExecutorCommand::parse(text);
      if (command.type == protocol::ExecutorCommandType::dependency) {
        if (fd < 0 || dependencies.size() >= protocol::kMaxDependencies)
          fail(protocol::ControlErrc::executor_failed, "a dependency without its descriptor, or too many");
        dependencies.emplace_back(command.as<protocol::DependencyCommand>().name, fd);
        continue;
      }
      library_fd = fd;
      lease = command.as<protocol::LeaseAssignment>();
      break;
    }
  } catch (const net::NetError&) {
    return 0;  // the daemon went away before it needed us
  } catch (const std::exception& e) {
    fail(protocol::ControlErrc::executor_failed, std::string("lease assignment: ") + e.what());
  }
  if (library_fd < 0) fail(protocol::ControlErrc::executor_failed, "lease assignment came without the library");
  // The parameters were checked on parsing (protocol::read_lease_parameters), one worker per core.
  const uint32_t workers = lease.params.workers;
  // The lease's user from here on, before any of its code is loaded.
  try {
    // The transport the daemon chose for this lease's client (shm on its host, tcp from another).
    if (domain->backend() == fabric::Backend::ofi && !lease.ofi_provider.empty() &&
        !fabric::same_ofi_provider(lease.ofi_provider, fabric_config.ofi_provider)) {
      listener.reset();
      domain.reset();
      fabric_config.ofi_provider = lease.ofi_provider;
      domain = fabric::open_domain(fabric_config);
      listener = domain->listen(listen_host, 0);
    }
    // A /tmp (and /dev/shm) of the lease's own, while still root (executor/lease_mounts.hpp).
    const auto dirs = executor::make_private_dirs(lease.memory_limit_bytes,
                                                  !domain->capabilities().meets_peers_in_dev_shm, namespace_error);
    if (!dirs.shared.empty())
      std::fprintf(stderr, "rfaas-executor: lease %llu shares with the node: %s\n",
                   static_cast<unsigned long long>(lease.lease_id), dirs.shared.c_str());
    // A fabric that does not survive the credential change (RDMA descriptors) is opened again as
    // the user, and such a lease's cold start pays for it; shm and tcp keep the standby's head start.
    const bool reopen =
        executor::changes_user(lease.uid, lease.gid) && !domain->capabilities().survives_credential_change;
    if (reopen) {
      listener.reset();
      domain.reset();
    }
    executor::become_lease_user(lease.uid, lease.gid, lease.confined, lease.memory_limit_bytes);
    if (reopen) {
      domain = fabric::open_domain(fabric_config);
      listener = domain->listen(listen_host, 0);
    }
    if (!lease.confined)
      std::fprintf(stderr, "rfaas-executor: lease %llu not in a cgroup: limited by %s\n",
                   static_cast<unsigned long long>(lease.lease_id),
                   executor::limit_by_rlimits(lease.memory_limit_bytes, lease.max_tasks).c_str());
  } catch (const std::exception& e) {
    fail(protocol::ControlErrc::executor_failed, e.what());
  }

  std::unique_ptr<executor::FunctionLibrary> library;
  try {
    library = std::make_unique<executor::FunctionLibrary>(library_fd, lease.functions, lease.library_name, dependencies);
  } catch (const executor::LibraryError& e) {
    fail(protocol::ControlErrc::library_load_failed, e.what());
  }
  executor::ResidentRegions regions(*domain);
  std::vector<std::unique_ptr<executor::Worker>> pool;
  try {
    for (uint32_t i = 0; i < workers; ++i) {
      executor::WorkerConfig wc;
      wc.index = i;
      wc.workers = workers;
      wc.core = lease.cores[i];
      wc.slots = lease.params.slots;
      wc.input_capacity = lease.params.input_capacity;
      wc.output_capacity = lease.params.output_capacity;
      wc.hot_timeout_us = lease.params.hot_timeout_us;
      wc.finished_fd = finished_fd;
      pool.push_back(std::make_unique<executor::Worker>(*domain, wc, library->functions(), regions));
    }
  } catch (const std::exception& e) {
    fail(protocol::ControlErrc::executor_failed, e.what());
  }
  // The workers' endpoints made before the client hears we are ready: its connects do not wait
  // for them.
  try {
    listener->prepare(pool[0]->endpoint_config(), pool.size());
  } catch (const std::exception& e) {
    fail(protocol::ControlErrc::executor_failed, std::string("preparing the endpoints: ") + e.what());
  }
  // A function writing past its output faults in the slot's guard page: named to the daemon.
  executor::output_guard::set_function_names(lease.functions);
  executor::output_guard::install(g_reports);
  report(protocol::ReadyReport{listener->address()});

  // The client connects its endpoints in worker order. Only a hello signed with the lease's key
  // gets a worker (and learns where its slots are): another local process that reaches the
  // listener is turned away, and the wait goes on for the lease's client until the deadline.
  const auto accept_deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(lease.accept_timeout_ms);
  for (uint32_t i = 0; i < workers; ++i) {
    fabric::ConnectionData theirs;
    auto admit = [&](const fabric::ConnectionData& cd) {
      bool ok = cd.size == sizeof(protocol::WorkerHello);
      if (ok) {
        auto hello = fabric::read_connection_data<protocol::WorkerHello>(cd);
        ok = hello.version == protocol::kWorkerHelloVersion && hello.worker == i && hello.lease_id == lease.lease_id &&
             protocol::worker_hello_valid(hello, lease.hello_key);
      }
      if (!ok) std::fprintf(stderr, "rfaas-executor: lease %llu: refused a worker connection with a wrong hello\n",
                            static_cast<unsigned long long>(lease.lease_id));
      return ok;
    };
    try {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(accept_deadline - std::chrono::steady_clock::now());
      pool[i]->attach(listener->accept(pool[i]->endpoint_config(), fabric::make_connection_data(pool[i]->input_region()),
                                       theirs, std::max(left, std::chrono::milliseconds(1)), admit));
      auto hello = fabric::read_connection_data<protocol::WorkerHello>(theirs);
      pool[i]->set_ack_target({hello.ack_address, hello.ack_key, 0});
    } catch (const fabric::Error& e) {
      fail(protocol::ControlErrc::executor_failed, std::string("client endpoints did not connect: ") + e.what());
    }
  }
  for (auto& w : pool) w->start();
  auto pool_usage = [&pool] {
    protocol::Usage total;
    for (auto& w : pool) {
      auto u = w->usage();
      total.invocations += u.invocations;
      total.hot_polling_ns += u.hot_polling_ns;
      total.compute_ns += u.compute_ns;
    }
    return total;
  };

  // Wait for expiry, a signal, every client endpoint gone, or the daemon gone; the daemon may
  // move the expiry (a renewed lease). Blocks: nothing here runs beside the workers while they
  // serve. Signals interrupt poll(); the 1 s bound covers one arriving just before it.
  auto ended = protocol::ExecutorEnd::signal;  // why the lease ended here, for the daemon
  for (;;) {
    if (g_terminate.load()) break;
    int64_t left_ms = lease.expires_at_ms - static_cast<int64_t>(protocol::unix_now_ms());
    if (left_ms <= 0) {
      ended = protocol::ExecutorEnd::expired;
      break;
    }
    bool all_done = true;
    for (auto& w : pool) all_done &= w->finished();
    if (all_done) {
      ended = protocol::ExecutorEnd::clients_gone;
      break;
    }
    pollfd fds[2] = {{kDaemonSocket, POLLIN, 0}, {finished_fd, POLLIN, 0}};
    if (::poll(fds, 2, static_cast<int>(std::min<int64_t>(left_ms, 1000))) <= 0) continue;
    if (fds[1].revents) {
      uint64_t count;
      (void)!::read(finished_fd, &count, sizeof count);
    }
    if (!fds[0].revents) continue;
    try {
      int ignored = -1;
      auto text = net::recv_with_fd(kDaemonSocket, protocol::kMaxControlFrame, &ignored);
      if (ignored >= 0) ::close(ignored);
      protocol::ExecutorCommand command;
      try {
        command = protocol::ExecutorCommand::parse(text);
        using Type = protocol::ExecutorCommandType;
        if (command.type == Type::renew) lease.expires_at_ms = command.as<protocol::RenewCommand>().expires_at_ms;
        if (command.type == Type::usage)  // what the workers counted so far, for the client (through the daemon)
          report(protocol::UsageNowReport{command.as<protocol::UsageCommand>().seq, pool_usage()});
        if (command.type == Type::create_region) {
          // The daemon has checked the size against the lease's memory; the answer goes back
          // through it to the client.
          auto ask = command.as<protocol::CreateRegionCommand>();
          try {
            uint32_t id = regions.create(ask.bytes);
            auto r = regions.remote(id);
            report(protocol::RegionReport{ask.seq, {id, r.address, r.key, r.length}});
          } catch (const std::exception& e) {
            report(protocol::RegionFailedReport{ask.seq, e.what()});
          }
        }
      } catch (const protocol::MessageError& e) {  // the daemon's bug: said, and the lease goes on
        std::fprintf(stderr, "rfaas-executor: a command from the daemon refused: %s\n", e.what());
      }
    } catch (const net::NetError&) {
      ended = protocol::ExecutorEnd::daemon_gone;  // nobody would report this lease's end
      break;
    }
  }
  for (auto& w : pool) {
    w->stop();
    w->join();
  }
  report(protocol::FinalUsageReport{pool_usage(), ended});
  return 0;
}
