// A cheap clock for per-invocation accounting on the hot path: the TSC where there is one
// (a few ns to read, no syscall), calibrated once against steady_clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <thread>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace rfaas::executor {

class CycleClock {
 public:
  static uint64_t now() noexcept {
#if defined(__x86_64__)
    return __rdtsc();
#else
    return static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
#endif
  }
  // Measures ticks per nanosecond over ~20 ms; call once at startup.
  static double calibrate() {
    auto t0 = std::chrono::steady_clock::now();
    uint64_t c0 = now();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    uint64_t c1 = now();
    auto t1 = std::chrono::steady_clock::now();
    double ns = std::chrono::duration<double, std::nano>(t1 - t0).count();
    return ns > 0 ? static_cast<double>(c1 - c0) / ns : 1.0;
  }
};

}  // namespace rfaas::executor
