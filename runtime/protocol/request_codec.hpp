// The one place that decides a request's form (invocation.hpp: framed, compact, region op) and
// reads it back. The client encodes with it, the executor's workers decode with it, the tests
// check both against each other without a fabric. Plain functions over plain data: no I/O, no
// allocation, nothing that throws (they run on the invocation path).
#pragma once

#include <cstdint>
#include <cstring>

#include "protocol/invocation.hpp"

namespace rfaas::protocol {

// The output target the header in an executor's input slot names: the last request that carried
// a header (a framed invocation or a get). The client keeps one per slot, to know when a request
// may go compact; the executor needs only `framed` (a compact request needs a header before it).
struct SlotTarget {
  bool framed = false;
  uint64_t out_address = 0;
  uint64_t out_key = 0;
  uint32_t out_capacity = 0;
  uint32_t in_size = 0;
};

// One invocation as written: `header_bytes` of header (0: compact) followed by the payload, at
// `offset` in the worker's input region, with immediate `imm`.
struct EncodedInvocation {
  uint32_t imm;
  uint32_t header_bytes;
  uint64_t offset;
  constexpr bool compact() const { return header_bytes == 0; }
};

// Compact when the slot's header already names `h`'s target and the request fits the compact
// fields; a payload beyond the compact size field goes compact too when the header's size is its own.
constexpr EncodedInvocation encode_invocation(const SlotTarget& t, uint32_t slot, uint64_t stride, uint32_t function,
                                              const InvocationHeader& h) noexcept {
  const bool compact = t.framed && t.out_address == h.out_address && t.out_key == h.out_key &&
                       t.out_capacity == h.out_capacity &&
                       (h.in_size <= kMaxCompactPayload || t.in_size == h.in_size) && function < kMaxCompactFunctions;
  if (!compact) {
    return {request_imm(slot, function), static_cast<uint32_t>(sizeof(InvocationHeader)),
            slot_payload_offset(slot, stride) - sizeof(InvocationHeader)};
  }
  const uint32_t size_field = h.in_size <= kMaxCompactPayload ? h.in_size : kCompactSizeFromHeader;
  return {compact_request_imm(slot, function, size_field), 0, slot_payload_offset(slot, stride)};
}

// After a request that carried header `h` was written (a framed invocation or a get).
constexpr void record_header(SlotTarget& t, const InvocationHeader& h) noexcept {
  t = {true, h.out_address, h.out_key, h.out_capacity, h.in_size};
}

// A get: [InvocationHeader | RegionGet] at the slot's header offset.
struct EncodedGet {
  uint32_t imm;
  uint32_t bytes;
  uint64_t offset;
};
constexpr EncodedGet encode_get(uint32_t slot, uint64_t stride) noexcept {
  return {region_op_imm(slot, RegionOp::get), static_cast<uint32_t>(sizeof(InvocationHeader) + sizeof(RegionGet)),
          slot_header_offset(slot, stride)};
}
// A put: the bytes go straight into the region; this immediate asks the worker to acknowledge them.
constexpr uint32_t encode_put(uint32_t slot) noexcept { return region_op_imm(slot, RegionOp::put); }

// What a worker read from one request's immediate and its slot.
struct DecodedRequest {
  enum class Kind : uint8_t {
    invoke,
    put,
    get,
    drop,  // nothing to answer to: a slot beyond the lease's, a compact request before any header,
           // reserved region-op bits or an unknown op. A broken client's; the worker carries on.
  };
  Kind kind = Kind::drop;
  bool reserved_set = false;  // a framed invocation with reserved bits set: answered bad_request
  uint32_t slot = 0;
  uint32_t function = 0;
  InvocationHeader header{};  // invoke and get: the target; in_size is the payload's
  RegionGet get{};            // get only
};

// `input` is the worker's input region of `slots` slots of `stride` bytes; `framed` holds one
// flag per slot, which this keeps (a header written makes a slot's later compact requests valid).
inline DecodedRequest decode_request(uint32_t imm, const uint8_t* input, uint64_t stride, uint32_t slots,
                                     uint8_t* framed) noexcept {
  DecodedRequest r;
  r.slot = request_slot(imm);
  if (r.slot >= slots) return r;
  const uint8_t* base = input + slot_header_offset(r.slot, stride);
  if (request_is_region_op(imm)) {
    if (region_op_reserved(imm) != 0) return r;
    const RegionOp op = request_region_op(imm);
    if (op == RegionOp::put) {
      r.kind = DecodedRequest::Kind::put;
    } else if (op == RegionOp::get) {
      std::memcpy(&r.header, base, sizeof r.header);
      std::memcpy(&r.get, base + sizeof r.header, sizeof r.get);
      framed[r.slot] = 1;
      r.kind = DecodedRequest::Kind::get;
    }
    return r;
  }
  r.function = request_function(imm);
  std::memcpy(&r.header, base, sizeof r.header);
  if (request_is_compact(imm)) {
    if (!framed[r.slot]) return r;
    const uint32_t size = compact_request_size(imm);
    if (size != kCompactSizeFromHeader) r.header.in_size = size;
  } else {
    framed[r.slot] = 1;
    r.reserved_set = request_reserved(imm) != 0;
  }
  r.kind = DecodedRequest::Kind::invoke;
  return r;
}

}  // namespace rfaas::protocol
