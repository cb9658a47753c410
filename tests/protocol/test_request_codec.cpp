// The request codec without a fabric: what the client encodes, written into a byte array laid out
// as a worker's input region, is what the worker decodes; and what a broken client could write is
// refused the way the worker must refuse it.
#include <catch2/catch.hpp>
#include <cstring>
#include <vector>

#include "protocol/request_codec.hpp"

using namespace rfaas::protocol;
using Kind = DecodedRequest::Kind;

namespace {

// A worker's input region and its per-slot state, and a client's view of the same slots.
struct Wire {
  uint32_t slots;
  uint64_t stride;
  std::vector<uint8_t> input;
  std::vector<uint8_t> framed;       // the worker's
  std::vector<SlotTarget> targets;   // the client's

  Wire(uint32_t slots, uint64_t capacity)
      : slots(slots), stride(input_slot_stride(capacity)), input(stride * slots), framed(slots, 0), targets(slots) {}

  // The client's side of one invocation: encode, "write" (header if any, then payload), record.
  uint32_t send(uint32_t slot, uint32_t function, const InvocationHeader& h, const std::vector<uint8_t>& payload,
                bool* compact = nullptr) {
    const EncodedInvocation e = encode_invocation(targets[slot], slot, stride, function, h);
    REQUIRE(e.offset + e.header_bytes + payload.size() <= input.size());
    if (!e.compact()) std::memcpy(&input[e.offset], &h, sizeof h);
    if (!payload.empty()) std::memcpy(&input[e.offset + e.header_bytes], payload.data(), payload.size());
    if (!e.compact()) record_header(targets[slot], h);
    if (compact) *compact = e.compact();
    return e.imm;
  }
  DecodedRequest receive(uint32_t imm) { return decode_request(imm, input.data(), stride, slots, framed.data()); }
  const uint8_t* payload(uint32_t slot) const { return input.data() + slot_payload_offset(slot, stride); }
};

InvocationHeader target(uint64_t address, uint32_t in_size, uint32_t capacity = 4096, uint64_t key = 7) {
  return {address, key, in_size, capacity};
}

}  // namespace

TEST_CASE("a slot's first request is framed, and the next ones to the same target go compact", "[codec]") {
  Wire w(4, 1 << 20);
  std::vector<uint8_t> p(100, 0xAB);
  bool compact = true;
  auto d = w.receive(w.send(2, 5, target(0x1000, 100), p, &compact));
  CHECK_FALSE(compact);
  REQUIRE(d.kind == Kind::invoke);
  CHECK(d.slot == 2);
  CHECK(d.function == 5);
  CHECK_FALSE(d.reserved_set);
  CHECK(d.header.out_address == 0x1000);
  CHECK(d.header.out_key == 7);
  CHECK(d.header.in_size == 100);
  CHECK(d.header.out_capacity == 4096);
  CHECK(std::memcmp(w.payload(2), p.data(), p.size()) == 0);

  // Same target, another size: compact, the size in the immediate.
  std::vector<uint8_t> q(37, 0xCD);
  d = w.receive(w.send(2, 5, target(0x1000, 37), q, &compact));
  CHECK(compact);
  REQUIRE(d.kind == Kind::invoke);
  CHECK(d.function == 5);
  CHECK(d.header.in_size == 37);
  CHECK(d.header.out_address == 0x1000);
  CHECK(std::memcmp(w.payload(2), q.data(), q.size()) == 0);

  // An empty payload goes compact too.
  d = w.receive(w.send(2, 5, target(0x1000, 0), {}, &compact));
  CHECK(compact);
  CHECK(d.header.in_size == 0);
}

TEST_CASE("a new target, a large function index or another key frames the request again", "[codec]") {
  Wire w(2, 1 << 20);
  std::vector<uint8_t> p(16, 1);
  bool compact = true;
  w.receive(w.send(0, 1, target(0x1000, 16), p));
  struct Case {
    const char* what;
    uint32_t function;
    InvocationHeader h;
  } cases[] = {
      {"another address", 1, target(0x2000, 16)},
      {"another key", 1, target(0x2000, 16, 4096, 8)},
      {"another capacity", 1, target(0x2000, 16, 64, 8)},
      {"a function beyond the compact field", kMaxCompactFunctions, target(0x2000, 16, 64, 8)},
  };
  for (const auto& c : cases) {
    INFO(c.what);
    auto d = w.receive(w.send(0, c.function, c.h, p, &compact));
    CHECK_FALSE(compact);
    REQUIRE(d.kind == Kind::invoke);
    CHECK(d.function == c.function);
    CHECK(d.header.out_address == c.h.out_address);
    CHECK(d.header.out_key == c.h.out_key);
    CHECK(d.header.out_capacity == c.h.out_capacity);
  }
}

