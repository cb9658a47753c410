#include "executor/output_guard.hpp"

#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <nlohmann/json.hpp>

namespace rfaas::executor::output_guard {

namespace {

struct Guard {
  uintptr_t begin, end;
  uint32_t worker, slot;
  uint64_t capacity;
  const Running* running;
};

std::vector<Guard> g_guards;
std::vector<std::string> g_names;  // JSON-escaped, without quotes
int g_report_fd = -1;
// What takes over after the report: a sanitizer's handler (its report), else the default, death
// by the signal, which the daemon logs. Not the handler that was there: libfabric's PSM
// providers install one that prints a backtrace and exits with status 1, hiding the signal.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kChain = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kChain = true;
#else
constexpr bool kChain = false;
#endif
#else
constexpr bool kChain = false;
#endif
struct sigaction g_previous[2] {};  // SIGSEGV, SIGBUS

// Async-signal-safe appending into a fixed buffer.
struct Line {
  char buf[1024];
  size_t n = 0;
  void put(const char* s, size_t len) {
    len = std::min(len, sizeof buf - 1 - n);
    std::memcpy(buf + n, s, len);
    n += len;
  }
  void put(const char* s) { put(s, std::strlen(s)); }
  void put(uint64_t v) {
    char d[24];
    size_t i = sizeof d;
    do d[--i] = static_cast<char>('0' + v % 10); while ((v /= 10) != 0);
    put(d + i, sizeof d - i);
  }
};

void on_fault(int sig, siginfo_t* info, void*) {
  auto addr = reinterpret_cast<uintptr_t>(info->si_addr);
  for (const Guard& g : g_guards) {
    // si_code > 0: a fault of this process, not a signal sent by someone.
    if (info->si_code <= 0 || addr < g.begin || addr >= g.end) continue;
    Line l;
    int32_t fn = g.running ? g.running->load(std::memory_order_relaxed) : -1;
    l.put(R"({"event":"fault","detail":"function ')");
    if (fn >= 0 && static_cast<size_t>(fn) < g_names.size()) l.put(g_names[fn].data(), g_names[fn].size());
    else l.put("?");
    l.put("' wrote past the end of its output (worker ");
    l.put(g.worker);
    l.put(", slot ");
    l.put(g.slot);
    l.put(", output capacity ");
    l.put(g.capacity);
    l.put(" bytes)\"}");
    l.put("\n");
    if (g_report_fd >= 0) (void)!::write(g_report_fd, l.buf, l.n);
    break;
  }
  // A fault happens again when the instruction reruns, a sent signal is sent again.
  struct sigaction next {};
  if (kChain) {
    next = g_previous[sig == SIGBUS];
  } else {
    next.sa_handler = SIG_DFL;
    sigemptyset(&next.sa_mask);
  }
  ::sigaction(sig, &next, nullptr);
  if (info->si_code <= 0) ::raise(sig);
}

}  // namespace

void add(const void* guard, size_t bytes, uint32_t worker, uint32_t slot, uint64_t capacity, const Running* running) {
  auto b = reinterpret_cast<uintptr_t>(guard);
  g_guards.push_back({b, b + bytes, worker, slot, capacity, running});
}

void remove(const void* guard) {
  const auto b = reinterpret_cast<uintptr_t>(guard);
  std::erase_if(g_guards, [&](const auto& g) { return g.begin == b; });
}

void set_function_names(const std::vector<std::string>& names) {
  g_names.clear();
  for (const auto& n : names) {
    // Bounded, so that the report line always fits its buffer whole.
    std::string quoted = nlohmann::json(n.substr(0, 256)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    g_names.push_back(quoted.substr(1, quoted.size() - 2));
  }
}

void install(int report_fd) {
  g_report_fd = report_fd;
  struct sigaction sa {};
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGSEGV, &sa, &g_previous[0]);
  ::sigaction(SIGBUS, &sa, &g_previous[1]);
}

}  // namespace rfaas::executor::output_guard
