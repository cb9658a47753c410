// rfaas-broker end to end: real broker and executor daemon processes on loopback, a client
// leasing through the broker, the broker killed and restarted mid-lease, forged registrations,
// expiry and a lost node.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "auth/munge_credential.hpp"
#include "net/tcp_socket.hpp"
#include "protocol/broker_messages.hpp"
#include "protocol/control.hpp"
#include "rfaas/client.hpp"
#include "support/executor_daemon_process.hpp"

using namespace rfaas;
using namespace rfaas::testing;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

class BrokerProcess {
 public:
  BrokerProcess(const std::string& secret, const std::string& journal, const TempDir& dir, int n,
                const std::string& listen = "127.0.0.1:0", std::vector<std::string> extra = {}) {
    auto ready = (dir.path() / ("broker-ready-" + std::to_string(n))).string();
    std::vector<std::string> argv{RFAAS_BROKER, "--listen", listen, "--secret-file", secret, "--journal", journal,
                                  "--heartbeat-timeout-ms", "1500", "--ready-file", ready};
    argv.insert(argv.end(), extra.begin(), extra.end());
    process_ = std::make_unique<ChildProcess>(argv);
    address_ = wait_ready_file(ready, *process_);
  }
  ~BrokerProcess() {
    process_->kill(SIGTERM);
    process_->wait_for(10s);
  }
  const std::string& address() const { return address_; }
  ChildProcess& process() { return *process_; }

 private:
  std::unique_ptr<ChildProcess> process_;
  std::string address_;
};

nlohmann::json request(const std::string& broker, const std::string& text) {
  auto s = net::TcpStream::connect(net::HostPort::parse(broker), net::deadline_in(5s));
  s.send_frame(text.data(), text.size(), net::deadline_in(5s));
  auto reply = s.recv_frame(1 << 24, net::deadline_in(5s));
  return nlohmann::json::parse(reply.begin(), reply.end());
}

// A user's request to the broker, with this process's MUNGE credential for it.
// A request of this process's user, meant for the broker at `broker` (as the client library
// makes them).
std::string authenticated(const std::string& broker, const std::string& type,
                          const nlohmann::json& body = nlohmann::json::object()) {
  return protocol::make_message(type, auth::with_credential_for(broker, type, body));
}

nlohmann::json status(const std::string& broker) { return request(broker, authenticated(broker, "status"))["body"]; }

// Another user's credential for a request (munge(1) run as that uid), or "" when this process
// cannot become another user (not root).
std::string credential_of(uint32_t uid, const std::string& type, const nlohmann::json& body) {
  if (::geteuid() != 0) return "";
  std::string cmd = "setpriv --reuid=" + std::to_string(uid) + " --regid=" + std::to_string(uid) +
                    " --clear-groups munge -S '" + auth::client_socket() + "' -s " + protocol::request_digest(type, body);
  std::string out;
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[512];
    while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    ::pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}
constexpr uint32_t kNobody = 65534;

std::string node_state(const std::string& broker, const std::string& node) {
  auto st = status(broker);  // kept alive for the loop
  for (auto& n : st["nodes"])
    if (n["node"] == node) return n["state"];
  return "unknown";
}

bool eventually(const std::function<bool()>& f, std::chrono::milliseconds within = 5s) {
  auto end = Clock::now() + within;
  while (Clock::now() < end) {
    if (f()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return f();
}

DeployOptions echo_options() {
  DeployOptions o;
  o.library_path = RFAAS_FUNCTIONS_BASIC;
  o.functions = {"echo"};
  o.input_capacity = o.output_capacity = 4096;
  return o;
}

Errc broker_error(const std::string& broker, BrokerLeaseOptions o) {
  try {
    broker_lease(broker, o);
  } catch (const Error& e) {
    return e.code();
  }
  return Errc::ok;
}

// Invokes echo every 20 ms until an invocation fails (at most 10 s); returns how it failed.
Errc invoke_until_error(Executor& ex) {
  uint64_t v = 1, r = 0;
  size_t n;
  Errc e = Errc::ok;
  for (auto end = Clock::now() + 10s; e == Errc::ok && Clock::now() < end;) {
    e = ex.invoke(ex.function("echo"), &v, 8, &r, 8, &n, 2s);
    std::this_thread::sleep_for(20ms);
  }
  return e;
}

// `n` idle TCP connections to `address` from another loopback address (127.0.0.2), so that
// they are another peer than the test's own clients (127.0.0.1). Returns their descriptors.
std::vector<int> idle_connections(const std::string& address, int n) {
  auto hp = net::HostPort::parse(address);
  std::vector<int> fds;
  for (int i = 0; i < n; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in src{};
    src.sin_family = AF_INET;
    ::inet_pton(AF_INET, "127.0.0.2", &src.sin_addr);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) == 0);
    sockaddr_in dst{};
    dst.sin_family = AF_INET;
    dst.sin_port = htons(hp.port);
    ::inet_pton(AF_INET, hp.host.c_str(), &dst.sin_addr);
    ::connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst);  // in progress; completes in the backlog
    fds.push_back(fd);
  }
  return fds;
}

// How many of `fds` the peer has closed (read returns 0 or an error), waiting until at least
// `expected` are or `within` has passed (connections still in the backlog close later).
int closed_by_peer(const std::vector<int>& fds, int expected, std::chrono::milliseconds within) {
  std::vector<bool> closed(fds.size(), false);
  int count = 0;
  for (auto end = Clock::now() + within;;) {
    for (size_t i = 0; i < fds.size(); ++i) {
      if (closed[i]) continue;
      char b;
      ssize_t r = ::recv(fds[i], &b, 1, MSG_DONTWAIT);
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN)) {
        closed[i] = true;
        ++count;
      }
    }
    if (count >= expected || Clock::now() > end) return count;
    std::this_thread::sleep_for(50ms);
  }
}
// A broker and one executor daemon registered with it ("node-1", lending core 0), on loopback.
struct OneNode {
  TempDir dir;
  std::string secret = write_secret(dir.path() / "secret");
  BrokerProcess broker{secret, (dir.path() / "journal").string(), dir, 1};
  ExecutorDaemonProcess daemon{{"--cores", "0", "--broker", broker.address()}, secret, "node-1"};
  OneNode() { REQUIRE(eventually([&] { return node_state(broker.address(), "node-1") == "active"; })); }
};
}  // namespace

TEST_CASE("leases through the broker survive a broker crash, without double grants", "[broker]") {
  TempDir dir;
  auto secret = write_secret(dir.path() / "secret");
  auto journal = (dir.path() / "journal").string();
  auto broker = std::make_unique<BrokerProcess>(secret, journal, dir, 1);
  ExecutorDaemonProcess daemon({"--cores", "0,1", "--broker", broker->address()}, secret, "node-1");
  REQUIRE(eventually([&] { return node_state(broker->address(), "node-1") == "active"; }));

  BrokerLeaseOptions o;
  o.cores = 1;
  o.memory_bytes = 1 << 26;
  o.client = "test-client";
  auto grant = broker_lease(broker->address(), o);
  CHECK(grant.daemon_address == daemon.address());
  auto ex = Executor::deploy(grant, echo_options());
  uint64_t v = 42, r = 0;
  size_t n;
  REQUIRE(ex->invoke(ex->function("echo"), &v, 8, &r, 8, &n) == Errc::ok);

  // The broker dies mid-lease: the data path does not notice.
  broker->process().kill(SIGKILL);
  broker->process().wait_for(5s);
  REQUIRE(ex->invoke(ex->function("echo"), &v, 8, &r, 8, &n) == Errc::ok);

  // Restarted (at its address) from its journal: the lease is there, its core not granted again.
  std::string address = broker->address();
  broker = std::make_unique<BrokerProcess>(secret, journal, dir, 2, address);
  auto leases = status(broker->address())["leases"];
  REQUIRE(leases.size() == 1);
  CHECK(leases[0]["lease_id"] == grant.lease_id);
  REQUIRE(eventually([&] { return node_state(broker->address(), "node-1") == "active"; }));
  o.cores = 2;
  CHECK(broker_error(broker->address(), o) == Errc::no_capacity);
  o.cores = 1;
  auto second = broker_lease(broker->address(), o);
  CHECK(second.lease_id > grant.lease_id);
  broker_release(broker->address(), second.lease_id);

  // The lease ends at the executor: the daemon reports its usage, the broker frees the core.
  ex->release();
  REQUIRE(eventually([&] { return status(broker->address())["usage"].size() == 1; }));
  auto st = status(broker->address());
  CHECK(st["usage"][0]["lease_id"] == grant.lease_id);
  CHECK(st["usage"][0]["reported_by_executor"]["invocations"] == 2);
  CHECK(st["leases"].empty());
}

TEST_CASE("the broker refuses forged registrations and bad requests, and serves on", "[broker]") {
  TempDir dir;
  auto secret = write_secret(dir.path() / "secret");
  BrokerProcess broker(secret, (dir.path() / "journal").string(), dir, 1);
  protocol::NodeRegistration forged{"evil", "127.0.0.1:1", 64, 1 << 30, protocol::unix_now_ms(), std::string(64, 'a'), "register", {}};
  auto reply = request(broker.address(), protocol::make_message("register", forged));
  CHECK(reply["type"] == "error");
  CHECK(reply["body"]["code"] == "bad_token");
  // Signed with another secret.
  protocol::ClusterSecret other(std::vector<uint8_t>(32, 9));
  forged.sign(other);
  CHECK(request(broker.address(), protocol::make_message("register", forged))["body"]["code"] == "bad_token");
  // Garbage, unknown types, impossible leases.
  CHECK(request(broker.address(), "not json")["body"]["code"] == "malformed");
  CHECK(request(broker.address(), protocol::make_message("launch"))["body"]["code"] == "malformed");
  std::string deep = R"({"type":"status","version":1,"body":)" + std::string(30000, '[') + std::string(30000, ']') + "}";
  CHECK(request(broker.address(), deep)["body"]["code"] == "malformed");  // refused before parsing
  CHECK(request(broker.address(), protocol::make_message("lease", {{"cores", 0}}))["body"]["code"] == "malformed");
  BrokerLeaseOptions o;
  CHECK(broker_error(broker.address(), o) == Errc::no_capacity);  // no nodes at all
  CHECK(status(broker.address())["nodes"].empty());
  // Signed with the cluster secret itself instead of its node key.
  auto cluster = protocol::ClusterSecret::load(secret);
  protocol::NodeRegistration real{"n1", "127.0.0.1:1", 2, 1 << 30, protocol::unix_now_ms(), "", "register", {}, 1, 1};
  real.mac = cluster.sign(real.canonical());
  CHECK(request(broker.address(), protocol::make_message("register", real))["body"]["code"] == "bad_token");
  // Genuine, but for another message: a heartbeat is no credential for draining the node or
  // ending its leases, and a usage report is bound to its lease.
  real.sign(cluster);
  REQUIRE(request(broker.address(), protocol::make_message("register", real))["type"] == "registered");
  auto drain = request(broker.address(), protocol::make_message("drain", {{"registration", real}}));
  CHECK(drain["body"]["code"] == "bad_token");
  CHECK(drain["body"]["message"].get<std::string>().find("is for 'register', not 'drain'") != std::string::npos);
  real.purpose = "lease_usage:5";
  real.sign(cluster);
  CHECK(request(broker.address(), protocol::make_message("lease_usage", {{"registration", real}, {"lease_id", 6},
                                                                         {"usage", protocol::Usage{}}}))["body"]["code"] ==
        "bad_token");
  // A usage report is signed whole: whose usage it is cannot be changed on the way.
  const nlohmann::json usage = protocol::Usage{}, served = {{"cores", 1}, {"memory_bytes", 1}, {"served_ms", 5}, {"uid", 1001}};
  real.purpose = protocol::usage_report_purpose(6, usage, served, "released");
  real.sequence = 2;
  real.sign(cluster);
  nlohmann::json changed = served;
  changed["uid"] = 1002;
  CHECK(request(broker.address(), protocol::make_message("lease_usage", {{"registration", real}, {"lease_id", 6}, {"usage", usage},
                                                                         {"served", changed}, {"reason", "released"}}))["body"]["code"] ==
        "bad_token");
  CHECK(request(broker.address(), protocol::make_message("lease_usage", {{"registration", real}, {"lease_id", 6}, {"usage", usage},
                                                                         {"served", served}, {"reason", "released"}}))["type"] ==
        "recorded");
  CHECK(node_state(broker.address(), "n1") == "active");
  CHECK(broker.process().wait_for(0ms) == std::nullopt);  // still running
}

