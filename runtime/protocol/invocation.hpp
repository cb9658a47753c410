// The invocation path's data layouts: what a client writes into an executor's input slot, and
// what the immediates of the request and the response carry. Plain data, no behaviour.
//
//   request:  one write-with-immediate of [InvocationHeader | payload] into input slot `slot`
//             imm = slot (6 bits) | function index (16 bits) | reserved (10 bits, zero)
//   response: one write-with-immediate of the result to header.out_address (key out_key)
//             imm = slot (6 bits) | status (3 bits) | result size (23 bits)
#pragma once

#include <cstddef>
#include <cstdint>

namespace rfaas::protocol {

struct InvocationHeader {
  uint64_t out_address;   // where the result goes: the caller's RemoteRegion address + offset
  uint64_t out_key;       // the caller's key for that memory
  uint32_t in_size;       // payload bytes that follow this header
  uint32_t out_capacity;  // bytes the result may take at out_address
};
static_assert(sizeof(InvocationHeader) == 24, "the header is part of the wire format");

inline constexpr uint32_t kSlotBits = 6;
inline constexpr uint32_t kMaxSlots = 1u << kSlotBits;  // per worker
inline constexpr uint32_t kFunctionBits = 16;
inline constexpr uint32_t kMaxFunctions = 1u << kFunctionBits;
inline constexpr uint32_t kStatusBits = 3;
inline constexpr uint32_t kResultSizeBits = 32 - kSlotBits - kStatusBits;
inline constexpr uint64_t kMaxResultSize = (1ull << kResultSizeBits) - 1;  // 8 MiB - 1
// Per-lease capacities are bounded by what the immediates can describe.
inline constexpr uint64_t kMaxInputCapacity = 1ull << 30;
inline constexpr uint64_t kMaxOutputCapacity = kMaxResultSize;

// What the executor says about one invocation (3 bits on the wire).
enum class InvocationStatus : uint8_t {
  ok = 0,
  unknown_function = 1,   // index beyond the functions resolved at deploy
  payload_too_large = 2,  // header.in_size beyond the slot
  output_too_large = 3,   // the function returned more than the capacity
  bad_request = 4,        // slot out of range or an inconsistent header
};

constexpr uint32_t request_imm(uint32_t slot, uint32_t function) {
  return (slot & (kMaxSlots - 1)) | ((function & (kMaxFunctions - 1)) << kSlotBits);
}
constexpr uint32_t request_slot(uint32_t imm) { return imm & (kMaxSlots - 1); }
constexpr uint32_t request_function(uint32_t imm) { return (imm >> kSlotBits) & (kMaxFunctions - 1); }
constexpr uint32_t request_reserved(uint32_t imm) { return imm >> (kSlotBits + kFunctionBits); }

constexpr uint32_t response_imm(uint32_t slot, InvocationStatus status, uint32_t size) {
  return (slot & (kMaxSlots - 1)) | (static_cast<uint32_t>(status) << kSlotBits) |
         (size << (kSlotBits + kStatusBits));
}
constexpr uint32_t response_slot(uint32_t imm) { return imm & (kMaxSlots - 1); }
constexpr InvocationStatus response_status(uint32_t imm) {
  return static_cast<InvocationStatus>((imm >> kSlotBits) & ((1u << kStatusBits) - 1));
}
constexpr uint32_t response_size(uint32_t imm) { return imm >> (kSlotBits + kStatusBits); }

// Input slot `s` of a worker starts at s * input_slot_stride(capacity) in its input region.
constexpr uint64_t input_slot_stride(uint64_t input_capacity) {
  return (sizeof(InvocationHeader) + input_capacity + 63) & ~uint64_t{63};
}

// What a client sends with each worker connection, and what the worker answers.
struct WorkerHello {
  uint32_t worker;   // 0 .. workers-1
  uint32_t version;  // kWorkerHelloVersion
  uint64_t lease_id;
};
inline constexpr uint32_t kWorkerHelloVersion = 1;

}  // namespace rfaas::protocol
