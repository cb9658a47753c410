// rfaas-fabric-bench: write-with-immediate ping-pong latency and streaming bandwidth through
// runtime/fabric, beside a minimal direct libfabric implementation of the same exchange
// measured in the same run (interleaved repeats), so the fabric layer's cost is a ratio.
//
// Two processes pinned to cores 0 and 1: this one initiates, a forked child responds.
// Output: a readable table on stdout and one JSON object per figure (--json FILE, or stdout
// with --json -).
#include <getopt.h>
#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "rfaas/fabric/fabric.hpp"

namespace po = boost::program_options;
using Clock = std::chrono::steady_clock;
using namespace rfaas;

namespace {

constexpr size_t kMaxSize = 1u << 20;
constexpr uint32_t kStreamWindow = 16;
constexpr auto kPhaseTimeout = std::chrono::seconds(60);

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "rfaas-fabric-bench: %s\n", what.c_str());
  std::exit(1);
}

void pin_to_core(int core) {
  if (static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)) <= core) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(core, &set);
  sched_setaffinity(0, sizeof set, &set);
}

// Blocking exchange of a small blob over the socketpair both processes share.
void sock_send(int fd, const void* p, size_t n) {
  if (::send(fd, p, n, MSG_NOSIGNAL) != static_cast<ssize_t>(n)) die("bootstrap send failed");
}
void sock_recv(int fd, void* p, size_t n) {
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
  RawOfi(const std::string& provider, int sock) {
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
    buffer_.resize(kMaxSize);
    check(fi_mr_reg(domain_, buffer_.data(), kMaxSize, FI_WRITE | FI_REMOTE_WRITE, 0, 77, 0, &mr_, nullptr), "fi_mr_reg");
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

  bool write(size_t size, uint32_t imm) {
    ssize_t rc = fi_writedata(ep_, buffer_.data(), size, desc_, imm, peer_, remote_[0], remote_[1], nullptr);
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
  std::vector<uint8_t> buffer_;
};

// --- rfaas runtime/fabric ------------------------------------------------------------------
class RfaasFabric {
 public:
  RfaasFabric(const std::string& provider, int sock, bool initiator) {
    fabric::Config cfg = fabric::Config::from_env();
    cfg.backend = fabric::Backend::ofi;
    cfg.ofi_provider = provider;
    domain_ = fabric::open_domain(cfg);
    buffer_.resize(kMaxSize);
    mr_ = domain_->register_memory(buffer_.data(), kMaxSize, fabric::Access::remote_write);
    fabric::EndpointConfig ecfg;
    ecfg.max_outstanding_writes = 64;
    ecfg.wait_mode = fabric::WaitMode::sleep;  // the runtime's default; costs nothing while polling
    ep_ = domain_->create_endpoint(ecfg);
    fabric::ConnectionData theirs;
    if (initiator) {
      // The initiator listens, as an executor would; the responder connects.
      auto listener = domain_->listen("127.0.0.1", 0);
      std::string address = listener->address();
      uint64_t len = address.size();
      sock_send(sock, &len, 8);
      sock_send(sock, address.data(), len);
      listener->accept(*ep_, fabric::make_connection_data(mr_->remote()), theirs, std::chrono::seconds(10));
    } else {
      uint64_t len;
      sock_recv(sock, &len, 8);
      std::string address(len, '\0');
      sock_recv(sock, address.data(), len);
      ep_->connect(address, fabric::make_connection_data(mr_->remote()), theirs, std::chrono::seconds(10));
    }
    remote_ = fabric::read_connection_data<fabric::RemoteRegion>(theirs);
  }
  static const char* name() { return "rfaas-fabric"; }

  bool write(size_t size, uint32_t imm) {
    fabric::Errc rc = ep_->write_imm(*mr_, 0, size, remote_, 0, imm, 0);
    if (rc == fabric::Errc::ok) return true;
    if (rc != fabric::Errc::again) die(std::string("rfaas: write_imm: ") + fabric::to_string(rc));
    return false;
  }
  int poll_received() {
    fabric::Completion c[16];
    int n = ep_->poll(c, 16);
    int received = 0;
    for (int i = 0; i < n; ++i) {
      if (c[i].kind == fabric::Completion::Kind::error) die(std::string("rfaas: ") + fabric::to_string(c[i].error));
      received += c[i].kind == fabric::Completion::Kind::write_received;
    }
    return received;
  }

 private:
  std::unique_ptr<fabric::Domain> domain_;
  std::vector<uint8_t> buffer_;
  std::unique_ptr<fabric::MemoryRegion> mr_;
  std::unique_ptr<fabric::Endpoint> ep_;
  fabric::RemoteRegion remote_;
};

template <class T>
void post(T& t, size_t size, uint32_t imm, Clock::time_point deadline) {
  while (!t.write(size, imm)) {
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
    auto t0 = Clock::now();
    post(t, size, static_cast<uint32_t>(i), deadline);
    await_one(t, deadline);
    auto t1 = Clock::now();
    if (i >= warmup) ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
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
double stream_initiator(T& t, size_t size, int count) {
  auto deadline = Clock::now() + kPhaseTimeout;
  auto t0 = Clock::now();
  for (int sent = 0; sent < count;) {
    uint32_t burst = std::min<uint32_t>(kStreamWindow, static_cast<uint32_t>(count - sent));
    for (uint32_t i = 0; i < burst; ++i) post(t, size, static_cast<uint32_t>(sent + i), deadline);
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

struct Options {
  std::string provider = "shm";
  int repeats = 7;
  double target_seconds = 0.05;  // per repeat and size, at the expected round-trip time
  std::vector<size_t> sizes{8, 64, 4096, 65536, 1u << 20};
  int stream_count = 2000;
  std::string json_path;
};

int iterations_for(size_t size, const Options& o) {
  // About target_seconds of work per repeat; round trips grow with size.
  double guess_ns = (o.provider == "shm" ? 2000.0 : 25000.0) + size * (o.provider == "shm" ? 0.1 : 0.5);
  return std::clamp(static_cast<int>(o.target_seconds * 1e9 / guess_ns), 100, 50000);
}

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t idx = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  return v[idx];
}

double median(std::vector<double> v) { return percentile(std::move(v), 0.5); }

// The schedule both processes walk in lockstep: for each size, `repeats` rounds of raw then
// rfaas, so drift on a noisy machine hits both alike.
template <class Raw, class Ours>
void run_initiator(Raw& raw, Ours& ours, const Options& o, std::FILE* json) {
  std::printf("\nrfaas-fabric-bench  provider %s  (%d interleaved repeats; round trip in us)\n", o.provider.c_str(),
              o.repeats);
  std::printf("%-10s %12s %10s %14s %11s %8s %10s\n", "size", "raw median", "raw p99", "rfaas median", "rfaas p99",
              "ratio", "diff (us)");
  for (size_t size : o.sizes) {
    int iters = iterations_for(size, o);
    int warmup = std::max(10, iters / 10);
    std::vector<double> raw_all, ours_all, raw_medians, ours_medians;
    for (int r = 0; r < o.repeats; ++r) {
      auto a = pingpong_initiator(raw, size, warmup, iters);
      auto b = pingpong_initiator(ours, size, warmup, iters);
      raw_medians.push_back(median(a));
      ours_medians.push_back(median(b));
      raw_all.insert(raw_all.end(), a.begin(), a.end());
      ours_all.insert(ours_all.end(), b.begin(), b.end());
    }
    // Median of per-repeat medians: robust to a repeat disturbed by the host.
    double rm = median(raw_medians) / 1000, om = median(ours_medians) / 1000;
    double rp = percentile(raw_all, 0.99) / 1000, op = percentile(ours_all, 0.99) / 1000;
    std::printf("%-10zu %12.3f %10.3f %14.3f %11.3f %8.3f %+10.3f\n", size, rm, rp, om, op, om / rm, om - rm);
    if (json)
      std::fprintf(json,
                   "{\"bench\":\"fabric\",\"metric\":\"rtt_us\",\"provider\":\"%s\",\"size\":%zu,\"raw_median\":%.4f,"
                   "\"raw_p99\":%.4f,\"rfaas_median\":%.4f,\"rfaas_p99\":%.4f,\"ratio\":%.4f,\"iterations\":%d,"
                   "\"repeats\":%d}\n",
                   o.provider.c_str(), size, rm, rp, om, op, om / rm, iters, o.repeats);
  }
  std::vector<double> raw_bw, ours_bw;
  for (int r = 0; r < o.repeats; ++r) {
    raw_bw.push_back(stream_initiator(raw, kMaxSize, o.stream_count));
    ours_bw.push_back(stream_initiator(ours, kMaxSize, o.stream_count));
  }
  double rb = median(raw_bw), ob = median(ours_bw);
  std::printf("%-10s %12s %10s %14s %11s %8s\n", "stream", "raw GB/s", "", "rfaas GB/s", "", "ratio");
  std::printf("%-10s %12.2f %10s %14.2f %11s %8.3f\n", "1 MiB", rb, "", ob, "", ob / rb);
  if (json)
    std::fprintf(json,
                 "{\"bench\":\"fabric\",\"metric\":\"stream_gbps\",\"provider\":\"%s\",\"size\":%zu,\"raw_median\":%.4f,"
                 "\"rfaas_median\":%.4f,\"ratio\":%.4f,\"window\":%u,\"messages\":%d,\"repeats\":%d}\n",
                 o.provider.c_str(), kMaxSize, rb, ob, ob / rb, kStreamWindow, o.stream_count, o.repeats);
}

template <class Raw, class Ours>
void run_responder(Raw& raw, Ours& ours, const Options& o) {
  for (size_t size : o.sizes) {
    int iters = iterations_for(size, o);
    int warmup = std::max(10, iters / 10);
    for (int r = 0; r < o.repeats; ++r) {
      pingpong_responder(raw, size, warmup + iters);
      pingpong_responder(ours, size, warmup + iters);
    }
  }
  for (int r = 0; r < o.repeats; ++r) {
    stream_responder(raw, o.stream_count);
    stream_responder(ours, o.stream_count);
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  po::options_description desc("rfaas-fabric-bench: write-with-immediate ping-pong and bandwidth, rfaas fabric vs direct libfabric");
  desc.add_options()
    ("help,h", "show this help")
    ("provider,p", po::value(&o.provider)->default_value(o.provider), "libfabric provider: shm, tcp (tcp;ofi_rxm), ...")
    ("repeats,r", po::value(&o.repeats)->default_value(o.repeats), "interleaved repeats per size")
    ("seconds,s", po::value(&o.target_seconds)->default_value(o.target_seconds), "approximate seconds per repeat and size")
    ("sizes", po::value<std::vector<size_t>>()->multitoken(), "message sizes in bytes (default 8 64 4096 65536 1048576)")
    ("stream-count", po::value(&o.stream_count)->default_value(o.stream_count), "1 MiB writes per bandwidth repeat")
    ("json", po::value(&o.json_path), "append JSON lines to this file ('-' for stdout)");
  po::variables_map vm;
  try {
    po::store(po::parse_command_line(argc, argv, desc), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << "rfaas-fabric-bench: " << e.what() << "\n" << desc << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  if (vm.count("sizes")) o.sizes = vm["sizes"].as<std::vector<size_t>>();
  for (size_t s : o.sizes)
    if (s > kMaxSize) die("sizes are limited to 1 MiB");
  if (o.provider == "tcp") o.provider = "tcp;ofi_rxm";
  if (o.repeats < 1) die("--repeats must be at least 1");

  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) die("socketpair");
  std::fflush(stdout);
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    ::close(sv[0]);
    pin_to_core(1);
    try {
      RawOfi raw(o.provider, sv[1]);
      RfaasFabric ours(o.provider, sv[1], false);
      run_responder(raw, ours, o);
      char done;
      sock_recv(sv[1], &done, 1);  // stay until the initiator is finished with our memory
    } catch (const std::exception& e) {
      std::fprintf(stderr, "rfaas-fabric-bench responder: %s\n", e.what());
      _exit(1);
    }
    _exit(0);
  }
  ::close(sv[1]);
  pin_to_core(0);
  std::FILE* json = nullptr;
  if (o.json_path == "-") json = stdout;
  else if (!o.json_path.empty() && !(json = std::fopen(o.json_path.c_str(), "a"))) die("cannot open " + o.json_path);
  int rc = 0;
  try {
    RawOfi raw(o.provider, sv[0]);
    RfaasFabric ours(o.provider, sv[0], true);
    run_initiator(raw, ours, o, json);
    char done = 1;
    sock_send(sv[0], &done, 1);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rfaas-fabric-bench: %s\n", e.what());
    rc = 1;
    kill(child, SIGKILL);
  }
  int status = 0;
  waitpid(child, &status, 0);
  if (json && json != stdout) std::fclose(json);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "rfaas-fabric-bench: responder failed\n");
    rc = 1;
  }
  return rc;
}
