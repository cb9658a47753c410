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
    if (addr < g.begin || addr >= g.end) continue;
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
  // Die of the signal itself (the daemon sees and logs it): default action, then the faulting
  // instruction runs again.
  ::signal(sig, SIG_DFL);
}

}  // namespace

void add(const void* guard, size_t bytes, uint32_t worker, uint32_t slot, uint64_t capacity, const Running* running) {
  auto b = reinterpret_cast<uintptr_t>(guard);
  g_guards.push_back({b, b + bytes, worker, slot, capacity, running});
}

void set_function_names(const std::vector<std::string>& names) {
  g_names.clear();
  for (const auto& n : names) {
    std::string quoted = nlohmann::json(n).dump();
    g_names.push_back(quoted.substr(1, quoted.size() - 2));
  }
}

void install(int report_fd) {
  g_report_fd = report_fd;
  struct sigaction sa {};
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_RESETHAND | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGSEGV, &sa, nullptr);
}

}  // namespace rfaas::executor::output_guard
