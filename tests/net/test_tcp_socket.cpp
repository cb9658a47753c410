// runtime/net: address parsing, framing limits and bounded waits.
#include <catch2/catch.hpp>
#include <sys/socket.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>

#include "net/session_limits.hpp"
#include "net/tcp_socket.hpp"

using namespace rfaas::net;
using namespace std::chrono_literals;

TEST_CASE("host:port addresses parse, bad ones are named errors", "[net]") {
  auto a = HostPort::parse("127.0.0.1:4000");
  CHECK(a.host == "127.0.0.1");
  CHECK(a.port == 4000);
  auto b = HostPort::parse("[::1]:65535");
  CHECK(b.host == "::1");
  CHECK(b.port == 65535);
  CHECK(b.str() == "[::1]:65535");
  CHECK(HostPort::parse("node17:0").str() == "node17:0");
  for (const char* bad : {"", "host", "host:", ":80", "host:65536", "host:12a", "[::1]80", "[::1", "host:123456"}) {
    INFO(bad);
    try {
      HostPort::parse(bad);
      FAIL("accepted");
    } catch (const NetError& e) {
      CHECK(e.code() == NetErrc::invalid_address);
    }
  }
}

TEST_CASE("frames round-trip and oversized frames are refused", "[net]") {
  auto listener = TcpListener::bind("127.0.0.1", 0);
  REQUIRE(listener.port() != 0);
  std::thread client([&] {
    auto s = TcpStream::connect({"127.0.0.1", listener.port()}, deadline_in(5s));
    std::string msg = "hello rfaas";
    s.send_frame(msg.data(), msg.size(), deadline_in(5s));
    std::vector<uint8_t> big(5000, 7);
    s.send_frame(big.data(), big.size(), deadline_in(5s));
  });
  auto server = listener.accept(deadline_in(5s));
  auto got = server.recv_frame(100, deadline_in(5s));
  CHECK(std::string(got.begin(), got.end()) == "hello rfaas");
  try {
    server.recv_frame(4096, deadline_in(5s));
    FAIL("oversized frame accepted");
  } catch (const NetError& e) {
    CHECK(e.code() == NetErrc::too_large);
  }
  client.join();
}

TEST_CASE("waits are bounded and a closed peer is noticed", "[net]") {
  auto listener = TcpListener::bind("127.0.0.1", 0);
  SECTION("accept with nobody connecting times out") {
    auto t0 = std::chrono::steady_clock::now();
    try {
      listener.accept(deadline_in(100ms));
      FAIL("accepted nothing");
    } catch (const NetError& e) {
      CHECK(e.code() == NetErrc::timeout);
    }
    CHECK(std::chrono::steady_clock::now() - t0 >= 90ms);
  }
  SECTION("recv from a silent peer times out, then its close is seen") {
    auto client = TcpStream::connect({"127.0.0.1", listener.port()}, deadline_in(5s));
    auto server = listener.accept(deadline_in(5s));
    CHECK_FALSE(server.peer_closed());
    uint8_t b;
    try {
      server.recv_all(&b, 1, deadline_in(50ms));
      FAIL("received from a silent peer");
    } catch (const NetError& e) {
      CHECK(e.code() == NetErrc::timeout);
    }
    client = TcpStream();
    std::this_thread::sleep_for(20ms);
    CHECK(server.peer_closed());
    try {
      server.recv_all(&b, 1, deadline_in(1s));
      FAIL("received from a closed peer");
    } catch (const NetError& e) {
      CHECK(e.code() == NetErrc::closed);
    }
  }
  SECTION("connect to a port nobody listens on is refused") {
    uint16_t port = listener.port();
    listener = TcpListener::bind("127.0.0.1", 0);  // frees the old port
    try {
      TcpStream::connect({"127.0.0.1", port}, deadline_in(2s));
      FAIL("connected to nothing");
    } catch (const NetError& e) {
      CHECK(e.code() == NetErrc::refused);
    }
  }
}

TEST_CASE("session admission caps all connections and those of one peer", "[net]") {
  SessionAdmission a({4, 2});
  std::string why;
  CHECK(a.admit("10.0.0.1", &why));
  CHECK(a.admit("10.0.0.1", &why));
  CHECK_FALSE(a.admit("10.0.0.1", &why));  // its share is taken
  CHECK(why.find("per peer") != std::string::npos);
  why.clear();
  CHECK_FALSE(a.admit("10.0.0.1", &why));  // told at most once a second
  CHECK(why.empty());
  CHECK(a.admit("10.0.0.2", &why));  // another peer is not held back
  CHECK(a.admit("10.0.0.3", &why));
  CHECK_FALSE(a.admit("10.0.0.4", &why));  // the cap on all
  CHECK(a.sessions() == 4);
  a.release("10.0.0.1");
  CHECK(a.admit("10.0.0.1", &why));  // a share comes back as its sessions end
  a.release("10.0.0.9");  // unknown: nothing happens
  CHECK(a.sessions() == 4);
}

TEST_CASE("a stream tells its peer's address", "[net]") {
  auto listener = TcpListener::bind("127.0.0.1", 0);
  auto client = TcpStream::connect(HostPort{"127.0.0.1", listener.port()}, deadline_in(5s));
  auto server = listener.accept(deadline_in(5s));
  CHECK(server.peer_host() == "127.0.0.1");
  CHECK(TcpStream().peer_host().empty());
}

namespace {
long status_kb(const char* field) {  // a field of /proc/self/status, in kB
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(field, 0) == 0) return std::stol(line.substr(std::strlen(field)));
  return -1;
}
}  // namespace

TEST_CASE("a frame's memory follows the bytes that arrive, not the size announced", "[net]") {
  auto listener = TcpListener::bind("127.0.0.1", 0);
  auto client = TcpStream::connect(HostPort{"127.0.0.1", listener.port()}, deadline_in(5s));
  auto server = listener.accept(deadline_in(5s));
  // Announce 200 MiB, send 10 bytes, go away.
  const uint32_t announced = 200u << 20;
  uint8_t header[4] = {static_cast<uint8_t>(announced), static_cast<uint8_t>(announced >> 8),
                       static_cast<uint8_t>(announced >> 16), static_cast<uint8_t>(announced >> 24)};
  REQUIRE(::send(client.fd(), header, sizeof header, 0) == 4);
  REQUIRE(::send(client.fd(), "0123456789", 10, 0) == 10);
  client = TcpStream();
  {
    std::ofstream clear("/proc/self/clear_refs");
    clear << "5";  // resets the peak resident size (VmHWM) to the current one
  }
  const long before = status_kb("VmRSS:");
  CHECK_THROWS_AS(server.recv_frame(256u << 20, deadline_in(5s)), NetError);
  // The old code zero-filled the announced 200 MiB at once. Now: a chunk, plus (under ASan) the
  // shadow of the reserved address space, 25 MiB.
  CHECK(status_kb("VmHWM:") - before < 64 * 1024);
}