TEST_CASE("payloads beyond the compact size field go compact only at the header's own size", "[codec]") {
  const uint32_t big = kMaxCompactPayload + 100;
  Wire w(1, big + 1000);
  std::vector<uint8_t> p(big, 3);
  bool compact = true;
  auto d = w.receive(w.send(0, 0, target(0x1000, big), p, &compact));
  CHECK_FALSE(compact);
  CHECK(d.header.in_size == big);
  // The same size again: compact, the size taken from the header.
  const uint32_t imm = w.send(0, 0, target(0x1000, big), p, &compact);
  CHECK(compact);
  CHECK(compact_request_size(imm) == kCompactSizeFromHeader);
  d = w.receive(imm);
  REQUIRE(d.kind == Kind::invoke);
  CHECK(d.header.in_size == big);
  // Another large size: framed again (the size field cannot carry it).
  std::vector<uint8_t> q(big + 10, 4);
  d = w.receive(w.send(0, 0, target(0x1000, big + 10), q, &compact));
  CHECK_FALSE(compact);
  CHECK(d.header.in_size == big + 10);
  // The largest size the field carries goes compact to that target.
  std::vector<uint8_t> r(kMaxCompactPayload, 5);
  d = w.receive(w.send(0, 0, target(0x1000, kMaxCompactPayload), r, &compact));
  CHECK(compact);
  CHECK(d.header.in_size == kMaxCompactPayload);
}

TEST_CASE("gets and puts: the region ops and the header a get leaves", "[codec]") {
  Wire w(3, 4096);
  const EncodedGet g = encode_get(1, w.stride);
  const InvocationHeader h = target(0x5000, sizeof(RegionGet), 512);
  const RegionGet body{3, 0, 128, 256};
  std::memcpy(&w.input[g.offset], &h, sizeof h);
  std::memcpy(&w.input[g.offset + sizeof h], &body, sizeof body);
  CHECK(g.bytes == sizeof h + sizeof body);
  auto d = w.receive(g.imm);
  REQUIRE(d.kind == Kind::get);
  CHECK(d.slot == 1);
  CHECK(d.header.out_address == 0x5000);
  CHECK(d.get.region == 3);
  CHECK(d.get.offset == 128);
  CHECK(d.get.length == 256);
  CHECK(w.framed[1] == 1);  // a get's header is the slot's header now

  d = w.receive(encode_put(2));
  CHECK(d.kind == Kind::put);
  CHECK(d.slot == 2);
  CHECK(w.framed[2] == 0);  // a put writes no header
}

TEST_CASE("what a broken client writes is dropped or answered bad_request, never misread", "[codec]") {
  Wire w(2, 4096);
  SECTION("a compact request to a slot that never had a header is dropped") {
    CHECK(w.receive(compact_request_imm(1, 0, 8)).kind == Kind::drop);
    CHECK(w.framed[1] == 0);
  }
  SECTION("a slot beyond the lease's is dropped, in every form") {
    CHECK(w.receive(request_imm(2, 0)).kind == Kind::drop);
    CHECK(w.receive(compact_request_imm(63, 0, 8)).kind == Kind::drop);
    CHECK(w.receive(encode_put(5)).kind == Kind::drop);
    CHECK(w.receive(encode_get(5, w.stride).imm).kind == Kind::drop);
  }
  SECTION("region ops with reserved bits or an unknown op are dropped") {
    CHECK(w.receive(encode_put(0) | (1u << 20)).kind == Kind::drop);
    CHECK(w.receive(region_op_imm(0, static_cast<RegionOp>(2))).kind == Kind::drop);
    CHECK(w.receive(region_op_imm(0, static_cast<RegionOp>(3))).kind == Kind::drop);
  }
  SECTION("a framed request with reserved bits is decoded and flagged, so that its slot is answered") {
    const InvocationHeader h = target(0x1000, 4);
    std::memcpy(&w.input[slot_header_offset(0, w.stride)], &h, sizeof h);
    auto d = w.receive(request_imm(0, 1) | (1u << 29));
    REQUIRE(d.kind == Kind::invoke);
    CHECK(d.reserved_set);
    CHECK(d.header.out_address == 0x1000);
  }
  SECTION("every immediate decodes without reading past the region") {
    // Slots beyond `slots` must never be touched: a region of exactly two slots, checked by ASan.
    for (uint32_t imm = 0; imm < (1u << 16); ++imm) {
      for (uint32_t high : {0u, 1u << 30, 1u << 31, 3u << 30}) {
        auto d = w.receive(imm | high);
        if (d.kind != Kind::drop) CHECK(d.slot < w.slots);
      }
    }
  }
}
