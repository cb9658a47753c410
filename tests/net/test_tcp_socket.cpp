// runtime/net: address parsing, framing limits and bounded waits.
#include <catch2/catch.hpp>
#include <sys/socket.h>
#include <unistd.h>

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

TEST_CASE("a frame read across calls that never wait: byte by byte, too large, closed", "[net]") {
  auto listener = TcpListener::bind("127.0.0.1", 0);
  CHECK_FALSE(listener.try_accept());  // nobody yet: an empty stream, at once
  auto client = TcpStream::connect({"127.0.0.1", listener.port()}, deadline_in(5s));
  TcpStream server;
  for (auto end = deadline_in(5s); !server && Clock::now() < end; std::this_thread::sleep_for(1ms))
    server = listener.try_accept();
  REQUIRE(server);

  FrameReader reader(64);
  CHECK_FALSE(reader.read_available(server));  // nothing sent
  const uint8_t frame[] = {5, 0, 0, 0, 'r', 'f', 'a', 'a', 's'};
  for (uint8_t b : frame) {
    CHECK_FALSE(reader.read_available(server));
    client.send_all(&b, 1, deadline_in(1s));
    std::this_thread::sleep_for(2ms);
  }
  bool whole = false;
  for (auto end = deadline_in(5s); !whole && Clock::now() < end; std::this_thread::sleep_for(1ms))
    whole = reader.read_available(server);
  REQUIRE(whole);
  CHECK(std::string(reader.frame().begin(), reader.frame().end()) == "rfaas");

  FrameReader small(4);
  client.send_all(frame, sizeof frame, deadline_in(1s));
  std::this_thread::sleep_for(20ms);
  try {
    small.read_available(server);
    FAIL("a frame past the limit was read");
  } catch (const NetError& e) {
    CHECK(e.code() == NetErrc::too_large);
  }
  // A peer that closes mid-frame.
  client = TcpStream::connect({"127.0.0.1", listener.port()}, deadline_in(5s));
  server = TcpStream();
  for (auto end = deadline_in(5s); !server && Clock::now() < end; std::this_thread::sleep_for(1ms))
    server = listener.try_accept();
  REQUIRE(server);
  client.send_all(frame, 6, deadline_in(1s));
  client = TcpStream();
  std::this_thread::sleep_for(20ms);
  FrameReader rest(64);
  try {
    for (auto end = deadline_in(5s); Clock::now() < end; std::this_thread::sleep_for(1ms))
      if (rest.read_available(server)) FAIL("a closed peer gave a frame");
    FAIL("a closed peer was not noticed within 5 s");
  } catch (const NetError& e) {
    CHECK(e.code() == NetErrc::closed);
  }
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

namespace {
// A connected pair: the first is the session's descriptor, the second tells whether it was shut.
struct Pair {
  int fds[2] = {-1, -1};
  Pair() { REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0); }
  ~Pair() { ::close(fds[0]); ::close(fds[1]); }
  bool shut() const {
    char b;
    return ::recv(fds[1], &b, 1, MSG_DONTWAIT) == 0;
  }
};
}  // namespace