TEST_CASE("leases expire; a silent node is lost, and its leases stay held and served until it returns", "[broker]") {
  TempDir dir;
  auto secret = write_secret(dir.path() / "secret");
  BrokerProcess broker(secret, (dir.path() / "journal").string(), dir, 1);
  ExecutorDaemonProcess daemon({"--cores", "0,1", "--broker", broker.address()}, secret, "node-1");
  REQUIRE(eventually([&] { return node_state(broker.address(), "node-1") == "active"; }));
  BrokerLeaseOptions o;
  o.duration = 1s;
  broker_lease(broker.address(), o);
  CHECK(status(broker.address())["leases"].size() == 1);
  CHECK(eventually([&] { return status(broker.address())["leases"].empty(); }, 5s));

  o.duration = 60s;
  auto grant = broker_lease(broker.address(), o);
  auto ex = Executor::deploy(grant, echo_options());
  uint64_t v = 7, r = 0;
  size_t n = 0;
  daemon.process().kill(SIGSTOP);  // alive but silent: its executor goes on serving
  CHECK(eventually([&] { return node_state(broker.address(), "node-1") == "lost"; }, 6s));
  // The broker and the node agree: the lease is held at both ends (it was revoked here while
  // the executor kept serving it), and the node's other core is granted to nobody meanwhile.
  REQUIRE(status(broker.address())["leases"].size() == 1);
  CHECK(status(broker.address())["leases"][0]["lease_id"] == grant.lease_id);
  CHECK(ex->invoke(ex->function("echo"), &v, 8, &r, 8, &n, 2s) == Errc::ok);
  CHECK(r == 7);
  CHECK(broker_error(broker.address(), BrokerLeaseOptions{}) == Errc::no_capacity);
  daemon.process().kill(SIGCONT);
  CHECK(eventually([&] { return node_state(broker.address(), "node-1") == "active"; }, 6s));
  CHECK(status(broker.address())["leases"].size() == 1);
  r = 0;
  CHECK(ex->invoke(ex->function("echo"), &v, 8, &r, 8, &n, 2s) == Errc::ok);
  CHECK(r == 7);
  CHECK(broker_error(broker.address(), BrokerLeaseOptions{}) == Errc::ok);  // it takes leases again
}

TEST_CASE("a lost node that comes back without its leases (restarted) has them ended at the broker", "[broker]") {
  TempDir dir;
  auto secret = write_secret(dir.path() / "secret");
  BrokerProcess broker(secret, (dir.path() / "journal").string(), dir, 1);
  auto daemon = std::make_unique<ExecutorDaemonProcess>(std::vector<std::string>{"--cores", "0,1", "--broker",
                                                                                 broker.address()},
                                                        secret, "node-1");
  REQUIRE(eventually([&] { return node_state(broker.address(), "node-1") == "active"; }));
  BrokerLeaseOptions o;
  o.duration = 60s;
  auto grant = broker_lease(broker.address(), o);
  auto ex = Executor::deploy(grant, echo_options());
  daemon->process().kill(SIGSTOP);
  REQUIRE(eventually([&] { return node_state(broker.address(), "node-1") == "lost"; }, 6s));
  CHECK(status(broker.address())["leases"].size() == 1);  // held while the node may serve it
  daemon->process().kill(SIGKILL);  // the node reboots: what it served is gone with it
  daemon->process().kill(SIGCONT);
  daemon.reset();
  ex.reset();
  ExecutorDaemonProcess restarted({"--cores", "0,1", "--broker", broker.address()}, secret, "node-1");
  CHECK(eventually([&] { return node_state(broker.address(), "node-1") == "active"; }, 6s));
  CHECK(eventually([&] { return status(broker.address())["leases"].empty(); }, 6s));
  CHECK(broker_error(broker.address(), BrokerLeaseOptions{}) == Errc::ok);
}

TEST_CASE("an executor daemon shutting down drains its node at the broker", "[broker]") {
  TempDir dir;
  auto secret = write_secret(dir.path() / "secret");
  BrokerProcess broker(secret, (dir.path() / "journal").string(), dir, 1);
  auto daemon = std::make_unique<ExecutorDaemonProcess>(std::vector<std::string>{"--cores", "0", "--broker",
                                                                                 broker.address()},
                                                        secret, "node-1");
  REQUIRE(eventually([&] { return node_state(broker.address(), "node-1") == "active"; }));
  auto grant = broker_lease(broker.address(), BrokerLeaseOptions{});
  auto ex = Executor::deploy(grant, echo_options());
  daemon->process().kill(SIGTERM);  // what Slurm sends on scancel
  CHECK(invoke_until_error(*ex) == Errc::lease_revoked);
  CHECK(eventually([&] { return node_state(broker.address(), "node-1") == "draining"; }));
  CHECK(eventually([&] { return status(broker.address())["leases"].empty(); }));
  CHECK(broker_error(broker.address(), BrokerLeaseOptions{}) == Errc::no_capacity);  // nothing placed there
}

TEST_CASE("a lease renewed through the broker outlives its first expiry", "[broker]") {
  TempDir dir;
  auto secret = write_secret(dir.path() / "secret");
  BrokerProcess broker(secret, (dir.path() / "journal").string(), dir, 1);
  ExecutorDaemonProcess daemon({"--cores", "0", "--broker", broker.address()}, secret, "node-1");
  REQUIRE(eventually([&] { return node_state(broker.address(), "node-1") == "active"; }));
  BrokerLeaseOptions o;
  o.memory_bytes = 1 << 26;
  o.duration = 2s;
  auto grant = broker_lease(broker.address(), o);
  CHECK(grant.node == "node-1");
  auto ex = Executor::deploy(grant, echo_options());

  auto renewed = broker_renew(broker.address(), grant, 20s);
  CHECK(renewed.lease_id == grant.lease_id);
  CHECK(renewed.expires_at_ms >= grant.expires_at_ms + 15'000);
  CHECK(status(broker.address())["leases"][0]["expires_at_ms"] == renewed.expires_at_ms);

  // A token altered to claim more time is refused by the broker and by the daemon.
  auto forged = renewed;
  auto t = nlohmann::json::parse(forged.token);
  t["expires_at_ms"] = t["expires_at_ms"].get<int64_t>() + 3'600'000;
  forged.token = t.dump();
  try {
    broker_renew(broker.address(), forged, 20s);
    FAIL("a forged token was renewed");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::bad_token);
  }
  try {
    ex->renew(forged);
    FAIL("the daemon accepted a forged token");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::bad_token);
  }

  ex->renew(renewed);
  CHECK(ex->expires_at_ms() == renewed.expires_at_ms);
  std::this_thread::sleep_for(2500ms);  // past the first expiry
  uint64_t v = 7, r = 0;
  size_t n;
  CHECK(ex->invoke(ex->function("echo"), &v, 8, &r, 8, &n) == Errc::ok);
  CHECK(r == 7);
  CHECK(status(broker.address())["leases"].size() == 1);

  // Renewing what was released is refused.
  ex->release();
  REQUIRE(eventually([&] { return status(broker.address())["leases"].empty(); }));
  try {
    broker_renew(broker.address(), renewed, 20s);
    FAIL("a released lease was renewed");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::lease_expired);
  }
}

TEST_CASE("after a revocation the client leases again on another node", "[broker]") {
  TempDir dir;
  auto secret = write_secret(dir.path() / "secret");
  BrokerProcess broker(secret, (dir.path() / "journal").string(), dir, 1);
  auto a = std::make_unique<ExecutorDaemonProcess>(std::vector<std::string>{"--cores", "0", "--broker", broker.address()},
                                                   secret, "node-a");
  ExecutorDaemonProcess b({"--cores", "1", "--broker", broker.address()}, secret, "node-b");
  REQUIRE(eventually([&] {
    return node_state(broker.address(), "node-a") == "active" && node_state(broker.address(), "node-b") == "active";
  }));
  BrokerLeaseOptions o;
  o.memory_bytes = 1 << 26;
  auto grant = broker_lease(broker.address(), o);
  REQUIRE(grant.node == "node-a");  // ties go to the first name
  auto ex = Executor::deploy(grant, echo_options());
  a->process().kill(SIGTERM);
  REQUIRE(invoke_until_error(*ex) == Errc::lease_revoked);
  uint64_t v = 3, r = 0;
  size_t n;

  o.avoid_nodes = {grant.node};
  auto again = broker_lease(broker.address(), o);
  CHECK(again.node == "node-b");
  CHECK(again.daemon_address == b.address());
  auto ex2 = Executor::deploy(again, echo_options());
  r = 0;
  CHECK(ex2->invoke(ex2->function("echo"), &v, 8, &r, 8, &n) == Errc::ok);
  CHECK(r == 3);
}

