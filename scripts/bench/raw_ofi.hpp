// Shared by the benchmarks: a minimal direct-libfabric write-with-immediate peer (the
// reference every rfaas figure is compared with), the ping-pong and streaming loops (templates
// over the implementation, so none pays for an abstraction), pinning and the bootstrap socket.
#pragma once

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "clock/cycle_clock.hpp"
#include "fabric/host_memory.hpp"

namespace rfaas::bench {

using Clock = std::chrono::steady_clock;
// Per-round-trip times are taken with the cycle counter: steady_clock can cost microseconds
// (a syscall where the kernel reads the HPET, as in the Soft-RoCE guest), which would pad every
// sample of both sides and flatter the ratios.
inline double elapsed_ns(uint64_t t0, uint64_t t1) { return CycleClock::to_ns(t1 - t0); }
constexpr size_t kMaxSize = 1u << 20;
constexpr size_t kMaxStreamSize = 16u << 20;  // the largest streamed write (bandwidth)
constexpr uint32_t kStreamWindow = 16;

// The raw side's buffer: 4 KiB pages, as a program allocates it with new or malloc, or (huge)
// the huge-page memory rfaas registers its slots, regions and Executor::allocate buffers in, to
// compare like with like.
class RawBuffer {
 public:
  explicit RawBuffer(bool huge) {
    if (huge) {
      huge_ = fabric::HostMemory(kMaxStreamSize);
      data_ = huge_.data();
    } else {
      plain_.resize(kMaxStreamSize);
      data_ = plain_.data();
    }
  }
  uint8_t* data() const { return data_; }

 private:
  std::vector<uint8_t> plain_;
  fabric::HostMemory huge_;
  uint8_t* data_ = nullptr;
};
constexpr auto kPhaseTimeout = std::chrono::seconds(60);

// A failed benchmark step: thrown, so that destructors stop the processes the run started.
struct BenchError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
[[noreturn]] inline void die(const std::string& what) { throw BenchError(what); }

inline void pin_to_core(int core) {
  if (static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)) <= core) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(core, &set);
  sched_setaffinity(0, sizeof set, &set);
}

// Blocking exchange of a small blob over the socketpair both processes share.
inline void sock_send(int fd, const void* p, size_t n) {
  if (::send(fd, p, n, MSG_NOSIGNAL) != static_cast<ssize_t>(n)) die("bootstrap send failed");
}
inline void sock_recv(int fd, void* p, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::recv(fd, static_cast<char*>(p) + got, n - got, 0);
    if (r <= 0) die("bootstrap recv failed (peer gone)");
    got += static_cast<size_t>(r);
  }
}

// The two implementations share this shape; the benchmark loops are templates over it, so
// neither pays for an abstraction the other does not.
//   write(size, imm) posts a write-with-immediate of `size` bytes to the peer's buffer;
//   poll_received() returns 1 when a peer's write arrived (reaping sends on the way), 0 if not,
//   and stops the run on an error.

// --- reference: direct libfabric, as small as the exchange allows --------------------------
class RawOfi {
 public:
  RawOfi(const std::string& provider, int sock, bool huge = false) : buffer_(huge) {
    fi_info* hints = fi_allocinfo();
    hints->caps = FI_RMA | FI_WRITE | FI_REMOTE_WRITE;
    hints->ep_attr->type = FI_EP_RDM;
    hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
    hints->domain_attr->threading = FI_THREAD_COMPLETION;
    hints->fabric_attr->prov_name = strdup(provider.c_str());
    bool ip = provider.find("shm") == std::string::npos;
    if (fi_getinfo(FI_VERSION(1, 9), ip ? "127.0.0.1" : nullptr, nullptr, ip ? FI_SOURCE : 0, hints, &info_) != 0)
      die("raw: fi_getinfo failed for " + provider);
    fi_freeinfo(hints);
    check(fi_fabric(info_->fabric_attr, &fabric_, nullptr), "fi_fabric");
    check(fi_domain(fabric_, info_, &domain_, nullptr), "fi_domain");
    fi_cq_attr cq_attr{};
    cq_attr.format = FI_CQ_FORMAT_DATA;
    cq_attr.size = 128;
    check(fi_cq_open(domain_, &cq_attr, &cq_, nullptr), "fi_cq_open");
    fi_av_attr av_attr{};
    av_attr.type = FI_AV_TABLE;
    check(fi_av_open(domain_, &av_attr, &av_, nullptr), "fi_av_open");
    check(fi_endpoint(domain_, info_, &ep_, nullptr), "fi_endpoint");
    check(fi_ep_bind(ep_, &av_->fid, 0), "bind av");
    check(fi_ep_bind(ep_, &cq_->fid, FI_TRANSMIT | FI_RECV), "bind cq");
    check(fi_enable(ep_), "fi_enable");
    check(fi_mr_reg(domain_, buffer_.data(), kMaxStreamSize, FI_WRITE | FI_REMOTE_WRITE, 0, 77, 0, &mr_, nullptr), "fi_mr_reg");
    desc_ = fi_mr_desc(mr_);
    // Exchange endpoint names and (address, key) of the buffers.
    char name[256];
    size_t len = sizeof name;
    check(fi_getname(&ep_->fid, name, &len), "fi_getname");
    uint64_t mine[2] = {(info_->domain_attr->mr_mode & FI_MR_VIRT_ADDR) ? reinterpret_cast<uint64_t>(buffer_.data()) : 0,
                        (info_->domain_attr->mr_mode & FI_MR_PROV_KEY) ? fi_mr_key(mr_) : 77};
    uint64_t name_len = len;
    sock_send(sock, &name_len, 8);
    sock_send(sock, name, len);
    sock_send(sock, mine, sizeof mine);
    uint64_t peer_len;
    sock_recv(sock, &peer_len, 8);
    if (peer_len > sizeof name) die("raw: peer name too long");
    sock_recv(sock, name, peer_len);
    sock_recv(sock, remote_, sizeof remote_);
    if (fi_av_insert(av_, name, 1, &peer_, 0, nullptr) != 1) die("raw: fi_av_insert");
  }
  ~RawOfi() {
    fi_close(&mr_->fid);
    fi_close(&ep_->fid);
    fi_close(&av_->fid);
    fi_close(&cq_->fid);
    fi_close(&domain_->fid);
    fi_close(&fabric_->fid);
    fi_freeinfo(info_);
  }
  static const char* name() { return "raw-libfabric"; }

