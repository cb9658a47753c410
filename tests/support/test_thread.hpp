#pragma once
// Runs `body` on a thread; join() rethrows what it threw (an exception escaping a thread would
// abort the whole test binary instead of failing one case).
#include <exception>
#include <thread>

namespace rfaas::testing {

class TestThread {
 public:
  template <class F>
  explicit TestThread(F body) : thread_([this, body] {
      try {
        body();
      } catch (...) {
        error_ = std::current_exception();
      }
    }) {}
  void join() {
    thread_.join();
    if (error_) std::rethrow_exception(error_);
  }
  ~TestThread() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::exception_ptr error_;
  std::thread thread_;
};

}  // namespace rfaas::testing