TEST_CASE("a deploy the daemon refuses gives the broker's lease back at once", "[broker]") {
  OneNode cluster;
  auto& broker = cluster.broker;
  BrokerLeaseOptions o;
  o.memory_bytes = 1 << 26;
  o.duration = 60s;  // far longer than the test: only the daemon's report frees the core
  auto fails_to_deploy = [&](DeployOptions d, Errc expected) {
    auto grant = broker_lease(broker.address(), o);  // the node's one core
    try {
      Executor::deploy(grant, d);
      FAIL("deployed");
    } catch (const Error& e) {
      CHECK(e.code() == expected);
    }
    CHECK(status(broker.address())["leases"].empty());
    return grant;
  };
  auto bad_name = echo_options();
  bad_name.functions = {"echo", "not_in_this_library"};
  auto spent = fails_to_deploy(bad_name, Errc::library_load_failed);    // refused by the executor
  auto too_many = echo_options();
  too_many.workers = 2;
  fails_to_deploy(too_many, Errc::invalid_argument);                   // refused before any reservation
  // The refused token is spent: it cannot deploy on the core the broker now sees free.
  try {
    Executor::deploy(spent, echo_options());
    FAIL("a spent token deployed");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::lease_expired);
  }
  auto grant = broker_lease(broker.address(), o);
  auto ex = Executor::deploy(grant, echo_options());
  uint64_t v = 11, r = 0;
  size_t n;
  CHECK(ex->invoke(ex->function("echo"), &v, 8, &r, 8, &n) == Errc::ok);
  CHECK(r == 11);
  // A second deploy of a lease being served is refused and ends nothing.
  try {
    Executor::deploy(grant, echo_options());
    FAIL("deployed twice");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::lease_in_use);
  }
  CHECK(status(broker.address())["leases"].size() == 1);
  CHECK(ex->invoke(ex->function("echo"), &v, 8, &r, 8, &n) == Errc::ok);
}

// What an MPI job does between two rfaas_mpi_init: release at the daemon, then at the broker,
// then lease again at once. The core must be free at the broker by then, and a heartbeat that
// was on its way while the lease ended (signed before the end report) must not take it back.
TEST_CASE("a lease ended at its node is free at the broker when its client hears it; a late heartbeat does not take it back", "[broker]") {
  OneNode cluster;
  auto& broker = cluster.broker;
  BrokerLeaseOptions o;
  o.memory_bytes = 1 << 26;
  o.duration = 60s;  // far longer than the test: only the daemon's report frees the core
  uint64_t v = 5, r = 0;
  size_t n;
  for (int round = 0; round < 20; ++round) {
    INFO("round " << round);
    auto grant = broker_lease(broker.address(), o);  // the node's one core, free again
    auto ex = Executor::deploy(grant, echo_options());
    REQUIRE(ex->invoke(ex->function("echo"), &v, 8, &r, 8, &n) == Errc::ok);
    ex->release();
    broker_release(broker.address(), grant.lease_id);
  }

  auto grant = broker_lease(broker.address(), o);
  auto ex = Executor::deploy(grant, echo_options());
  nlohmann::json node, st = status(broker.address());  // kept alive for the loop
  for (auto& nd : st["nodes"])
    if (nd["node"] == "node-1") node = nd;
  REQUIRE(node.is_object());
  // The daemon's heartbeat as it would sign it now, serving the lease; it arrives late.
  protocol::NodeRegistration late{"node-1", node["address"], node["cores"], node["memory_bytes"],
                                  protocol::unix_now_ms(), "", "register",
                                  {{grant.lease_id, 1, o.memory_bytes, static_cast<uint32_t>(::getuid())}},
                                  node["incarnation"], node["sequence"].get<uint64_t>() + 500};
  // (Numbered as the daemon's next messages: ahead of its own, within the broker's window.)
  late.sign(protocol::ClusterSecret::load(cluster.secret));
  std::this_thread::sleep_for(5ms);  // the end report is signed after it
  ex->release();
  broker_release(broker.address(), grant.lease_id);
  REQUIRE(request(broker.address(), protocol::make_message("register", late))["type"] == "registered");
  CHECK(node_state(broker.address(), "node-1") == "active");
  CHECK(status(broker.address())["nodes"][0]["ending"] == 0);
  CHECK(broker_error(broker.address(), o) == Errc::ok);  // the core is leased again at once
}

TEST_CASE("the C API leases through the broker, renews and releases", "[broker][c-api]") {
  OneNode cluster;
  auto& broker = cluster.broker;
  ChildProcess c({RFAAS_C_BROKER_CLIENT, RFAAS_FUNCTIONS_BASIC}, {{"RFAAS_BROKER", broker.address()}});
  CHECK(c.exit_code(60s) == 0);
  CHECK(status(broker.address())["leases"].empty());
}

