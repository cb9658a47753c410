// The invocation path's data layouts: what a client writes into an executor's input slot, and
// what the immediates of the request and the response carry. Plain data, no behaviour.
//
//   request, one write-with-immediate into input slot `slot`, in one of two forms (imm bit 31),
//   or a region op (bit 30, below):
//     framed:  [InvocationHeader | payload] at the slot's header offset (slot_header_offset)
//              imm = slot (6 bits) | function index (16) | reserved (8, zero) | 0 | 0
//     compact: the payload alone at the slot's payload offset (slot_payload_offset); the header the
//              last framed request left in the slot still names the output target
//              imm = slot (6 bits) | function index (8) | payload size (17) | 1
//              a size field of all ones (kCompactSizeFromHeader) means the header's in_size:
//              a payload of any size, as large as the last framed one of the slot
//     Compact requests carry exactly the payload's bytes, so a request of S bytes takes the same
//     packets as a raw S-byte write (one segment, not a gather); clients use them when the slot's
//     target has not changed.
//     region op: imm = slot (6 bits) | op (2) | zero (22) | 1 at bit 30 | 0
//       put: the bytes were written straight into a resident region (its own key); the worker
//            only acknowledges (a zero-byte response to the hello's ack target, status put_done)
//       get: [InvocationHeader | RegionGet] at the slot's header offset; the worker writes the region's
//            bytes to header.out_address (status ok, size = bytes) or answers region_error
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
  function_failed = 5,    // a context-ABI function returned an error status; size carries it
  put_done = 6,           // a put's bytes are in the region (the response to a region put)
  region_error = 7,       // a get named no region or went past its end
};

inline constexpr uint32_t kCompactFlag = 1u << 31;
inline constexpr uint32_t kCompactFunctionBits = 8;
inline constexpr uint32_t kMaxCompactFunctions = 1u << kCompactFunctionBits;
inline constexpr uint32_t kCompactSizeBits = 31 - kSlotBits - kCompactFunctionBits;
inline constexpr uint32_t kCompactSizeFromHeader = (1u << kCompactSizeBits) - 1;
inline constexpr uint32_t kMaxCompactPayload = kCompactSizeFromHeader - 1;  // 128 KiB - 2

constexpr uint32_t request_imm(uint32_t slot, uint32_t function) {
  return (slot & (kMaxSlots - 1)) | ((function & (kMaxFunctions - 1)) << kSlotBits);
}
// For function < kMaxCompactFunctions and in_size <= kMaxCompactPayload (or the sentinel
// kCompactSizeFromHeader) only.
constexpr uint32_t compact_request_imm(uint32_t slot, uint32_t function, uint32_t in_size) {
  return kCompactFlag | (slot & (kMaxSlots - 1)) | ((function & (kMaxCompactFunctions - 1)) << kSlotBits) |
         ((in_size & kCompactSizeFromHeader) << (kSlotBits + kCompactFunctionBits));
}
inline constexpr uint32_t kRegionOpFlag = 1u << 30;
enum class RegionOp : uint32_t { put = 0, get = 1 };
constexpr uint32_t region_op_imm(uint32_t slot, RegionOp op) {
  return kRegionOpFlag | (slot & (kMaxSlots - 1)) | (static_cast<uint32_t>(op) << kSlotBits);
}
constexpr bool request_is_region_op(uint32_t imm) { return (imm & (kCompactFlag | kRegionOpFlag)) == kRegionOpFlag; }
constexpr RegionOp request_region_op(uint32_t imm) { return static_cast<RegionOp>((imm >> kSlotBits) & 3u); }
// The bits of a region op that must be zero.
constexpr uint32_t region_op_reserved(uint32_t imm) { return (imm & ~(kRegionOpFlag | kCompactFlag)) >> (kSlotBits + 2); }

