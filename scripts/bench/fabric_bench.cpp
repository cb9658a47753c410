// rfaas-fabric-bench: write-with-immediate ping-pong latency and streaming bandwidth through
// runtime/fabric, beside a minimal direct implementation of the same exchange on the same
// transport (libfabric for the ofi providers, libibverbs for --provider verbs) measured in the
// same run (interleaved repeats), so the fabric layer's cost is a ratio.
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

#include "raw_ofi.hpp"
#ifdef RFAAS_BENCH_VERBS
#include "raw_verbs.hpp"
#endif
#include "rfaas/fabric/fabric.hpp"
#include "cli/parse_options.hpp"

namespace po = boost::program_options;
using namespace rfaas;
using namespace rfaas::bench;

namespace {


// --- rfaas runtime/fabric ------------------------------------------------------------------
class RfaasFabric {
 public:
  RfaasFabric(const std::string& provider, int sock, bool initiator) {
    fabric::Config cfg = fabric::Config::from_env();
    cfg.backend = provider == "verbs" ? fabric::Backend::verbs : fabric::Backend::ofi;
    cfg.ofi_provider = provider;
    domain_ = fabric::open_domain(cfg);
    buffer_.resize(kMaxSize);
    mr_ = domain_->register_memory(buffer_.data(), kMaxSize, fabric::Access::remote_write);
    fabric::EndpointConfig ecfg;
    ecfg.max_outstanding_writes = 64;
    ecfg.wait_mode = fabric::WaitMode::sleep;  // the runtime's default; costs nothing while polling
    fabric::ConnectionData theirs;
    if (initiator) {
      // The initiator listens, as an executor would; the responder connects.
      auto listener = domain_->listen(cfg.local_host, 0);
      std::string address = listener->address();
      uint64_t len = address.size();
      sock_send(sock, &len, 8);
      sock_send(sock, address.data(), len);
      ep_ = listener->accept(ecfg, fabric::make_connection_data(mr_->remote()), theirs, std::chrono::seconds(10));
    } else {
      uint64_t len;
      sock_recv(sock, &len, 8);
      std::string address(len, '\0');
      sock_recv(sock, address.data(), len);
      ep_ = domain_->create_endpoint(ecfg);
      ep_->connect(address, fabric::make_connection_data(mr_->remote()), theirs, std::chrono::seconds(10));
    }
    remote_ = fabric::read_connection_data<fabric::RemoteRegion>(theirs);
  }
  static const char* name() { return "rfaas-fabric"; }

  bool write(size_t size, uint32_t imm, uint64_t dst_offset = 0) {
    fabric::Errc rc = ep_->write_imm(*mr_, 0, size, remote_, dst_offset, imm, 0);
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
  bool shm = o.provider == "shm", verbs = o.provider == "verbs";  // verbs: Soft-RoCE under emulation
  double guess_ns = (shm ? 2000.0 : verbs ? 40000.0 : 25000.0) + static_cast<double>(size) * (shm ? 0.1 : verbs ? 2.0 : 0.5);
  return std::clamp(static_cast<int>(o.target_seconds * 1e9 / guess_ns), 100, 50000);
}



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
    std::vector<double> raw_all, ours_all, raw_medians, ours_medians, ratios;
    for (int r = 0; r < o.repeats; ++r) {
      auto a = pingpong_initiator(raw, size, warmup, iters);
      auto b = pingpong_initiator(ours, size, warmup, iters);
      raw_medians.push_back(median(a));
      ours_medians.push_back(median(b));
      ratios.push_back(median(b) / median(a));  // paired within a repeat: robust to drift
      raw_all.insert(raw_all.end(), a.begin(), a.end());
      ours_all.insert(ours_all.end(), b.begin(), b.end());
    }
    // Median of per-repeat medians: robust to a repeat disturbed by the host.
    double rm = median(raw_medians) / 1000, om = median(ours_medians) / 1000;
    double rp = percentile(raw_all, 0.99) / 1000, op = percentile(ours_all, 0.99) / 1000;
    double ratio = median(ratios);
    std::printf("%-10zu %12.3f %10.3f %14.3f %11.3f %8.3f %+10.3f\n", size, rm, rp, om, op, ratio, om - rm);
    if (json)
      std::fprintf(json,
                   "{\"bench\":\"fabric\",\"metric\":\"rtt_us\",\"provider\":\"%s\",\"size\":%zu,\"raw_median\":%.4f,"
                   "\"raw_p99\":%.4f,\"rfaas_median\":%.4f,\"rfaas_p99\":%.4f,\"ratio\":%.4f,\"iterations\":%d,"
                   "\"repeats\":%d}\n",
                   o.provider.c_str(), size, rm, rp, om, op, ratio, iters, o.repeats);
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

// The two processes: this one initiates (core 0), a forked child responds (core 1).
template <class Raw, class MakeRaw>
int run_pair(const Options& o, MakeRaw make_raw) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) die("socketpair");
  std::fflush(stdout);
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    ::close(sv[0]);
    pin_to_core(1);
    try {
      auto raw = make_raw(sv[1], false);
      RfaasFabric ours(o.provider, sv[1], false);
      run_responder(*raw, ours, o);
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
    auto raw = make_raw(sv[0], true);
    RfaasFabric ours(o.provider, sv[0], true);
    run_initiator(*raw, ours, o, json);
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

}  // namespace

int main(int argc, char** argv) {
  Options o;
  po::options_description desc("rfaas-fabric-bench: write-with-immediate ping-pong and bandwidth, rfaas fabric vs direct libfabric");
  desc.add_options()
    ("help,h", "show this help")
    ("provider,p", po::value(&o.provider)->default_value(o.provider),
     "libfabric provider (shm, tcp = tcp;ofi_rxm, ...) or verbs (the verbs backend beside raw libibverbs; "
     "addresses from RFAAS_FABRIC_HOST)")
    ("repeats,r", po::value(&o.repeats)->default_value(o.repeats), "interleaved repeats per size")
    ("seconds,s", po::value(&o.target_seconds)->default_value(o.target_seconds), "approximate seconds per repeat and size")
    ("sizes", po::value<std::vector<size_t>>()->multitoken(), "message sizes in bytes (default 8 64 4096 65536 1048576)")
    ("stream-count", po::value(&o.stream_count)->default_value(o.stream_count), "1 MiB writes per bandwidth repeat")
    ("json", po::value(&o.json_path), "append JSON lines to this file ('-' for stdout)");
  po::variables_map vm;
  if (auto exit = rfaas::cli::parse_options(argc, argv, desc, vm, "rfaas-fabric-bench")) return *exit;
  if (vm.count("sizes")) o.sizes = vm["sizes"].as<std::vector<size_t>>();
  for (size_t s : o.sizes)
    if (s > kMaxSize) die("sizes are limited to 1 MiB");
  if (o.provider == "tcp") o.provider = "tcp;ofi_rxm";
  if (o.repeats < 1) die("--repeats must be at least 1");

#ifdef RFAAS_BENCH_VERBS
  if (o.provider == "verbs") {
    std::string host = fabric::Config::from_env().local_host;
    return run_pair<RawVerbs>(o, [&](int sock, bool initiator) { return std::make_unique<RawVerbs>(host, sock, initiator); });
  }
#endif
  return run_pair<RawOfi>(o, [&](int sock, bool) { return std::make_unique<RawOfi>(o.provider, sock); });
}