// Users' requests carry MUNGE credentials: without one, with a forged, replayed or misbound one,
// refused (not_authenticated); another user may neither renew nor release the lease, nor see it.
TEST_CASE("leases belong to the user MUNGE authenticated; others are refused by name", "[broker][auth]") {
  TempDir dir;
  auto secret = write_secret(dir.path() / "secret");
  BrokerProcess broker(secret, (dir.path() / "journal").string(), dir, 1, "127.0.0.1:0", {"--max-cores-per-user", "1"});
  ExecutorDaemonProcess daemon({"--cores", "0,1", "--broker", broker.address()}, secret, "node-1");
  REQUIRE(eventually([&] { return node_state(broker.address(), "node-1") == "active"; }));
  protocol::LeaseAsk ask;
  ask.memory_bytes = 1 << 26;
  ask.duration_ms = 60'000;
  ask.client = "intruder";
  auto code = [](const nlohmann::json& reply) { return reply["body"].value("code", std::string(reply["type"])); };

  // No credential, a forged one, one for another request, and the same request twice.
  CHECK(code(request(broker.address(), protocol::make_message("lease", ask))) == "not_authenticated");
  nlohmann::json forged = ask;
  forged["credential"] = "MUNGE:AwQFAAD0kO1n1x9TXZJ0ZSLdYs5bAAAAAAAAAA==:";
  CHECK(code(request(broker.address(), protocol::make_message("lease", forged))) == "not_authenticated");
  nlohmann::json other = ask;
  other["cores"] = 2;
  nlohmann::json misbound = ask;
  misbound["credential"] = auth::with_credential("lease", other)["credential"];
  auto reply = request(broker.address(), protocol::make_message("lease", misbound));
  CHECK(code(reply) == "not_authenticated");
  CHECK(reply["body"]["message"].get<std::string>().find("another request") != std::string::npos);
  std::string once = authenticated(broker.address(), "lease", ask);
  REQUIRE(request(broker.address(), once)["type"] == "lease_granted");
  reply = request(broker.address(), once);  // the same bytes again: munged has seen the credential
  CHECK(code(reply) == "not_authenticated");
  CHECK(reply["body"]["message"].get<std::string>().find("replayed") != std::string::npos);
  // That grant was ours (root's or the test's user): one core, the per-user quota.
  auto st = status(broker.address());
  REQUIRE(st["leases"].size() == 1);
  CHECK(st["leases"][0]["uid"] == ::geteuid());
  const uint64_t first = st["leases"][0]["lease_id"];
  BrokerLeaseOptions o;
  o.memory_bytes = 1 << 26;
  CHECK(broker_error(broker.address(), o) == Errc::invalid_argument);  // policy: 1 core per user
  broker_release(broker.address(), first);

  // The owner's lease, deployed and invoked; another user tries to take it over.
  auto grant = broker_lease(broker.address(), o);
  auto ex = Executor::deploy(grant, echo_options());
  if (::geteuid() != 0) {
    WARN("not root: the other-user half needs munge(1) run as another uid");
    return;
  }
  nlohmann::json release = {{"lease_id", grant.lease_id}, {protocol::kAudienceField, broker.address()}};
  release["credential"] = credential_of(kNobody, "release", release);
  REQUIRE(release["credential"].get<std::string>().rfind("MUNGE:", 0) == 0);
  reply = request(broker.address(), protocol::make_message("release", release));
  CHECK(code(reply) == "not_permitted");
  nlohmann::json renew = protocol::LeaseRenewAsk{nlohmann::json::parse(grant.token).get<protocol::LeaseToken>(), 60'000};
  renew[protocol::kAudienceField] = broker.address();
  renew["credential"] = credential_of(kNobody, "renew", renew);
  CHECK(code(request(broker.address(), protocol::make_message("renew", renew))) == "not_permitted");
  nlohmann::json their_status = {{protocol::kAudienceField, broker.address()}};
  their_status["credential"] = credential_of(kNobody, "status", their_status);
  auto theirs = request(broker.address(), protocol::make_message("status", their_status));
  REQUIRE(theirs["type"] == "status");
  CHECK(theirs["body"]["leases"].empty());  // not their lease to see
  CHECK(theirs["body"]["nodes"].size() == 1);
  // The owner's lease is untouched: held at the broker, serving.
  CHECK(status(broker.address())["leases"].size() == 1);
  uint64_t v = 9, r = 0;
  size_t n;
  CHECK(ex->invoke(ex->function("echo"), &v, 8, &r, 8, &n) == Errc::ok);
  CHECK(r == 9);
  auto renewed = broker_renew(broker.address(), grant, 30s);  // the owner may
  CHECK(renewed.lease_id == grant.lease_id);
  ex->release();
  broker_release(broker.address(), grant.lease_id);
  CHECK(status(broker.address())["leases"].empty());
}

TEST_CASE("an operator drains and resumes a node with rfaas-ctl", "[broker]") {
  TempDir dir;
  auto secret = write_secret(dir.path() / "secret");
  BrokerProcess broker(secret, (dir.path() / "journal").string(), dir, 1);
  ExecutorDaemonProcess daemon({"--cores", "0,1", "--broker", broker.address()}, secret, "node-1");
  REQUIRE(eventually([&] { return node_state(broker.address(), "node-1") == "active"; }));
  BrokerLeaseOptions o;
  o.memory_bytes = 1 << 26;
  auto grant = broker_lease(broker.address(), o);
  auto ex = Executor::deploy(grant, echo_options());

  auto ctl = [&](const std::string& args, const std::string& as = "") {
    std::string cmd = as + std::string(RFAAS_CTL) + " --broker " + broker.address() + " " + args + " >/dev/null 2>&1";
    return std::system(cmd.c_str());
  };
  CHECK(ctl("drain") != 0);  // no node
  // Operators authenticate with MUNGE: a user who is not one is refused (not_permitted).
  if (::geteuid() == 0) {
    CHECK(ctl("drain node-1", "setpriv --reuid=65534 --regid=65534 --clear-groups ") != 0);
    CHECK(ctl("status", "setpriv --reuid=65534 --regid=65534 --clear-groups ") == 0);  // status is anyone's
  }
  CHECK(node_state(broker.address(), "node-1") == "active");
  REQUIRE(ctl("drain node-1") == 0);
  CHECK(node_state(broker.address(), "node-1") == "drained");
  CHECK(broker_error(broker.address(), o) == Errc::no_capacity);
  // Still drained after heartbeats; the running lease goes on.
  std::this_thread::sleep_for(1s);
  CHECK(node_state(broker.address(), "node-1") == "drained");
  uint64_t v = 5, r = 0;
  size_t n;
  CHECK(ex->invoke(ex->function("echo"), &v, 8, &r, 8, &n) == Errc::ok);
  CHECK(ctl("drain no-such-node") != 0);

  REQUIRE(ctl("resume node-1") == 0);
  CHECK(node_state(broker.address(), "node-1") == "active");
  auto second = broker_lease(broker.address(), o);
  CHECK(second.node == "node-1");
  broker_release(broker.address(), second.lease_id);
}

TEST_CASE("the broker's policy caps durations and cores before any arithmetic, and it serves on", "[broker]") {
  TempDir dir;
  auto secret = write_secret(dir.path() / "secret");
  BrokerProcess broker(secret, (dir.path() / "journal").string(), dir, 1, "127.0.0.1:0",
                       {"--max-lease-ms", "60000", "--max-cores-per-lease", "1"});
  ExecutorDaemonProcess daemon({"--cores", "0,1", "--broker", broker.address()}, secret, "node-1");
  REQUIRE(eventually([&] { return node_state(broker.address(), "node-1") == "active"; }));
  auto ask = [&](uint32_t cores, int64_t duration_ms) {
    protocol::LeaseAsk a;
    a.cores = cores;
    a.memory_bytes = 1 << 26;
    a.duration_ms = duration_ms;
    a.client = "policy-test";
    return request(broker.address(), authenticated(broker.address(), "lease", a));
  };
  // Too long (up to INT64_MAX, which overflowed the expiry before), too many cores: named, no grant.
  for (int64_t d : {int64_t{60'001}, int64_t{1'000'000'000'000'000}, INT64_MAX}) {
    auto reply = ask(1, d);
    CHECK(reply["type"] == "error");
    CHECK(reply["body"]["code"] == "policy");
  }
  CHECK(ask(2, 1000)["body"]["code"] == "policy");
  CHECK(status(broker.address())["leases"].empty());
  // Within the policy: granted; a renewal is held to the same cap.
  BrokerLeaseOptions o;
  o.cores = 1;
  o.memory_bytes = 1 << 26;
  o.duration = 60s;
  auto grant = broker_lease(broker.address(), o);
  try {
    broker_renew(broker.address(), grant, std::chrono::milliseconds(INT64_MAX));
    FAIL("a renewal past the policy was granted");
  } catch (const Error& e) {
    CHECK(e.code() == Errc::invalid_argument);
    CHECK(std::string(e.what()).find("duration_ms must be 1..60000") != std::string::npos);
  }
  auto renewed = broker_renew(broker.address(), grant, 30s);
  CHECK(renewed.expires_at_ms >= grant.expires_at_ms);
  CHECK(renewed.expires_at_ms <= protocol::unix_now_ms() + 60'000);
  broker_release(broker.address(), grant.lease_id);
  CHECK(status(broker.address())["leases"].empty());
  CHECK(broker.process().wait_for(0ms) == std::nullopt);  // still running
}

// Timing bounds of the flood cases are the Release build's. Under AddressSanitizer the daemons
// admit and close connections several times slower (on a 2-core host about 800 a second, seen
// with the code of 92cf956 and after alike), so there they are checked with room: the cap and
// the service are what the sanitizer build checks, the speed is the Release build's.
#if defined(__SANITIZE_ADDRESS__)
constexpr int kSlowdown = 3;
#else
constexpr int kSlowdown = 1;
#endif

// 2,000 idle connections to each daemon from one peer: both cap that peer (256 here by default),
// close the rest at once, and keep serving a legitimate client from another address.
TEST_CASE("a flood of idle connections costs only its own peer; both daemons serve on", "[broker]") {
  TempDir dir;
  auto secret = write_secret(dir.path() / "secret");
  BrokerProcess broker(secret, (dir.path() / "journal").string(), dir, 1);
  ExecutorDaemonProcess daemon({"--cores", "0", "--broker", broker.address()}, secret, "node-1");
  REQUIRE(eventually([&] { return node_state(broker.address(), "node-1") == "active"; }));
  auto to_broker = idle_connections(broker.address(), 2000);
  auto to_daemon = idle_connections(daemon.address(), 2000);
  // All but the last 256 per daemon are pushed out at once (a stranger past its peer's cap
  // pushes out that peer's oldest), and those that stay are cut off when their first message
  // is not there within 2 s: well before the control timeout (10 s).
  CHECK(closed_by_peer(to_broker, 2000 - 256, kSlowdown * 1500ms) >= 2000 - 256);
  CHECK(closed_by_peer(to_daemon, 2000 - 256, kSlowdown * 1500ms) >= 2000 - 256);
  CHECK(closed_by_peer(to_broker, 2000, 4s) == 2000);
  CHECK(closed_by_peer(to_daemon, 2000, 4s) == 2000);
  BrokerLeaseOptions o;
  o.memory_bytes = 1 << 26;
  auto grant = broker_lease(broker.address(), o);
  auto ex = Executor::deploy(grant, echo_options());
  uint64_t v = 42, r = 0;
  size_t n = 0;
  CHECK(ex->invoke(ex->function("echo"), &v, sizeof v, &r, sizeof r, &n) == Errc::ok);
  CHECK(r == 42);
  ex->release();
  broker_release(broker.address(), grant.lease_id);
  for (int fd : to_broker) ::close(fd);
  for (int fd : to_daemon) ::close(fd);
  CHECK(broker.process().wait_for(0ms) == std::nullopt);
  CHECK(daemon.alive());
  // The peer's share comes back once its connections are gone.
  CHECK(eventually([&] {
    auto again = idle_connections(broker.address(), 1);
    bool open = closed_by_peer(again, 1, 300ms) == 0;
    ::close(again[0]);
    return open;
  }, 10s));
}

// The journal on a small tmpfs that fills up: a change that cannot be recorded is refused and
// nothing of it is applied or left in the file; once there is room again the broker records
// on, and a restart (after kill -9) replays exactly what was acknowledged.
TEST_CASE("a full disk refuses the change, applies nothing, and leaves the journal whole", "[broker]") {
  TempDir dir;
  auto fs = dir.path() / "jfs";
  std::filesystem::create_directory(fs);
  if (::mount("tmpfs", fs.c_str(), "tmpfs", 0, "size=256k,mode=0700") != 0) {
    WARN("cannot mount a tmpfs here (" << std::strerror(errno) << "): the full-disk case is not run");
    return;
  }
  struct Unmount {
    std::filesystem::path p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{fs};
  auto secret = write_secret(dir.path() / "secret");
  auto journal = (fs / "journal").string();
  auto broker = std::make_unique<BrokerProcess>(secret, journal, dir, 1);
  ExecutorDaemonProcess daemon({"--cores", "0,1", "--broker", broker->address()}, secret, "node-1");
  REQUIRE(eventually([&] { return node_state(broker->address(), "node-1") == "active"; }));
  BrokerLeaseOptions o;
  o.memory_bytes = 1 << 26;
  o.duration = 600s;
  std::set<uint64_t> held;  // acknowledged grants not acknowledged released
  held.insert(broker_lease(broker->address(), o).lease_id);
  // Fill the file system.
  {
    std::ofstream filler(fs / "filler", std::ios::binary);
    std::vector<char> block(4096, 'f');
    while (filler.write(block.data(), block.size())) {
    }
  }
  // Lease and release until the journal's last page is full too: the first refusal is the test.
  bool refused = false;
  for (int i = 0; i < 200 && !refused; ++i) {
    try {
      auto g = broker_lease(broker->address(), o);
      held.insert(g.lease_id);
      broker_release(broker->address(), g.lease_id);
      held.erase(g.lease_id);
    } catch (const Error& e) {
      refused = std::string(e.what()).find("cannot record") != std::string::npos;
      INFO(e.what());
      CHECK(refused);
    }
  }
  REQUIRE(refused);
  auto leases_shown = [&] {
    auto st = status(broker->address());  // kept alive for the loop
    std::set<uint64_t> ids;
    for (auto& l : st["leases"]) ids.insert(l["lease_id"].get<uint64_t>());
    return ids;
  };
  CHECK(leases_shown() == held);  // nothing of the refused change applied
  // Room again: the broker records on.
  std::filesystem::remove(fs / "filler");
  // (A release the full disk refused goes through now and frees its core.)
  for (auto it = std::next(held.begin()); it != held.end();) {
    broker_release(broker->address(), *it);
    it = held.erase(it);
  }
  o.cores = 1;
  auto later = broker_lease(broker->address(), o);
  held.insert(later.lease_id);
  // kill -9 and restart: the journal replays whole, with exactly the acknowledged leases.
  std::string address = broker->address();
  broker->process().kill(SIGKILL);
  broker->process().wait_for(5s);
  broker = std::make_unique<BrokerProcess>(secret, journal, dir, 2, address);
  CHECK(leases_shown() == held);
}

namespace {

// A user of this host for one test (useradd), removed after it.
class TestUser {
 public:
  TestUser() : name_("rfaas-t" + std::to_string(::getpid())) {
    std::string cmd = "useradd --no-create-home --user-group --shell /usr/sbin/nologin " + name_ + " 2>/dev/null";
    if (std::system(cmd.c_str()) != 0) return;
    if (passwd* pw = ::getpwnam(name_.c_str())) {
      uid_ = pw->pw_uid;
      gid_ = pw->pw_gid;
      made_ = true;
    }
  }
  ~TestUser() {
    if (made_) std::system(("userdel " + name_ + " 2>/dev/null").c_str());
  }
  bool made() const { return made_; }
  uint32_t uid() const { return uid_; }
  uint32_t gid() const { return gid_; }

  // lease_as_user run as this user; its "command -> result" lines.
  std::map<std::string, std::string> lease(const std::string& broker, const std::vector<std::string>& commands) const {
    std::string cmd = "setpriv --reuid=" + std::to_string(uid_) + " --regid=" + std::to_string(gid_) +
                      " --init-groups env RFAAS_MUNGE_SOCKET='" + auth::client_socket() + "' " + RFAAS_LEASE_AS_USER +
                      " " + broker + " " + RFAAS_TEST_PROBES;
    for (auto& c : commands) cmd += " '" + c + "'";
    std::map<std::string, std::string> out;
    if (FILE* p = ::popen(cmd.c_str(), "r")) {
      char line[8192];
      while (std::fgets(line, sizeof line, p)) {
        std::string l(line);
        while (!l.empty() && l.back() == '\n') l.pop_back();
        auto arrow = l.find(" -> ");
        if (arrow != std::string::npos) out[l.substr(0, arrow)] = l.substr(arrow + 4);
      }
      ::pclose(p);
    }
    return out;
  }

 private:
  std::string name_;
  uint32_t uid_ = 0, gid_ = 0;
  bool made_ = false;
};

bool process_gone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string pid_field, comm, state;
  if (!(stat >> pid_field >> comm >> state)) return true;
  return state == "Z" || state == "X";  // exited, only its entry left
}

// Where most "[users]" tests start, after their root check: a user made for the test, and a
// broker in a folder of `mode` (others read it; 0777: they may write it too).
struct UserAndBroker {
  explicit UserAndBroker(mode_t mode = 0755, std::vector<std::string> broker_args = {})
      : secret(private_secret(dir, mode)),
        broker(secret, (dir.path() / "journal").string(), dir, 1, "127.0.0.1:0", std::move(broker_args)) {
    REQUIRE(user.made());
  }
  // And one executor daemon lending core 0, active at the broker.
  std::unique_ptr<ExecutorDaemonProcess> node() {
    auto d = std::make_unique<ExecutorDaemonProcess>(std::vector<std::string>{"--cores", "0", "--broker", broker.address()},
                                                     secret, "node-1");
    REQUIRE(eventually([&] { return node_state(broker.address(), "node-1") == "active"; }));
    return d;
  }
  TestUser user;
  TempDir dir;
  std::string secret;
  BrokerProcess broker;

 private:
  static std::string private_secret(const TempDir& dir, mode_t mode) {
    ::chmod(dir.path().c_str(), mode);
    return write_secret(dir.path() / "secret");
  }
};

}  // namespace

// The daemon (root, as slurmd) runs each lease's executor as the leasing user, in a cgroup of
// the lease: the user's code cannot read the cluster secret or the daemon's environment, nor
// signal the daemon or another lease's executor; what it forks dies with the lease; past the
// lease's memory the kernel ends that lease (memory_exceeded), and the node serves on.
TEST_CASE("a lease's code runs as its user, confined to the lease", "[broker][users]") {
  if (::geteuid() != 0) {
    WARN("not root: the daemon cannot run executors as other users here");
    return;
  }
  TestUser user;
  REQUIRE(user.made());
  TempDir dir("/var/tmp");  // outside the lease's private /tmp: the secret's mode is what is tested
  ::chmod(dir.path().c_str(), 0755);  // the secret is protected by its own mode, not by a folder
  auto secret = write_secret(dir.path() / "secret");
  BrokerProcess broker(secret, (dir.path() / "journal").string(), dir, 1);
  ExecutorDaemonProcess daemon({"--cores", "0,1", "--broker", broker.address()}, secret, "node-1");
  REQUIRE(eventually([&] { return node_state(broker.address(), "node-1") == "active"; }));

  // Root's own lease beside it, running the same probes: its executor is another lease's.
  BrokerLeaseOptions o;
  o.memory_bytes = 64ull << 20;
  auto root_grant = broker_lease(broker.address(), o);
  DeployOptions probes;
  probes.library_path = RFAAS_TEST_PROBES;
  probes.functions = {"self_pid", "identity"};
  probes.input_capacity = probes.output_capacity = 4096;
  auto root_ex = Executor::deploy(root_grant, probes);
  char out[4096];
  size_t n = 0;
  REQUIRE(root_ex->invoke(root_ex->function("self_pid"), nullptr, 0, out, sizeof out, &n) == Errc::ok);
  const std::string root_executor(out, n);
  REQUIRE(root_ex->invoke(root_ex->function("identity"), nullptr, 0, out, sizeof out, &n) == Errc::ok);
  CHECK(std::string(out, n) == "0 0 0 0");  // root's lease runs as root

  const std::string daemon_pid = std::to_string(daemon.process().pid());
  auto r = user.lease(broker.address(), {"identity", "read_path:" + secret, "read_path:/proc/" + daemon_pid + "/environ",
                                         "signal_pid:" + daemon_pid, "signal_pid:" + root_executor, "spawn_sleeper"});
  INFO("lease_as_user said: " << nlohmann::json(r).dump());
  const std::string ids = std::to_string(user.uid()) + " " + std::to_string(user.gid());
  CHECK(r["identity"] == ids + " " + ids);
  CHECK(r["read_path:" + secret] == "errno 13");                       // EACCES
  CHECK(r["read_path:/proc/" + daemon_pid + "/environ"] == "errno 13");
  CHECK(r["signal_pid:" + daemon_pid] == "1");                         // EPERM
  CHECK(r["signal_pid:" + root_executor] == "1");
  REQUIRE(r.count("spawn_sleeper"));
  const pid_t sleeper = static_cast<pid_t>(std::stol(r["spawn_sleeper"]));
  CHECK(r["released"] == "ok");
  // It left its process group (setsid): the lease's cgroup still took it.
  CHECK(eventually([&] { return process_gone(sleeper); }, 5s));

  // Past its memory (64 MiB + the daemon's 256 MiB for the executor itself): that lease ends.
  r = user.lease(broker.address(), {"identity", "hog:1073741824"});
  INFO("lease_as_user said: " << nlohmann::json(r).dump());
  CHECK(r["identity"] == ids + " " + ids);
  CHECK(r["hog:1073741824"].rfind("error", 0) == 0);
  CHECK(r["lease_end"].rfind(to_string(Errc::memory_exceeded), 0) == 0);
  // The node and root's lease serve on.
  CHECK(daemon.alive());
  REQUIRE(root_ex->invoke(root_ex->function("self_pid"), nullptr, 0, out, sizeof out, &n) == Errc::ok);
  CHECK(std::string(out, n) == root_executor);
  root_ex->release();
  broker_release(broker.address(), root_grant.lease_id);
}

// The broker compacts its journal as it goes: restart time stays bounded by the leases held,
// not by the history, and a restarted broker grants no id it granted before.
TEST_CASE("the broker compacts its journal; a restart keeps the leases and spends no id twice", "[broker][journal]") {
  TempDir dir;
  auto secret = write_secret(dir.path() / "secret");
  auto journal = (dir.path() / "journal").string();
  auto broker = std::make_unique<BrokerProcess>(secret, journal, dir, 1, "127.0.0.1:0",
                                                std::vector<std::string>{"--journal-compact-records", "20"});
  ExecutorDaemonProcess daemon({"--cores", "0,1", "--broker", broker->address()}, secret, "node-1");
  REQUIRE(eventually([&] { return node_state(broker->address(), "node-1") == "active"; }));
  BrokerLeaseOptions o;
  o.memory_bytes = 1 << 26;
  auto held = broker_lease(broker->address(), o);
  uint64_t highest = held.lease_id;
  for (int i = 0; i < 40; ++i) {
    auto g = broker_lease(broker->address(), o);
    highest = std::max(highest, g.lease_id);
    broker_release(broker->address(), g.lease_id);
  }
  auto lines = [&] {
    std::ifstream in(journal);
    std::string l;
    int n = 0;
    while (std::getline(in, l)) ++n;
    return n;
  };
  // 81 records written; compacted at least once (the sweep runs every 200 ms).
  CHECK(eventually([&] { return lines() <= 21; }, 3s));
  std::string address = broker->address();
  broker->process().kill(SIGKILL);
  broker->process().wait_for(5s);
  broker = std::make_unique<BrokerProcess>(secret, journal, dir, 2, address,
                                           std::vector<std::string>{"--journal-compact-records", "20"});
  auto st = status(broker->address());
  REQUIRE(st["leases"].size() == 1);
  CHECK(st["leases"][0]["lease_id"] == held.lease_id);
  REQUIRE(eventually([&] { return node_state(broker->address(), "node-1") == "active"; }));
  auto next = broker_lease(broker->address(), o);
  CHECK(next.lease_id > highest);
  broker_release(broker->address(), next.lease_id);
  broker_release(broker->address(), held.lease_id);
}

// A daemon killed with SIGKILL cannot end its leases: what they forked out of their process
// group lives on in their cgroups, until the next daemon on the node starts and empties them.
TEST_CASE("a restarted daemon kills what a crashed daemon's leases left behind", "[broker][users]") {
  if (::geteuid() != 0) {
    WARN("not root: no cgroups to sweep");
    return;
  }
  auto daemon = std::make_unique<ExecutorDaemonProcess>(std::vector<std::string>{"--cores", "0"});
  DirectLeaseOptions lo;
  lo.node_name = ExecutorDaemonProcess::kNodeName;
  lo.secret_file = daemon->secret_file();
  lo.memory_bytes = 64ull << 20;
  auto grant = direct_lease(daemon->address(), lo);
  DeployOptions probes;
  probes.library_path = RFAAS_TEST_PROBES;
  probes.functions = {"spawn_sleeper"};
  probes.input_capacity = probes.output_capacity = 4096;
  auto ex = Executor::deploy(grant, probes);
  char out[64];
  size_t n = 0;
  REQUIRE(ex->invoke(ex->function("spawn_sleeper"), nullptr, 0, out, sizeof out, &n) == Errc::ok);
  const pid_t sleeper = static_cast<pid_t>(std::stol(std::string(out, n)));
  daemon->process().kill(SIGKILL);
  daemon->process().wait_for(5s);
  std::this_thread::sleep_for(300ms);
  REQUIRE_FALSE(process_gone(sleeper));  // outlived its daemon (and its executor)
  ExecutorDaemonProcess next({"--cores", "0"});
  CHECK(eventually([&] { return process_gone(sleeper); }, 5s));
  ex.reset();
}

// A lease released at the broker only (rfaas_lease_release without rfaas_release) is over at
// the daemon too: its calls fail within a bound, its core is not shown free before its executor
// is gone, and the next lease of the core (another user's) is served. Repeating it does not
// bypass the per-user cap.
TEST_CASE("a lease released at the broker only is ended at its node; the core goes to the next lease", "[broker][users]") {
  if (::geteuid() != 0) {
    WARN("not root: no other user to lease as");
    return;
  }
  TestUser user;
  REQUIRE(user.made());
  TempDir dir;
  ::chmod(dir.path().c_str(), 0755);
  auto secret = write_secret(dir.path() / "secret");
  BrokerProcess broker(secret, (dir.path() / "journal").string(), dir, 1, "127.0.0.1:0",
                       {"--max-cores-per-user", "1"});
  ExecutorDaemonProcess daemon({"--cores", "0", "--broker", broker.address()}, secret, "node-1");
  REQUIRE(eventually([&] { return node_state(broker.address(), "node-1") == "active"; }));

  for (int round = 0; round < 3; ++round) {
    auto r = user.lease(broker.address(), {"identity", "release_at_broker"});
    INFO("round " << round << ", lease_as_user said: " << nlohmann::json(r).dump());
    REQUIRE(r.count("release_at_broker"));
    // Ended by the node, not served on until the client gives up (10 s).
    const std::string ended = std::string(to_string(Errc::lease_revoked)) + " after ";
    REQUIRE(r["release_at_broker"].rfind(ended, 0) == 0);
    CHECK(std::stol(r["release_at_broker"].substr(ended.size())) < 3000);  // ms
    // The broker shows the core free only once the daemon has ended the lease.
    CHECK(eventually([&] {
      auto st = status(broker.address());
      return st["nodes"].size() == 1 && st["nodes"][0]["free_cores"] == 1 && st["nodes"][0]["ending"] == 0;
    }, 5s));
  }
  // The next lease of the one core (root's) is granted and served: the daemon agrees it is free.
  BrokerLeaseOptions o;
  o.memory_bytes = 64ull << 20;
  auto grant = broker_lease(broker.address(), o);
  auto ex = Executor::deploy(grant, echo_options());
  uint64_t v = 7, back = 0;
  size_t n = 0;
  CHECK(ex->invoke(ex->function("echo"), &v, 8, &back, 8, &n) == Errc::ok);
  CHECK(back == 7);
  ex->release();
  broker_release(broker.address(), grant.lease_id);
  // The user's ghosts were counted: served time at the node for each, none left running. A
  // lease's usage comes with the daemon's end report, which goes on beside the client's answer
  // and may follow the heartbeat that showed the core free.
  int ghosts = 0;
  bool served = true;
  CHECK(eventually([&] {
    auto st = status(broker.address());
    ghosts = 0;
    served = true;
    for (auto& u : st["usage"])
      if (u["uid"] == user.uid()) {
        ++ghosts;
        served = served && u["served_ms"].get<int64_t>() > 0;
      }
    return ghosts == 3;
  }, 5s));
  CHECK(ghosts == 3);
  CHECK(served);
}

// Leased code does not hold the daemon's log: its stderr is a pipe the daemon reads, and what it
// writes there reaches the log only prefixed with its lease (a forged daemon line stays visibly
// the lease's).
TEST_CASE("a lease's output reaches the daemon's log only through the daemon, prefixed", "[broker][users]") {
  if (::geteuid() != 0) {
    WARN("not root: no other user to lease as");
    return;
  }
  TestUser user;
  REQUIRE(user.made());
  TempDir dir("/var/tmp");  // outside the lease's private /tmp: the log's mode is what is tested
  ::chmod(dir.path().c_str(), 0755);
  auto secret = write_secret(dir.path() / "secret");
  const auto log = (dir.path() / "executord.log").string();
  BrokerProcess broker(secret, (dir.path() / "journal").string(), dir, 1);
  {
    ExecutorDaemonProcess daemon({"--cores", "0", "--broker", broker.address()}, secret, "node-1", log);
    REQUIRE(eventually([&] { return node_state(broker.address(), "node-1") == "active"; }));
    const std::string forged = "rfaas-executord: node drained by the operator (forged)";
    auto r = user.lease(broker.address(), {"fd_target:1", "fd_target:2", "write_stderr:" + forged, "read_path:" + log});
    INFO("lease_as_user said: " << nlohmann::json(r).dump());
    CHECK(r["fd_target:1"].rfind("pipe:", 0) == 0);
    CHECK(r["fd_target:2"].rfind("pipe:", 0) == 0);
    CHECK(r["write_stderr:" + forged].rfind("wrote ", 0) == 0);
    CHECK(r["read_path:" + log] == "errno 13");
    CHECK(r["released"] == "ok");
    const uint64_t lease = std::stoull(r["lease"]);
    // Read once the daemon has written it (its reader thread), before the daemon stops.
    auto contents = [&] {
      std::ifstream in(log);
      return std::string(std::istreambuf_iterator<char>(in), {});
    };
    CHECK(eventually([&] { return contents().find(forged) != std::string::npos; }, 3s));
    std::istringstream lines(contents());
    bool seen = false;
    for (std::string l; std::getline(lines, l);) {
      if (l.find(forged) == std::string::npos) continue;
      seen = true;
      CHECK(l.rfind("rfaas-executord: lease " + std::to_string(lease) + " output: ", 0) == 0);
    }
    CHECK(seen);
  }
  // The log the daemon was given stays root's alone.
  struct stat sb{};
  REQUIRE(::stat(log.c_str(), &sb) == 0);
  CHECK((sb.st_mode & 077) == 0);
}

// One address silences no node: an ordinary user of the node floods both daemons from the
// node's own address (127.0.0.1, the address of its heartbeats and of every client there) with
// idle connections, reopened as they are closed, for over three heartbeat timeouts. The node
// stays active, its lease is served throughout, and a new lease is granted and deployed.
TEST_CASE("a flood from the node's own address by an ordinary user does not silence the node", "[broker][users]") {
  if (::geteuid() != 0) {
    WARN("not root: no other user to flood as");
    return;
  }
  TestUser user;
  REQUIRE(user.made());
  TempDir dir;
  auto secret = write_secret(dir.path() / "secret");
  BrokerProcess broker(secret, (dir.path() / "journal").string(), dir, 1);
  ExecutorDaemonProcess daemon({"--cores", "0,1", "--broker", broker.address()}, secret, "node-1");
  REQUIRE(eventually([&] { return node_state(broker.address(), "node-1") == "active"; }));
  BrokerLeaseOptions o;
  o.memory_bytes = 64ull << 20;
  auto grant = broker_lease(broker.address(), o);
  auto ex = Executor::deploy(grant, echo_options());

  // 400 connections to each daemon from 127.0.0.1, each reopened when closed, for 6 s (the
  // heartbeat timeout is 1.5 s); the flooder counts the connections it opened.
  auto hp_b = net::HostPort::parse(broker.address()), hp_d = net::HostPort::parse(daemon.address());
  const std::string flood = "import socket, time\n"
                            "targets = [('127.0.0.1', " + std::to_string(hp_b.port) + "), ('127.0.0.1', " + std::to_string(hp_d.port) + ")]\n"
                            "def conn(t):\n"
                            "    s = socket.socket(); s.setblocking(False)\n"
                            "    try: s.connect(t)\n"
                            "    except BlockingIOError: pass\n"
                            "    return s\n"
                            "socks = [(t, conn(t)) for t in targets for _ in range(400)]\n"
                            "opened = len(socks); end = time.time() + 6\n"
                            "while time.time() < end:\n"
                            "    for i, (t, s) in enumerate(socks):\n"
                            "        try:\n"
                            "            if s.recv(1) == b'':\n"
                            "                s.close(); socks[i] = (t, conn(t)); opened += 1\n"
                            "        except BlockingIOError: pass\n"
                            "        except OSError:\n"
                            "            s.close(); socks[i] = (t, conn(t)); opened += 1\n"
                            "    time.sleep(0.01)\n"
                            "print(opened)\n";
  std::ofstream(dir.path() / "flood.py") << flood;
  ::chmod(dir.path().c_str(), 0755);
  ::chmod((dir.path() / "flood.py").c_str(), 0644);
  const std::string cmd = "setpriv --reuid=" + std::to_string(user.uid()) + " --regid=" + std::to_string(user.gid()) +
                          " --clear-groups /usr/bin/python3 " + (dir.path() / "flood.py").string();
  FILE* flooder = ::popen(cmd.c_str(), "r");
  REQUIRE(flooder);
  std::this_thread::sleep_for(500ms);  // the flood is on

  // Throughout: the lease is served and the node stays active.
  int served = 0, failed = 0;
  std::set<std::string> states;
  for (auto end = Clock::now() + 5s; Clock::now() < end;) {
    uint64_t v = 3, r = 0;
    size_t n = 0;
    (ex->invoke(ex->function("echo"), &v, 8, &r, 8, &n, 2s) == Errc::ok && r == 3) ? ++served : ++failed;
    // The probe comes from the flooder's address and may itself be pushed out before it is
    // heard: what is judged is the node's state, so a probe gets three tries.
    for (int attempt = 1;; ++attempt) {
      try {
        states.insert(node_state(broker.address(), "node-1"));
        break;
      } catch (const std::exception& e) {
        if (attempt == 3) {
          states.insert(std::string("status failed: ") + e.what());
          break;
        }
      }
    }
    std::this_thread::sleep_for(50ms);
  }
  // A new lease, granted and deployed during the flood.
  auto second = broker_lease(broker.address(), o);
  auto ex2 = Executor::deploy(second, echo_options());
  uint64_t v = 9, r = 0;
  size_t n = 0;
  CHECK(ex2->invoke(ex2->function("echo"), &v, 8, &r, 8, &n) == Errc::ok);
  CHECK(r == 9);

  char line[64] = {0};
  std::fgets(line, sizeof line, flooder);
  ::pclose(flooder);
  INFO("the flooder opened " << line << " connections; states seen: " << nlohmann::json(states).dump());
  CHECK(std::stol(line) > 800);  // it really flooded (and was pushed out and came back)
  CHECK(states == std::set<std::string>{"active"});
  CHECK(failed == 0);
  CHECK(served > 20 / kSlowdown);
  ex2->release();
  broker_release(broker.address(), second.lease_id);
  ex->release();
  broker_release(broker.address(), grant.lease_id);
}

// Finding 5: an executor's listener is open to any local user before its client connects. An
// ordinary user opens 20 silent connections to every port listening on 127.0.0.1 (as /proc/net/tcp
// shows them to anyone), and to each new one as it appears, standby executors' included; deploys
// on the node go on at their usual pace (one after another, 20 silent connectors would hold each
// deploy for 10 s, the control timeout).
TEST_CASE("silent connections to every local port by an ordinary user do not stall deploys", "[broker][users]") {
  if (::geteuid() != 0) {
    WARN("not root: no other user to connect as");
    return;
  }
  TestUser user;
  REQUIRE(user.made());
  TempDir dir;
  auto secret = write_secret(dir.path() / "secret");
  BrokerProcess broker(secret, (dir.path() / "journal").string(), dir, 1);
  ExecutorDaemonProcess daemon({"--cores", "0", "--broker", broker.address()}, secret, "node-1");
  REQUIRE(eventually([&] { return node_state(broker.address(), "node-1") == "active"; }));
  const std::string flood = "import socket, sys, time\n"
                            "held, ports = [], set()\n"
                            "end = time.time() + 14\n"
                            "while time.time() < end:\n"
                            "    for line in open('/proc/net/tcp').readlines()[1:]:\n"
                            "        f = line.split()\n"
                            "        if f[3] != '0A' or not f[1].startswith('0100007F:'): continue\n"
                            "        port = int(f[1].split(':')[1], 16)\n"
                            "        if port in ports: continue\n"
                            "        ports.add(port); print(len(ports), file=sys.stderr, flush=True)\n"
                            "        for _ in range(20):\n"
                            "            try: s = socket.socket(); s.setblocking(False)\n"
                            "            except OSError: break\n"
                            "            try: s.connect(('127.0.0.1', port))\n"
                            "            except BlockingIOError: pass\n"
                            "            except OSError: pass\n"
                            "            held.append(s)\n"
                            "    time.sleep(0.005)\n";
  std::ofstream(dir.path() / "flood.py") << flood;
  ::chmod(dir.path().c_str(), 0755);
  ::chmod((dir.path() / "flood.py").c_str(), 0644);
  ChildProcess flooder({"/usr/bin/setpriv", "--reuid=" + std::to_string(user.uid()), "--regid=" + std::to_string(user.gid()),
                        "--clear-groups", "/usr/bin/python3", (dir.path() / "flood.py").string()},
                       {}, (dir.path() / "flood.out").string());
  auto ports_held = [&] {
    std::ifstream counts(dir.path() / "flood.out");
    int ports = 0;
    for (int c; counts >> c;) ports = c;
    return ports;
  };
  // The broker's, the daemon's and the standby executor's (listening before its lease) held
  // before the first deploy. A pass over /proc/net/tcp can take a second when earlier tests left
  // tens of thousands of TIME_WAIT entries, hence the long wait.
  auto flooder_output = [&] {
    std::ifstream f(dir.path() / "flood.out");
    return std::string(std::istreambuf_iterator<char>(f), {});
  };
  if (!eventually([&] { return ports_held() >= 3; }, 10s))
    FAIL("the flooder did not reach the standby executor's listener; its output: " << flooder_output());

  BrokerLeaseOptions o;
  o.memory_bytes = 64ull << 20;
  for (int round = 0; round < 3; ++round) {
    INFO("deploy " << round);
    auto t0 = Clock::now();
    auto grant = broker_lease(broker.address(), o);
    std::unique_ptr<Executor> ex;
    try {
      ex = Executor::deploy(grant, echo_options());
    } catch (const Error& e) {
      FAIL("deploy failed: " << e.what());
    }
    auto took = Clock::now() - t0;
    uint64_t v = 4, r = 0;
    size_t n = 0;
    CHECK(ex->invoke(ex->function("echo"), &v, 8, &r, 8, &n) == Errc::ok);
    CHECK(r == 4);
    CHECK(took < 3s);
    ex->release();
    broker_release(broker.address(), grant.lease_id);
  }
  flooder.kill(SIGTERM);
  flooder.wait_for(5s);
}

// Finding 6: quotas hold with no configuration. An ordinary user (created here, her requests
// signed by the real munged as her uid) meets the default caps: cores per lease, cores held at
// once, memory per core (a node's share), and a lease's lifetime across renewals.
TEST_CASE("an ordinary user meets the default quotas: cores per lease and per user, memory per core, lifetime", "[broker][users]") {
  if (::geteuid() != 0) {
    WARN("not root: another user's credentials need munge(1) run as that uid");
    return;
  }
  TestUser user;
  REQUIRE(user.made());
  TempDir dir;
  auto secret = write_secret(dir.path() / "secret");
  // Only the lifetime is set, short enough to reach; everything else is the default policy.
  BrokerProcess broker(secret, (dir.path() / "journal").string(), dir, 1, "127.0.0.1:0",
                       {"--max-lease-ms", "1000", "--max-lease-lifetime-ms", "2500"});
  auto cluster_secret = protocol::ClusterSecret::load(secret);
  auto keep_big_alive = [&] {  // a node of 256 cores and 1 TiB (4 GiB per core); nothing serves it
    static uint64_t sequence = 0;
    protocol::NodeRegistration r{"big", "127.0.0.1:1", 256, 1ull << 40, protocol::unix_now_ms(), "", "register", {}, 1, ++sequence};
    r.sign(cluster_secret);
    REQUIRE(request(broker.address(), protocol::make_message("register", r))["type"] == "registered");
  };
  auto as_user = [&](const std::string& type, nlohmann::json body) {
    keep_big_alive();
    body[protocol::kAudienceField] = broker.address();
    body["credential"] = credential_of(user.uid(), type, body);
    return request(broker.address(), protocol::make_message(type, body));
  };
  auto lease = [&](uint32_t cores, uint64_t memory) {
    protocol::LeaseAsk a;
    a.cores = cores;
    a.memory_bytes = memory;
    a.duration_ms = 1000;
    a.client = "quota-test";
    return as_user("lease", a);
  };
  auto refusal = [](const nlohmann::json& reply) {
    return reply["type"] == "error" ? reply["body"]["code"].get<std::string>() + ": " + reply["body"]["message"].get<std::string>()
                                    : std::string("granted");
  };
  // Memory: one core and more than its share of the node (4 GiB) is policy, by name.
  auto r = lease(1, 5ull << 30);
  INFO(r.dump());
  CHECK(refusal(r).find("policy: ") == 0);
  CHECK(refusal(r).find("per core") != std::string::npos);
  auto within = lease(1, 4ull << 30);
  REQUIRE(within["type"] == "lease_granted");
  CHECK(as_user("release", {{"lease_id", within["body"]["lease_id"]}})["type"] == "released");
  // Cores: 33 in one lease is over the default of 32; four of 32 are the user's default 128.
  CHECK(refusal(lease(33, 1ull << 30)).find("at most 32 per lease") != std::string::npos);
  for (int i = 0; i < 4; ++i) CHECK(refusal(lease(32, 1ull << 30)) == "granted");
  CHECK(refusal(lease(1, 1ull << 30)).find("at most 128 per user") != std::string::npos);
  auto st = status(broker.address());
  uint64_t held = 0;
  for (auto& l : st["leases"])
    if (l["uid"] == user.uid()) held += l["cores"].get<uint64_t>();
  CHECK(held == 128);
  for (auto& l : st["leases"]) as_user("release", {{"lease_id", l["lease_id"]}});

  // Lifetime: renewed every 300 ms for 1 s more, a lease never outlives 2.5 s from its grant;
  // the renewal that cannot move it is refused by name, and the lease expires.
  auto first = lease(1, 1ull << 30);
  REQUIRE(first["type"] == "lease_granted");
  const int64_t granted_at = protocol::unix_now_ms();
  auto token = nlohmann::json::parse(first["body"]["token"].get<std::string>()).get<protocol::LeaseToken>();
  std::string last;
  for (int i = 0; i < 20 && last.empty(); ++i) {
    std::this_thread::sleep_for(300ms);
    auto renewed = as_user("renew", protocol::LeaseRenewAsk{token, 1000});
    if (renewed["type"] == "lease_renewed") CHECK(renewed["body"]["expires_at_ms"].get<int64_t>() <= granted_at + 2500);
    else last = refusal(renewed);
  }
  CHECK(last.find("policy: ") == 0);
  CHECK(last.find("lifetime of 2500 ms") != std::string::npos);
  CHECK(eventually([&] {
    keep_big_alive();
    return status(broker.address())["leases"].empty();
  }));
}

namespace {
// A command's exit status and its output (stdout and stderr), bounded by timeout(1).
std::pair<int, std::string> run_command(const std::string& cmd) {
  std::string out;
  int status = -1;
  if (FILE* p = ::popen(("timeout 20 " + cmd + " 2>&1").c_str(), "r")) {
    char buf[4096];
    while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
    status = ::pclose(p);
  }
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}
std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
}  // namespace

// Finding 8, files: what an ordinary user owns or plants is not trusted by root's daemons. A
// secret or a journal she owns could hold what she wrote (forged keys, forged leases); links
// she plants where the broker writes its snapshot and its ready file would make root write
// through them. The folder is one she may write (0777 without the sticky bit, as a shared
// folder set up wrongly), so the kernel's protected_symlinks does not step in.
TEST_CASE("a secret or journal an ordinary user owns, and links she plants at the broker's files, are refused", "[broker][users]") {
  if (::geteuid() != 0) {
    WARN("not root: no other user to plant files as");
    return;
  }
  TestUser user;
  REQUIRE(user.made());
  TempDir dir;
  ::chmod(dir.path().c_str(), 0777);
  const std::string as_user = "setpriv --reuid=" + std::to_string(user.uid()) + " --regid=" + std::to_string(user.gid()) +
                              " --clear-groups ";
  // A secret she wrote (mode 0600, hers): both daemons refuse to start on it, naming why.
  auto hers = write_secret(dir.path() / "her-secret");
  REQUIRE(::chown(hers.c_str(), user.uid(), user.gid()) == 0);
  auto [broker_rc, broker_out] = run_command(std::string(RFAAS_BROKER) + " --listen 127.0.0.1:0 --secret-file " + hers +
                                             " --journal " + (dir.path() / "j0").string());
  INFO(broker_out);
  CHECK(broker_rc != 0);
  CHECK(broker_out.find("owned by uid " + std::to_string(user.uid())) != std::string::npos);
  auto [daemon_rc, daemon_out] = run_command(std::string(RFAAS_EXECUTORD) + " --listen 127.0.0.1:0 --cores 0 --node-name n --secret-file " + hers);
  INFO(daemon_out);
  CHECK(daemon_rc != 0);
  CHECK(daemon_out.find("owned by uid " + std::to_string(user.uid())) != std::string::npos);

  auto secret = write_secret(dir.path() / "secret");  // root's, as it should be
  // A journal she planted (a forged grant to her) or linked elsewhere: refused, not replayed.
  const auto forged = dir.path() / "forged-journal";
  run_command(as_user + "sh -c \"echo '{\\\"op\\\":\\\"grant\\\",\\\"lease_id\\\":1,\\\"node\\\":\\\"n\\\",\\\"cores\\\":64,"
                        "\\\"memory_bytes\\\":1,\\\"expires_at_ms\\\":9999999999999,\\\"client\\\":\\\"x\\\"}' > " +
              forged.string() + "\"");
  REQUIRE(std::filesystem::exists(forged));
  auto [forged_rc, forged_out] = run_command(std::string(RFAAS_BROKER) + " --listen 127.0.0.1:0 --secret-file " + secret +
                                             " --journal " + forged.string());
  INFO(forged_out);
  CHECK(forged_rc != 0);
  CHECK(forged_out.find("not a regular file of uid 0") != std::string::npos);

  // Links she planted at the snapshot's and the ready file's temporary names, pointing at
  // root's files: root's broker writes its own files and never through them.
  TempDir safe;
  const auto victim = safe.path() / "victim";
  std::ofstream(victim) << "precious\n";
  const auto journal = dir.path() / "journal", ready = dir.path() / "ready";
  run_command(as_user + "ln -s " + victim.string() + " " + journal.string() + ".compact");
  run_command(as_user + "ln -s " + victim.string() + " " + ready.string() + ".tmp");
  REQUIRE(std::filesystem::is_symlink(journal.string() + ".compact"));
  REQUIRE(std::filesystem::is_symlink(ready.string() + ".tmp"));
  ChildProcess broker({RFAAS_BROKER, "--listen", "127.0.0.1:0", "--secret-file", secret, "--journal", journal.string(),
                       "--ready-file", ready.string(), "--journal-compact-records", "4"});
  const std::string address = wait_ready_file(ready.string(), broker);
  CHECK_FALSE(std::filesystem::is_symlink(ready));
  auto cluster_secret = protocol::ClusterSecret::load(secret);
  protocol::NodeRegistration r{"n", "127.0.0.1:1", 4, 1ull << 32, protocol::unix_now_ms(), "", "register", {}, 1, 1};
  r.sign(cluster_secret);
  REQUIRE(request(address, protocol::make_message("register", r))["type"] == "registered");
  BrokerLeaseOptions o;
  o.memory_bytes = 1 << 20;
  for (int i = 0; i < 4; ++i) broker_release(address, broker_lease(address, o).lease_id);
  CHECK(eventually([&] { return slurp(journal).rfind("{\"leases\"", 0) == 0 || slurp(journal).find("\"snapshot\"") != std::string::npos; }));
  CHECK_FALSE(std::filesystem::is_symlink(journal));
  CHECK(slurp(victim) == "precious\n");
  CHECK(broker_lease(address, o).lease_id > 0);  // and it records on, in its own journal
  broker.kill(SIGTERM);
  broker.wait_for(10s);
}

// Finding 8, replays: a daemon's signed messages travel in plaintext, so anyone on the path
// may copy them. An ordinary user (created here, no secret) sends the copied bytes of a
// node's heartbeat again after the node drained: the broker takes each signed message once.
// Messages arriving out of order within the window are taken.
TEST_CASE("an ordinary user replaying a node's copied heartbeat does not make a draining node active", "[broker][users]") {
  if (::geteuid() != 0) {
    WARN("not root: no other user to replay as");
    return;
  }
  UserAndBroker c;
  auto& user = c.user;
  auto& broker = c.broker;
  auto& dir = c.dir;
  auto cluster = protocol::ClusterSecret::load(c.secret);
  const uint64_t incarnation = 77;
  auto signed_as_node = [&](const std::string& purpose, uint64_t sequence) {
    protocol::NodeRegistration r{"n", "127.0.0.1:1", 2, 1ull << 32, protocol::unix_now_ms(), "", purpose, {},
                                 incarnation, sequence};
    r.sign(cluster);
    return r;
  };
  // The daemon's heartbeat (as the wire carries it), then its drain.
  const std::string heartbeat = protocol::make_message("register", signed_as_node("register", 1));
  REQUIRE(request(broker.address(), heartbeat)["type"] == "registered");
  REQUIRE(request(broker.address(), protocol::make_message("drain", {{"registration", signed_as_node("drain", 2)}}))["type"] ==
          "draining");
  REQUIRE(node_state(broker.address(), "n") == "draining");
  // She sends the copied bytes, framed, from her own process.
  const auto frame = dir.path() / "copied-heartbeat";
  {
    std::ofstream f(frame, std::ios::binary);
    const uint32_t n = static_cast<uint32_t>(heartbeat.size());
    const char header[4] = {static_cast<char>(n), static_cast<char>(n >> 8), static_cast<char>(n >> 16), static_cast<char>(n >> 24)};
    f.write(header, 4);
    f << heartbeat;
  }
  ::chmod(frame.c_str(), 0644);
  auto port = broker.address().substr(broker.address().rfind(':') + 1);
  // One frame out, one back, then she is gone: the node's state is read at once, well within
  // the broker's heartbeat timeout (1.5 s), so that it shows what the replay did.
  auto [rc, reply] = run_command("setpriv --reuid=" + std::to_string(user.uid()) + " --regid=" + std::to_string(user.gid()) +
                                 " --clear-groups /usr/bin/python3 -c \"import socket; s = socket.create_connection(('127.0.0.1', " +
                                 port + ")); s.sendall(open('" + frame.string() + "', 'rb').read()); " +
                                 "n = int.from_bytes(s.recv(4, socket.MSG_WAITALL), 'little'); " +
                                 "print(s.recv(n, socket.MSG_WAITALL).decode())\"");
  const std::string after_replay = node_state(broker.address(), "n");
  INFO("her replay got: " << reply);
  CHECK(reply.find("bad_token") != std::string::npos);
  CHECK(reply.find("replayed") != std::string::npos);
  CHECK(after_replay == "draining");
  // The daemon's own messages, out of order within the window, are taken; each only once.
  auto five = signed_as_node("register", 5), four = signed_as_node("register", 4);
  CHECK(request(broker.address(), protocol::make_message("register", five))["type"] == "registered");
  CHECK(request(broker.address(), protocol::make_message("register", four))["type"] == "registered");
  CHECK(request(broker.address(), protocol::make_message("register", four))["body"]["code"] == "bad_token");
  // A message of an earlier start of the daemon, after it restarted: refused.
  protocol::NodeRegistration restarted{"n", "127.0.0.1:1", 2, 1ull << 32, protocol::unix_now_ms() + 5, "", "register", {},
                                       incarnation + 1, 1};
  restarted.sign(cluster);
  CHECK(request(broker.address(), protocol::make_message("register", restarted))["type"] == "registered");
  auto old_start = signed_as_node("register", 6);
  old_start.timestamp_ms -= 1000;
  old_start.sign(cluster);
  auto refused = request(broker.address(), protocol::make_message("register", old_start));
  CHECK(refused["body"]["message"].get<std::string>().find("earlier start") != std::string::npos);
}

// Finding 8, relays: another user of the host (nobody, here) runs a fake broker that passes
// every byte to the real one and back. A user who leases through it (created here) must not
// have her request granted: its MUNGE credential signs the broker it was meant for (the address
// she reached), so the real broker refuses it, and the relay never holds her token.
TEST_CASE("a user's request relayed by another user's fake broker is refused by the real one", "[broker][users]") {
  if (::geteuid() != 0) {
    WARN("not root: no other users to relay and lease as");
    return;
  }
  UserAndBroker c(0777);  // nobody writes the relay's port there
  auto& user = c.user;
  auto& broker = c.broker;
  auto& dir = c.dir;
  auto daemon = c.node();
  const auto relay_py = dir.path() / "relay.py", relay_port = dir.path() / "relay.port";
  std::ofstream(relay_py) << R"(import socket, sys, threading
host, port, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ls = socket.socket(); ls.bind(("127.0.0.1", 0)); ls.listen(16); ls.settimeout(60)
open(out + ".tmp", "w").write(str(ls.getsockname()[1])); __import__("os").rename(out + ".tmp", out)
def pump(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d: break
            b.sendall(d)
    except OSError: pass
    try: b.shutdown(socket.SHUT_WR)
    except OSError: pass
while True:
    c, _ = ls.accept()
    u = socket.create_connection((host, port), timeout=10)
    threading.Thread(target=pump, args=(u, c), daemon=True).start()
    threading.Thread(target=pump, args=(c, u), daemon=True).start()
)";
  ::chmod(relay_py.c_str(), 0644);
  const auto hp = net::HostPort::parse(broker.address());
  ChildProcess relay({"/usr/bin/setpriv", "--reuid=" + std::to_string(kNobody), "--regid=" + std::to_string(kNobody), "--clear-groups",
                      "/usr/bin/python3", relay_py.string(), hp.host, std::to_string(hp.port), relay_port.string()});
  REQUIRE(eventually([&] { return std::filesystem::exists(relay_port); }));
  const std::string fake = "127.0.0.1:" + slurp(relay_port);
  auto r = user.lease(fake, {"identity"});
  INFO("lease_as_user through the relay said: " << nlohmann::json(r).dump());
  CHECK(r.count("lease") == 0);
  REQUIRE(r.count("failed"));
  CHECK(r["failed"].rfind(to_string(Errc::not_authenticated), 0) == 0);
  CHECK(r["failed"].find("meant for the broker at " + fake) != std::string::npos);
  CHECK(status(broker.address())["leases"].empty());
  // Straight to the real broker, the same user leases and is served.
  auto direct = user.lease(broker.address(), {"identity"});
  INFO("lease_as_user direct said: " << nlohmann::json(direct).dump());
  CHECK(direct.count("lease"));
  CHECK(direct["released"] == "ok");
  relay.kill(SIGKILL);
  relay.wait_for(5s);
}

// Finding 8, the library cache: a daemon's answer (and its timing) must not tell one user
// whether another deployed a library. Root deploys the probe library; an ordinary user
// (created here) deploying the same bytes is asked for them as if the node had never seen
// them; her second deploy has them cached.
TEST_CASE("whether a library is cached is not told across users", "[broker][users]") {
  if (::geteuid() != 0) {
    WARN("not root: no other user to deploy as");
    return;
  }
  UserAndBroker c;
  auto& user = c.user;
  auto& broker = c.broker;
  auto daemon = c.node();
  BrokerLeaseOptions o;
  o.memory_bytes = 64ull << 20;
  for (int i = 0; i < 2; ++i) {  // root's own deploys: received, then cached
    auto grant = broker_lease(broker.address(), o);
    DeployOptions d;
    d.library_path = RFAAS_TEST_PROBES;
    d.functions = {"identity"};
    d.input_capacity = d.output_capacity = 4096;
    auto ex = Executor::deploy(grant, d);
    CHECK(ex->library_was_cached() == (i == 1));
    ex->release();
    broker_release(broker.address(), grant.lease_id);
  }
  for (const char* expected : {"received", "cached"}) {
    auto r = user.lease(broker.address(), {"identity"});
    INFO("lease_as_user said: " << nlohmann::json(r).dump());
    CHECK(r["deploy"] == expected);
    CHECK(r["identity"].rfind(std::to_string(user.uid()) + " ", 0) == 0);
    CHECK(r["released"] == "ok");
  }
}

// Finding 7: a lease's /tmp (and /dev/shm, unless the shm fabric meets its peers there) is its
// own, as Slurm's job_container/tmpfs makes a job's: what an ordinary user's leased code leaves
// there is not on the node's /tmp, not seen by her next lease, and gone with the lease. Its
// memory cannot spill into swap (memsw on cgroup v1, swap.max on v2).
TEST_CASE("a lease's /tmp and /dev/shm are its own and go with it; its memory does not spill into swap", "[broker][users]") {
  if (::geteuid() != 0) {
    WARN("not root: the daemon cannot give leases mount namespaces here");
    return;
  }
  UserAndBroker c;
  auto& user = c.user;
  auto& broker = c.broker;
  auto daemon = c.node();
  const std::string tmp_file = "/tmp/rfaas-left-by-a-lease-" + std::to_string(::getpid());
  const std::string shm_file = "/dev/shm/rfaas-left-by-a-lease-" + std::to_string(::getpid());
  const char* provider = std::getenv("RFAAS_OFI_PROVIDER");
  const bool shm_fabric = (!std::getenv("RFAAS_FABRIC") || std::string(std::getenv("RFAAS_FABRIC")) == "ofi") &&
                          (!provider || std::string(provider) == "shm");
  auto r = user.lease(broker.address(), {"create_file:" + tmp_file, "read_path:" + tmp_file, "create_file:" + shm_file,
                                         "memsw_limit"});
  INFO("lease_as_user said: " << nlohmann::json(r).dump());
  CHECK(r["create_file:" + tmp_file] == "created");
  CHECK(r["read_path:" + tmp_file] == "read 16");  // the lease sees its own file
  CHECK(r["create_file:" + shm_file] == "created");
  CHECK(r["released"] == "ok");
  CHECK_FALSE(std::filesystem::exists(tmp_file));  // never on the node's /tmp, gone with the lease
  if (shm_fabric) {
    // Documented limit: over shm the lease keeps the node's /dev/shm (its peers meet there).
    std::filesystem::remove(shm_file);
  } else {
    CHECK_FALSE(std::filesystem::exists(shm_file));
  }
  auto again = user.lease(broker.address(), {"read_path:" + tmp_file});
  INFO("her next lease said: " << nlohmann::json(again).dump());
  CHECK(again["read_path:" + tmp_file] == "errno 2");  // not her next lease's either
  // Memory and swap: bounded by the lease's memory (64 MiB asked, plus the daemon's overhead),
  // not the unlimited default.
  const std::string memsw = r["memsw_limit"];
  if (memsw == "none") {
    WARN("no swap accounting in this kernel's cgroups: nothing to bound");
  } else if (memsw != "0") {
    REQUIRE(memsw.find_first_not_of("0123456789") == std::string::npos);
    CHECK(std::stoull(memsw) >= 64ull << 20);
    CHECK(std::stoull(memsw) < 1ull << 40);
  }
}
