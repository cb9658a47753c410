// The cycle clock the hot paths keep time with (runtime/clock/cycle_clock.hpp): its measured
// rate must turn ticks into wall-clock time, since client timeouts are computed in ticks.
#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "clock/cycle_clock.hpp"

using rfaas::CycleClock;
using namespace std::chrono_literals;

TEST_CASE("cycle clock ticks convert to wall-clock time", "[clock]") {
  REQUIRE(CycleClock::ticks_per_ns() > 0);
  // A sleep measured both ways: the rate is off by far less than 10 % (a wrong rate would make
  // every timeout wrong by the same factor).
  auto t0 = std::chrono::steady_clock::now();
  uint64_t c0 = CycleClock::now();
  std::this_thread::sleep_for(50ms);
  uint64_t c1 = CycleClock::now();
  double wall = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
  double ticked = CycleClock::to_ns(c1 - c0);
  CHECK(ticked > 0.9 * wall);
  CHECK(ticked < 1.1 * wall);
  // Conversions both ways agree.
  CHECK(CycleClock::to_ns(CycleClock::ticks(1ms)) == Approx(1e6).epsilon(0.001));
}

TEST_CASE("cycle clock durations are clamped, so deadlines cannot wrap", "[clock]") {
  CHECK(CycleClock::ticks(-5ms) == 0);
  CHECK(CycleClock::ticks(0ns) == 0);
  CHECK(CycleClock::ticks(std::chrono::nanoseconds::max()) == uint64_t{1} << 62);
  uint64_t now = CycleClock::now();
  CHECK(now + CycleClock::ticks(std::chrono::hours(24 * 365)) > now);
}
