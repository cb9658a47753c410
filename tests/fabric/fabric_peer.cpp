// The second process of the fabric tests: connects to the test's listener and plays one role.
//   fabric_peer echo ADDRESS          write every received message back to the same place
//   fabric_peer target ADDRESS        keep a known pattern; when the test side goes away, exit
//                                     with kTargetIntact, kTargetIntactSawError or kTargetCorrupted
//   fabric_peer write-after MS ADDRESS  sleep MS, then write one 64-byte message (slot 0, seed 7)
// Exits 0 when the test side goes away, 2 when its 60 s lifetime ends, 3 on a transport error.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <deque>
#include <string>
#include <thread>
#include <vector>

#include "fabric/fabric_test_protocol.hpp"
#include "rfaas/fabric/fabric.hpp"

using namespace rfaas;
using namespace rfaas::testing;

namespace {

struct Reply {
  size_t offset;
  size_t length;
  uint32_t imm;
};

int run(const std::string& mode, const std::string& address, int delay_ms) {
  auto domain = fabric::open_domain(fabric::Config::from_env());
  std::vector<uint8_t> buffer(kPeerBufferSize);
  if (mode == "target") fill_pattern(buffer.data(), buffer.size(), kUntouchedSeed);
  auto mr = domain->register_memory(buffer.data(), buffer.size(), fabric::Access::remote_write);
  auto ep = domain->create_endpoint();
  fabric::ConnectionData theirs;
  ep->connect(address, fabric::make_connection_data(mr->remote()), theirs, std::chrono::seconds(10));
  auto test_region = fabric::read_connection_data<fabric::RemoteRegion>(theirs);

  std::deque<Reply> pending;
  if (mode == "write-after") {
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    fill_pattern(buffer.data(), 64, 7);
    pending.push_back({0, 64, echo_imm(0, 64)});
  }

  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  uint32_t errors_seen = 0;
  bool landed = false;
  auto target_verdict = [&] {
    if (landed || check_pattern(buffer.data(), buffer.size(), kUntouchedSeed) != buffer.size()) return kTargetCorrupted;
    return errors_seen ? kTargetIntactSawError : kTargetIntact;
  };
  fabric::Completion comps[16];
  while (std::chrono::steady_clock::now() < end) {
    int n = ep->poll(comps, 16);
    for (int i = 0; i < n; ++i) {
      const auto& c = comps[i];
      if (c.kind == fabric::Completion::Kind::error) {
        if (c.error == fabric::Errc::peer_lost) return mode == "target" ? target_verdict() : 0;
        if (mode == "target") {
          ++errors_seen;
          continue;
        }
        std::fprintf(stderr, "fabric_peer: error completion: %s\n", fabric::to_string(c.error));
        return 3;
      }
      if (c.kind != fabric::Completion::Kind::write_received) continue;
      if (mode == "echo") pending.push_back({imm_slot(c.imm) * kSlotStride, imm_size(c.imm), c.imm});
      if (mode == "target") landed = true;  // nothing may land here
    }
    while (!pending.empty()) {
      const Reply& r = pending.front();
      auto rc = ep->write_imm(*mr, r.offset, r.length, test_region, r.offset, r.imm, 0);
      if (rc == fabric::Errc::again) break;
      if (rc == fabric::Errc::peer_lost) return mode == "target" ? target_verdict() : 0;
      if (rc != fabric::Errc::ok) {
        std::fprintf(stderr, "fabric_peer: write_imm: %s\n", fabric::to_string(rc));
        return 3;
      }
      pending.pop_front();
    }
  }
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: fabric_peer echo|target ADDRESS | write-after MS ADDRESS\n");
    return 64;
  }
  std::string mode = argv[1];
  int delay_ms = 0;
  std::string address = argv[2];
  if (mode == "write-after") {
    if (argc < 4) return 64;
    delay_ms = std::stoi(argv[2]);
    address = argv[3];
  }
  try {
    return run(mode, address, delay_ms);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fabric_peer: %s\n", e.what());
    return 3;
  }
}
