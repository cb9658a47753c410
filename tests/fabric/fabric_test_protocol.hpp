// What the fabric tests and their peer process agree on: buffer layout, byte patterns and the
// meaning of immediates. Test-only; the real protocol lives in runtime/protocol.
#pragma once

#include <cstddef>
#include <cstdint>

namespace rfaas::testing {

inline constexpr size_t kPeerBufferSize = 2u << 20;  // 2 MiB: holds a 1 MiB message at slot 0
inline constexpr size_t kSlotStride = 4096;
inline constexpr uint32_t kSizeBits = 21;            // sizes up to 1 MiB (2^20) inclusive
// Exit codes of `fabric_peer target` once the test side goes away.
inline constexpr int kTargetIntact = 0;             // no byte changed, no error completion seen
inline constexpr int kTargetIntactSawError = 1;     // no byte changed, an error completion seen
inline constexpr int kTargetCorrupted = 4;          // a byte changed or a write landed

// Echo requests: the peer writes the same bytes back to the same offset of the test's buffer.
inline constexpr uint32_t echo_imm(uint32_t slot, uint32_t size) { return (slot << kSizeBits) | size; }
inline constexpr uint32_t imm_slot(uint32_t imm) { return imm >> kSizeBits; }
inline constexpr uint32_t imm_size(uint32_t imm) { return imm & ((1u << kSizeBits) - 1); }

// Deterministic bytes that differ per message, so a misplaced or stale byte is caught.
inline uint8_t pattern_byte(uint32_t seed, size_t i) {
  uint32_t x = seed * 2654435761u + static_cast<uint32_t>(i) * 40503u;
  return static_cast<uint8_t>(x ^ (x >> 13) ^ (x >> 24));
}
inline void fill_pattern(uint8_t* p, size_t n, uint32_t seed) {
  for (size_t i = 0; i < n; ++i) p[i] = pattern_byte(seed, i);
}
// Index of the first wrong byte, or n when all match.
inline size_t check_pattern(const uint8_t* p, size_t n, uint32_t seed) {
  for (size_t i = 0; i < n; ++i)
    if (p[i] != pattern_byte(seed, i)) return i;
  return n;
}

inline constexpr uint32_t kUntouchedSeed = 0xC0FFEE;

}  // namespace rfaas::testing