TEST_CASE("session admission: a stranger past a cap pushes out the oldest stranger, never an authenticated session", "[net]") {
  SessionAdmission a({4, 2, 2, 2000});
  std::string why;
  Pair p[8];
  auto t1 = a.admit("10.0.0.1", p[0].fds[0], &why);
  auto t2 = a.admit("10.0.0.1", p[1].fds[0], &why);
  REQUIRE((t1 && t2));
  CHECK(why.empty());
  // Its share of strangers taken: the third pushes out the oldest (t1), and is told.
  auto t3 = a.admit("10.0.0.1", p[2].fds[0], &why);
  CHECK(t3);
  CHECK(p[0].shut());
  CHECK_FALSE(p[1].shut());
  CHECK(why.find("pushed out") != std::string::npos);
  why.clear();
  a.release(t1);  // its thread ends after the push-out: nothing counted twice
  CHECK(a.sessions() == 2);
  // t2 authenticates: no longer a stranger of 10.0.0.1, never pushed out.
  CHECK(a.authenticated(t2, "uid:1000"));
  auto t4 = a.admit("10.0.0.1", p[3].fds[0], &why);  // 10.0.0.1 has one stranger (t3): fits
  CHECK(why.empty());
  auto t5 = a.admit("10.0.0.1", p[4].fds[0], &why);  // pushes out t3, not t2
  CHECK(p[2].shut());
  CHECK_FALSE(p[1].shut());
  CHECK(why.empty());  // told at most once a second
  a.release(t3);
  // The cap on all (4): t2, t4, t5 and one more; the next pushes out the oldest stranger (t4).
  auto t6 = a.admit("10.0.0.2", p[5].fds[0], &why);
  auto t7 = a.admit("10.0.0.3", p[6].fds[0], &why);
  CHECK((t6 && t7));
  CHECK(p[3].shut());
  a.release(t4);
  CHECK(a.sessions() == 4);
  // The identity's own cap (2): a second session as uid:1000 is fine, a third is not.
  CHECK(a.authenticated(t5, "uid:1000"));
  CHECK_FALSE(a.authenticated(t6, "uid:1000"));
  CHECK(a.authenticated(t6, "node:n1"));
  CHECK(a.authenticated(t7, "uid:1001"));
  // All authenticated and the cap on all reached: refused, nobody pushed out.
  CHECK(a.admit("10.0.0.4", p[7].fds[0], &why) == 0);
  for (int i : {1, 4, 5, 6}) CHECK_FALSE(p[i].shut());
  a.release(t2);  // a share comes back as sessions end
  CHECK(a.admit("10.0.0.4", p[7].fds[0], &why));
  a.release(999);  // unknown: nothing happens
  CHECK(a.sessions() == 4);
}

TEST_CASE("session admission: a flood's silent strangers are pushed out before one that has spoken", "[net]") {
  SessionAdmission a({16, 3, 4, 2000});
  std::string why;
  Pair p[6];
  // The newcomer arrives first: the oldest of its peer, so a plain FIFO would push it out first.
  auto spoken = a.admit("127.0.0.1", p[0].fds[0], &why);
  auto waiting = a.admit("127.0.0.1", p[1].fds[0], &why);
  auto silent = a.admit("127.0.0.1", p[2].fds[0], &why);
  REQUIRE((spoken && waiting && silent));
  a.heard(spoken);  // its thread read its first message (its proof is under way)
  REQUIRE(::send(p[1].fds[1], "x", 1, 0) == 1);  // sent, not read yet by its thread
  // Past the cap of 3: the silent one goes, though two are older.
  auto flood1 = a.admit("127.0.0.1", p[3].fds[0], &why);
  CHECK(flood1);
  CHECK(p[2].shut());
  CHECK_FALSE(p[0].shut());
  CHECK_FALSE(p[1].shut());
  a.release(silent);
  // And the next silent one after it: the flood churns through its own connections.
  auto flood2 = a.admit("127.0.0.1", p[4].fds[0], &why);
  CHECK(p[3].shut());
  CHECK_FALSE(p[0].shut());
  CHECK_FALSE(p[1].shut());
  a.release(flood1);
  // Every stranger has spoken: the cap still holds, by age.
  a.heard(flood2);
  auto late = a.admit("127.0.0.1", p[5].fds[0], &why);
  CHECK(late);
  CHECK(p[0].shut());
  CHECK_FALSE(p[1].shut());
  CHECK_FALSE(p[4].shut());
  a.release(spoken);
  CHECK(a.sessions() == 3);
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

TEST_CASE("both ends name the address the client reached alike", "[net]") {
  auto listener = TcpListener::bind("127.0.0.1", 0);
  auto client = TcpStream::connect(HostPort{"127.0.0.1", listener.port()}, deadline_in(5s));
  auto server = listener.accept(deadline_in(5s));
  const std::string reached = "127.0.0.1:" + std::to_string(listener.port());
  CHECK(client.peer_address() == reached);
  CHECK(server.local_address() == reached);
  CHECK(server.peer_address() == client.local_address());
  CHECK(TcpStream().peer_address().empty());
  // A dual-stack listener reached over IPv4: the server sees ::ffff:127.0.0.1, and says 127.0.0.1.
  TcpListener any;
  try {
    any = TcpListener::bind("::", 0);
  } catch (const NetError&) {
    WARN("no IPv6 here: the dual-stack half is not run");
    return;
  }
  auto v4 = TcpStream::connect(HostPort{"127.0.0.1", any.port()}, deadline_in(5s));
  auto at = any.accept(deadline_in(5s));
  CHECK(at.local_address() == v4.peer_address());
  CHECK(at.local_address() == "127.0.0.1:" + std::to_string(any.port()));
}
