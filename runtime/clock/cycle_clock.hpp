// The cycle counter as a clock for hot loops: the TSC on x86-64 (tens of nanoseconds to read even
// under emulation, never a syscall), steady_clock elsewhere. steady_clock itself may be a syscall:
// a kernel that finds the TSC unstable (a guest under emulation, some VMs) reads the HPET instead,
// 1-2 us per read in the Soft-RoCE guest. Hot loops therefore keep time in ticks. Assumes a
// constant-rate TSC that agrees across cores (every x86-64 server CPU of the last decade, and
// QEMU's emulated one); it bounds waits, it is not a wall clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <thread>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace rfaas {

class CycleClock {
 public:
  static uint64_t now() noexcept {
#if defined(__x86_64__)
    return __rdtsc();
#else
    return static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
#endif
  }

  // Ticks per nanosecond, measured once per process against steady_clock over the time since the
  // program was loaded; the first call waits until that span is at least kMinSpan.
  static double ticks_per_ns() noexcept {
    static const double rate = measure();
    return rate;
  }
  // A duration in ticks; at most 2^62, so that now() + ticks(d) cannot wrap.
  static uint64_t ticks(std::chrono::nanoseconds d) noexcept {
    double t = static_cast<double>(d.count()) * ticks_per_ns();
    return t <= 0 ? 0 : t >= 0x1p62 ? uint64_t{1} << 62 : static_cast<uint64_t>(t);
  }
  static double to_ns(uint64_t ticks) noexcept { return static_cast<double>(ticks) / ticks_per_ns(); }

  static constexpr std::chrono::milliseconds kMinSpan{2};

 private:
  struct Anchor {
    uint64_t ticks;
    std::chrono::steady_clock::time_point time;
  };
  static inline const Anchor anchor_{now(), std::chrono::steady_clock::now()};

  static double measure() noexcept {
    auto since = std::chrono::steady_clock::now() - anchor_.time;
    if (since < kMinSpan) std::this_thread::sleep_for(kMinSpan - since);
    // The tick count read on both sides of the clock read: the midpoint stands for its moment.
    uint64_t before = now();
    auto t = std::chrono::steady_clock::now();
    uint64_t after = now();
    double ns = std::chrono::duration<double, std::nano>(t - anchor_.time).count();
    double ticks = static_cast<double>(before / 2 + after / 2 - anchor_.ticks);
    return ns > 0 && ticks > 0 ? ticks / ns : 1.0;
  }
};

}  // namespace rfaas