// A get's payload, after the slot's header.
struct RegionGet {
  uint32_t region;
  uint32_t reserved;  // zero
  uint64_t offset;
  uint64_t length;
};
static_assert(sizeof(RegionGet) == 24, "part of the wire format");
// Resident regions per lease.
inline constexpr uint32_t kMaxRegions = 64;

constexpr bool request_is_compact(uint32_t imm) { return (imm & kCompactFlag) != 0; }
// Framed requests only: the bits between the function index and the region-op flag, zero.
constexpr uint32_t request_reserved(uint32_t imm) {
  return (imm & ~(kCompactFlag | kRegionOpFlag)) >> (kSlotBits + kFunctionBits);
}
constexpr uint32_t request_slot(uint32_t imm) { return imm & (kMaxSlots - 1); }
constexpr uint32_t request_function(uint32_t imm) {
  return request_is_compact(imm) ? (imm >> kSlotBits) & (kMaxCompactFunctions - 1)
                                 : (imm >> kSlotBits) & (kMaxFunctions - 1);
}

// Compact requests only: the size field (kCompactSizeFromHeader: the header's in_size).
constexpr uint32_t compact_request_size(uint32_t imm) {
  return (imm >> (kSlotBits + kCompactFunctionBits)) & kCompactSizeFromHeader;
}

constexpr uint32_t response_imm(uint32_t slot, InvocationStatus status, uint32_t size) {
  return (slot & (kMaxSlots - 1)) | (static_cast<uint32_t>(status) << kSlotBits) |
         (size << (kSlotBits + kStatusBits));
}
constexpr uint32_t response_slot(uint32_t imm) { return imm & (kMaxSlots - 1); }
constexpr InvocationStatus response_status(uint32_t imm) {
  return static_cast<InvocationStatus>((imm >> kSlotBits) & ((1u << kStatusBits) - 1));
}
constexpr uint32_t response_size(uint32_t imm) { return imm >> (kSlotBits + kStatusBits); }

// Input slot `s` of a worker starts at s * input_slot_stride(capacity) in its input region. Its
// header sits kSlotHeaderOffset bytes in, so that the payload after it starts on a cache line
// (kSlotPayloadOffset): the executor's copy of a large payload (shm: process_vm_readv) then writes
// aligned lines; with the payload 24 bytes past a line, 1 MiB invocations over shm ran slower.
inline constexpr uint64_t kSlotPayloadOffset = 64;
inline constexpr uint64_t kSlotHeaderOffset = kSlotPayloadOffset - sizeof(InvocationHeader);
// At least a RegionGet after the header (a get's request), whatever the input capacity.
constexpr uint64_t input_slot_stride(uint64_t input_capacity) {
  const uint64_t payload = input_capacity > 24 ? input_capacity : 24;  // sizeof(RegionGet)
  return kSlotPayloadOffset + ((payload + 63) & ~uint64_t{63});
}
constexpr uint64_t slot_header_offset(uint32_t slot, uint64_t stride) { return slot * stride + kSlotHeaderOffset; }
constexpr uint64_t slot_payload_offset(uint32_t slot, uint64_t stride) { return slot * stride + kSlotPayloadOffset; }

// What a client sends with each worker connection, and what the worker answers.
struct WorkerHello {
  uint32_t worker;   // 0 .. workers-1
  uint32_t version;  // kWorkerHelloVersion
  uint64_t lease_id;
  // Where put acknowledgements go (zero-byte writes with immediate): any client memory
  // registered for remote writes.
  uint64_t ack_address;
  uint64_t ack_key;
  // Proof that the connector holds the lease's token: the first 16 bytes of HMAC-SHA256 over
  // the fields above, keyed with worker_hello_key(token) (lease_token.hpp). The executor admits
  // only a hello that carries it; the key itself never travels.
  uint8_t tag[16];
};
static_assert(sizeof(WorkerHello) == 48, "the hello fills the transports' connection data exactly");
// 2: compact requests; 3: region ops; 4: aligned payloads; 5: authenticated
inline constexpr uint32_t kWorkerHelloVersion = 5;

}  // namespace rfaas::protocol