  bool write(size_t size, uint32_t imm, uint64_t dst_offset = 0) {
    ssize_t rc =
        fi_writedata(ep_, buffer_.data(), size, desc_, imm, peer_, remote_[0] + dst_offset, remote_[1], nullptr);
    if (rc == 0) return true;
    if (rc != -FI_EAGAIN) die("raw: fi_writedata: " + std::string(fi_strerror(static_cast<int>(-rc))));
    return false;
  }
  int poll_received() {
    fi_cq_data_entry e[16];
    ssize_t n = fi_cq_read(cq_, e, 16);
    if (n == -FI_EAGAIN) return 0;
    if (n < 0) die("raw: fi_cq_read: " + std::string(fi_strerror(static_cast<int>(-n))));
    int received = 0;
    for (ssize_t i = 0; i < n; ++i) received += (e[i].flags & FI_REMOTE_CQ_DATA) != 0;
    return received;
  }

 private:
  static void check(int rc, const char* what) {
    if (rc != 0) die(std::string("raw: ") + what + ": " + fi_strerror(-rc));
  }
  fi_info* info_ = nullptr;
  fid_fabric* fabric_ = nullptr;
  fid_domain* domain_ = nullptr;
  fid_cq* cq_ = nullptr;
  fid_av* av_ = nullptr;
  fid_ep* ep_ = nullptr;
  fid_mr* mr_ = nullptr;
  void* desc_ = nullptr;
  fi_addr_t peer_ = FI_ADDR_NOTAVAIL;
  uint64_t remote_[2] = {};
  RawBuffer buffer_;
};

template <class T>
void post(T& t, size_t size, uint32_t imm, Clock::time_point deadline, uint64_t dst_offset = 0) {
  while (!t.write(size, imm, dst_offset)) {
    t.poll_received() == 0 ? void() : die("unexpected message while the send queue was full");
    if (Clock::now() > deadline) die("write stuck: send queue never drained");
  }
}

template <class T>
void await_one(T& t, Clock::time_point deadline) {
  int got = 0;
  uint32_t spins = 0;
  while ((got = t.poll_received()) == 0)
    if ((++spins & 0xFFF) == 0 && Clock::now() > deadline) die("peer stopped answering");
  if (got != 1) die("more than one message arrived in a ping-pong");
}

// Round-trip times in nanoseconds of `iters` ping-pongs after `warmup` unmeasured ones.
template <class T>
std::vector<double> pingpong_initiator(T& t, size_t size, int warmup, int iters) {
  std::vector<double> ns;
  ns.reserve(iters);
  auto deadline = Clock::now() + kPhaseTimeout;
  for (int i = 0; i < warmup + iters; ++i) {
    uint64_t t0 = CycleClock::now();
    post(t, size, static_cast<uint32_t>(i), deadline);
    await_one(t, deadline);
    uint64_t t1 = CycleClock::now();
    if (i >= warmup) ns.push_back(elapsed_ns(t0, t1));
  }
  return ns;
}

template <class T>
void pingpong_responder(T& t, size_t size, int total) {
  auto deadline = Clock::now() + kPhaseTimeout;
  for (int i = 0; i < total; ++i) {
    await_one(t, deadline);
    post(t, size, static_cast<uint32_t>(i), deadline);
  }
}

// Streams `count` writes of `size` with up to kStreamWindow outstanding; the responder answers
// each window with one write, so the initiator never overruns the peer. Returns GB/s.
template <class T>
double stream_initiator(T& t, size_t size, int count, bool spread = false) {
  auto deadline = Clock::now() + kPhaseTimeout;
  auto t0 = Clock::now();
  // spread: the writes in flight go to kStreamWindow distinct places, as invocations go to their
  // own input slots (where they fit in the peer's buffer), instead of all to its start.
  const bool distinct = spread && size * kStreamWindow <= kMaxStreamSize;
  for (int sent = 0; sent < count;) {
    uint32_t burst = std::min<uint32_t>(kStreamWindow, static_cast<uint32_t>(count - sent));
    for (uint32_t i = 0; i < burst; ++i)
      post(t, size, static_cast<uint32_t>(sent + i), deadline, distinct ? i * size : 0);
    sent += static_cast<int>(burst);
    await_one(t, deadline);
  }
  double s = std::chrono::duration<double>(Clock::now() - t0).count();
  return static_cast<double>(size) * count / s / 1e9;
}

template <class T>
void stream_responder(T& t, int count) {
  auto deadline = Clock::now() + kPhaseTimeout;
  for (int got = 0; got < count;) {
    uint32_t burst = std::min<uint32_t>(kStreamWindow, static_cast<uint32_t>(count - got));
    for (uint32_t i = 0; i < burst;) {
      int n = t.poll_received();
      i += static_cast<uint32_t>(n);
      if (n == 0 && Clock::now() > deadline) die("stream stalled");
    }
    got += static_cast<int>(burst);
    post(t, 0, 0, deadline);
  }
}


inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t idx = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  return v[idx];
}

inline double median(std::vector<double> v) { return percentile(std::move(v), 0.5); }

}  // namespace rfaas::bench
