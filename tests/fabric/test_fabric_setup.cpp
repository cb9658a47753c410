// runtime/fabric setup paths that need no peer process: configuration from the environment,
// connection data, bad handshakes, registration arguments.
#include <stdlib.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>
#include <vector>

#include "net/tcp_socket.hpp"
#include "rfaas/fabric/fabric.hpp"

using namespace rfaas;
using namespace std::chrono_literals;

namespace {
struct EnvGuard {
  explicit EnvGuard(const char* name) : name_(name) {
    if (const char* v = getenv(name)) saved_ = v, had_ = true;
  }
  ~EnvGuard() { had_ ? setenv(name_, saved_.c_str(), 1) : unsetenv(name_); }
  const char* name_;
  std::string saved_;
  bool had_ = false;
};
}  // namespace

TEST_CASE("configuration comes from RFAAS_FABRIC and RFAAS_OFI_PROVIDER", "[fabric][config]") {
  EnvGuard g1("RFAAS_FABRIC"), g2("RFAAS_OFI_PROVIDER"), g3("RFAAS_FABRIC_HOST");
  unsetenv("RFAAS_FABRIC");
  unsetenv("RFAAS_OFI_PROVIDER");
  unsetenv("RFAAS_FABRIC_HOST");
  auto c = fabric::Config::from_env();
  CHECK(c.backend == fabric::Backend::ofi);
  CHECK(c.ofi_provider == "shm");
  setenv("RFAAS_FABRIC", "ofi", 1);
  setenv("RFAAS_OFI_PROVIDER", "tcp", 1);
  setenv("RFAAS_FABRIC_HOST", "127.0.0.2", 1);
  c = fabric::Config::from_env();
  CHECK(c.ofi_provider == "tcp");
  CHECK(c.local_host == "127.0.0.2");
  setenv("RFAAS_FABRIC", "carrier-pigeon", 1);
  try {
    fabric::Config::from_env();
    FAIL("accepted an unknown backend");
  } catch (const fabric::Error& e) {
    CHECK(e.code() == fabric::Errc::no_backend);
    CHECK(std::string(e.what()).find("carrier-pigeon") != std::string::npos);
  }
}

TEST_CASE("connection data carries a value of the right size only", "[fabric][config]") {
  fabric::RemoteRegion r{0x1000, 42, 4096};
  auto cd = fabric::make_connection_data(r);
  CHECK(cd.size == sizeof r);
  auto back = fabric::read_connection_data<fabric::RemoteRegion>(cd);
  CHECK(back.address == 0x1000);
  CHECK(back.key == 42);
  CHECK(back.length == 4096);
  cd.size = 3;
  CHECK_THROWS_AS(fabric::read_connection_data<fabric::RemoteRegion>(cd), fabric::Error);
}

TEST_CASE("registration refuses an empty region", "[fabric][config]") {
  auto domain = fabric::open_domain(fabric::Config::from_env());
  std::vector<char> buf(16);
  CHECK_THROWS_AS(domain->register_memory(buf.data(), 0, fabric::Access::local), fabric::Error);
  CHECK_THROWS_AS(domain->register_memory(nullptr, 16, fabric::Access::local), fabric::Error);
}

TEST_CASE("a listener survives garbage and a silent connector, then accepts a real endpoint", "[fabric]") {
  auto domain = fabric::open_domain(fabric::Config::from_env());
  auto listener = domain->listen(fabric::Config::from_env().local_host, 0);
  auto hp = net::HostPort::parse(listener->address());
  fabric::ConnectionData mine = fabric::make_connection_data(uint64_t{7}), theirs;

  // Garbage instead of a hello: a named protocol error, nothing else breaks.
  std::thread garbage([&] {
    auto s = net::TcpStream::connect(hp, net::deadline_in(5s));
    std::vector<uint8_t> junk(200, 0xAB);
    s.send_frame(junk.data(), junk.size(), net::deadline_in(5s));
    std::this_thread::sleep_for(200ms);
  });
  auto ep1 = domain->create_endpoint();
  try {
    listener->accept(*ep1, mine, theirs, 5s);
    FAIL("accepted garbage");
  } catch (const fabric::Error& e) {
    CHECK(e.code() == fabric::Errc::protocol);
  }
  garbage.join();

  // A connector that says nothing: the accept ends at its timeout.
  std::thread silent([&] {
    auto s = net::TcpStream::connect(hp, net::deadline_in(5s));
    std::this_thread::sleep_for(500ms);
  });
  auto ep2 = domain->create_endpoint();
  auto t0 = std::chrono::steady_clock::now();
  try {
    listener->accept(*ep2, mine, theirs, 200ms);
    FAIL("accepted a silent connector");
  } catch (const fabric::Error& e) {
    CHECK(e.code() == fabric::Errc::timeout);
  }
  CHECK(std::chrono::steady_clock::now() - t0 < 2s);
  silent.join();

  // A real endpoint of this process still connects.
  auto server_ep = domain->create_endpoint();
  auto client_ep = domain->create_endpoint();
  fabric::ConnectionData client_theirs;
  std::thread client([&] {
    client_ep->connect(listener->address(), fabric::make_connection_data(uint64_t{9}), client_theirs, 5s);
  });
  listener->accept(*server_ep, mine, theirs, 5s);
  client.join();
  CHECK(fabric::read_connection_data<uint64_t>(theirs) == 9);
  CHECK(fabric::read_connection_data<uint64_t>(client_theirs) == 7);
  CHECK(server_ep->connected());
  CHECK(client_ep->connected());
}

TEST_CASE("connect to nobody fails with a named error in bounded time", "[fabric]") {
  auto domain = fabric::open_domain(fabric::Config::from_env());
  uint16_t port;
  { port = net::TcpListener::bind("127.0.0.1", 0).port(); }
  auto ep = domain->create_endpoint();
  fabric::ConnectionData theirs;
  try {
    ep->connect("127.0.0.1:" + std::to_string(port), {}, theirs, 2s);
    FAIL("connected to nothing");
  } catch (const fabric::Error& e) {
    CHECK(e.code() == fabric::Errc::peer_lost);
  }
  CHECK_THROWS_AS(ep->connect("not an address", {}, theirs, 2s), fabric::Error);
}
