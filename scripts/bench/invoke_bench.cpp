// rfaas-bench: benchmarks of the invocation path against the raw transport, in one run.
//
//   rfaas-bench invoke [--provider shm|tcp|verbs] [--repeats N] [--json FILE]
//
// Starts its own rfaas-executord (one leased core: core 1) and a raw responder on the same
// transport (libfabric, or libibverbs for verbs; also on core 1), pins itself to core 0, and measures, interleaving raw and rfaas blocks:
//   - hot round trip: echo of S bytes (S in, S out) vs the raw write-with-immediate ping-pong of S
//     bytes each way, and a no-op (S in, 0 out);
//   - bandwidth at 64 KiB, 1 MiB and 16 MiB, 16 in flight on both sides: puts into a resident region
//     and no-op invocations vs the raw stream of RMA writes;
//   - throughput: 64 B no-ops with 1 and with K in flight;
//   - warm round trip: an always-warm lease (hot_timeout_us = 0), one call after each idle pause;
//   - cold start: lease token to first result, by phase, with and without the library cached.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <fcntl.h>

#include <boost/program_options.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <spawn.h>
#include <thread>

#include "raw_ofi.hpp"
#ifdef RFAAS_BENCH_VERBS
#include "raw_verbs.hpp"
#endif
#include "rfaas/client.hpp"
#include "rfaas/fabric/fabric.hpp"

extern char** environ;

namespace po = boost::program_options;
using namespace rfaas;
using namespace rfaas::bench;
using namespace std::chrono_literals;

namespace {

struct Options {
  std::string provider = "shm";
  int repeats = 5;
  double seconds = 0.05;
  std::vector<size_t> sizes{8, 64, 4096, 65536, 1u << 20};
  std::string json_path;
  std::string executord = RFAAS_EXECUTORD_DEFAULT;
  std::string library = RFAAS_FUNCTIONS_BASIC_DEFAULT;
  bool hot_only = false;
  bool bandwidth_only = false;
};

// Commands to the raw responder over the socketpair.
struct Command {
  uint64_t op;  // 0 quit, 1 ping-pong, 2 stream
  uint64_t size;
  uint64_t count;
};

// The raw reference on the benchmark's transport; the parent listens (verbs), the child connects.
#ifdef RFAAS_BENCH_VERBS
std::unique_ptr<RawVerbs> make_raw(const Options& o, int sock, bool parent, RawVerbs*, bool huge = false) {
  (void)o;
  return std::make_unique<RawVerbs>(fabric::Config::from_env().local_host, sock, parent, huge);
}
#endif
std::unique_ptr<RawOfi> make_raw(const Options& o, int sock, bool, RawOfi*, bool huge = false) {
  return std::make_unique<RawOfi>(o.provider, sock, huge);
}

template <class Raw>
void raw_responder(const Options& o, int sock) {
  pin_to_core(1);
  auto raw_ptr = make_raw(o, sock, false, static_cast<Raw*>(nullptr));
  auto huge_ptr = make_raw(o, sock, false, static_cast<Raw*>(nullptr), true);
  Raw& raw = *raw_ptr;
  for (;;) {
    Command c;
    sock_recv(sock, &c, sizeof c);
    if (c.op == 0) return;
    if (c.op == 1) pingpong_responder(raw, c.size, static_cast<int>(c.count));
    if (c.op == 2) stream_responder(raw, static_cast<int>(c.count));
    if (c.op == 3) stream_responder(*huge_ptr, static_cast<int>(c.count));
    char done = 1;
    sock_send(sock, &done, 1);
  }
}

void raw_command(int sock, Command c) { sock_send(sock, &c, sizeof c); }
void raw_done(int sock) {
  char done;
  sock_recv(sock, &done, 1);
}

// A private rfaas-executord leasing core 1, with its own cluster secret.
class Daemon {
 public:
  explicit Daemon(const Options& o) {
    char tmpl[] = "/tmp/rfaas-bench-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    secret_ = dir_ + "/secret";
    {
      std::ofstream s(secret_, std::ios::binary);
      for (int i = 0; i < 32; ++i) s.put(static_cast<char>(rand()));
    }
    ::chmod(secret_.c_str(), 0600);
    std::string ready = dir_ + "/ready";
    std::vector<std::string> args{o.executord, "--listen", "127.0.0.1:0", "--node-name", "bench-node",
                                  "--secret-file", secret_, "--ready-file", ready, "--cores", "1"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, (dir_ + "/executord.log").c_str(), O_WRONLY | O_CREAT, 0644);
    if (posix_spawn(&pid_, o.executord.c_str(), &fa, nullptr, argv.data(), environ) != 0)
      die("cannot start " + o.executord);
    posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < 1000 && address_.empty(); ++i) {
      std::ifstream in(ready);
      in >> address_;
      if (address_.empty()) std::this_thread::sleep_for(10ms);
    }
    if (address_.empty()) die("rfaas-executord did not start (log: " + dir_ + "/executord.log)");
  }
  ~Daemon() {
    ::kill(pid_, SIGTERM);
    int st;
    for (int i = 0; i < 1000 && ::waitpid(pid_, &st, WNOHANG) == 0; ++i) std::this_thread::sleep_for(10ms);
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &st, 0);
    std::filesystem::remove_all(dir_);
  }
  LeaseGrant lease() const {
    DirectLeaseOptions l;
    l.node_name = "bench-node";
    l.secret_file = secret_;
    l.cores = 1;
    l.memory_bytes = 1ull << 32;
    l.duration = 30min;
    l.client = "rfaas-bench";
    return direct_lease(address_, l);
  }

 private:
  std::string dir_, secret_, address_;
  pid_t pid_ = -1;
};

// The hot lease's worker busy-polls for this long after its last invocation, then sleeps: long
// enough that every timed invocation finds it polling, short enough that it does not spin on
// core 1 beside the raw responder while the raw blocks run (it had, slowing the raw side).
constexpr int64_t kHotLeaseIdleUs = 5000;

DeployOptions deploy_options(const Options& o, int64_t hot_timeout_us) {
  DeployOptions d;
  d.library_path = o.library;
  d.functions = {"echo", "noop"};
  d.workers = 1;
  d.slots = 4;
  d.input_capacity = kMaxSize;
  d.output_capacity = kMaxSize;
  d.hot_timeout_us = hot_timeout_us;
  d.client_hot_timeout_us = hot_timeout_us < 0 ? -1 : 1000;
  return d;
}

int iterations_for(size_t size, const Options& o) {
  bool shm = o.provider == "shm", verbs = o.provider == "verbs";  // verbs: Soft-RoCE under emulation
  double guess_ns = (shm ? 2500.0 : verbs ? 50000.0 : 30000.0) + static_cast<double>(size) * (shm ? 0.2 : verbs ? 2.0 : 0.6);
  return std::clamp(static_cast<int>(o.seconds * 1e9 / guess_ns), 50, 20000);
}

std::vector<double> invoke_rtts(Executor& ex, int fn, Buffer& in, Buffer& out, size_t in_size, int warmup, int iters) {
  std::vector<double> ns;
  ns.reserve(iters);
  size_t n;
  for (int i = 0; i < warmup + iters; ++i) {
    uint64_t t0 = CycleClock::now();
    Errc e = ex.invoke(fn, in.data(), in_size, out.data(), out.size(), &n);
    uint64_t t1 = CycleClock::now();
    if (e != Errc::ok) die(std::string("invoke: ") + to_string(e));
    if (i >= warmup) ns.push_back(elapsed_ns(t0, t1));
  }
  return ns;
}

// Invocations per second with `in_flight` outstanding, for about `seconds`.
double throughput(Executor& ex, int fn, Buffer& in, std::vector<std::unique_ptr<Buffer>>& outs, size_t in_size,
                  int in_flight, double seconds, double* bytes_per_s) {
  std::vector<Invocation> h(in_flight);
  for (int i = 0; i < in_flight; ++i)
    if (Errc e = ex.submit(fn, in.data(), in_size, outs[i]->data(), outs[i]->size(), &h[i]); e != Errc::ok)
      die(std::string("submit: ") + to_string(e));
  uint64_t done = 0;
  auto t0 = Clock::now();
  auto end = t0 + std::chrono::duration<double>(seconds);
  size_t n;
  int last = 0;
  for (int i = 0;; i = (i + 1) % in_flight) {
    if (Errc e = ex.wait(h[i], &n); e != Errc::ok) die(std::string("wait: ") + to_string(e));
    ++done;
    if ((done & 63) == 0 && Clock::now() > end) {
      last = i;
      break;
    }
    if (Errc e = ex.submit(fn, in.data(), in_size, outs[i]->data(), outs[i]->size(), &h[i]); e != Errc::ok)
      die(std::string("submit: ") + to_string(e));
  }
  double s = std::chrono::duration<double>(Clock::now() - t0).count();
  for (int j = 0; j < in_flight; ++j)  // the others are still in flight
    if (j != last && ex.wait(h[j], &n) != Errc::ok) die("drain");
  if (bytes_per_s) *bytes_per_s = done * static_cast<double>(in_size) / s;
  return done / s;
}

void json_line(std::FILE* json, const std::string& body) {
  if (json) std::fprintf(json, "{\"bench\":\"invoke\",%s}\n", body.c_str());
}

template <class Raw>
int run(const Options& o) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) die("socketpair");
  std::fflush(stdout);
  pid_t child = fork();
  if (child < 0) die("fork");
  if (child == 0) {
    ::close(sv[0]);
    try {
      raw_responder<Raw>(o, sv[1]);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "raw responder: %s\n", e.what());
      _exit(1);
    }
    _exit(0);
  }
  ::close(sv[1]);
  int sock = sv[0];
  pin_to_core(0);
  std::FILE* json = nullptr;
  if (o.json_path == "-") json = stdout;
  else if (!o.json_path.empty() && !(json = std::fopen(o.json_path.c_str(), "a"))) die("cannot open " + o.json_path);
  const char* prov = o.provider.c_str();

  auto raw_ptr = make_raw(o, sock, true, static_cast<Raw*>(nullptr));
  auto huge_ptr = make_raw(o, sock, true, static_cast<Raw*>(nullptr), true);  // the bandwidth's like-for-like
  Raw& raw = *raw_ptr;
  Daemon daemon(o);
  // The daemon starts a standby executor at once; give it the time a real daemon has between
  // leases, so the cold start measures a lease, not the daemon's own start.
  std::this_thread::sleep_for(1500ms);

  // Bandwidth, the same window on both sides: the raw RMA-write stream, puts into a resident
  // region, and no-op invocations whose inputs are that size. A lease per size, its slots and its
  // region that size: every side writes into as much executor memory as the raw stream does.
  auto bandwidth = [&] {
    char buf[512];
    const uint32_t window = kStreamWindow;
    const double total = o.provider == "verbs" ? 32.0 * (1 << 20) : 256.0 * (1 << 20);
    std::unique_ptr<Executor> ex;
    std::unique_ptr<Buffer> src;
    std::vector<std::unique_ptr<Buffer>> res;
    uint32_t region = 0;
    int noop_bw = -1;
    auto lease_for = [&](size_t size) {
      if (ex) ex->release();
      res.clear();
      src.reset();
      ex.reset();
      DeployOptions bw = deploy_options(o, kHotLeaseIdleUs);  // idle while the raw blocks run beside it
      bw.client_hot_timeout_us = -1;
      bw.slots = window;
      bw.input_capacity = size;
      bw.output_capacity = 64;
      ex = Executor::deploy(daemon.lease(), bw);
      src = ex->allocate(size);
      std::memset(src->data(), 0x3c, size);
      region = ex->create_region(size);
      for (uint32_t i = 0; i < window; ++i) res.push_back(ex->allocate(64));
      noop_bw = ex->function("noop");
    };
    // `count` operations of `size` with `window` in flight, as one stream; GB/s.
    auto windowed = [&](size_t size, int count, bool put) {
      std::vector<Invocation> h(window);
      auto start = [&](uint32_t i) {
        Errc e = put ? ex->submit_put(region, 0, src->data(), size, &h[i])
                     : ex->submit(noop_bw, src->data(), size, res[i]->data(), 64, &h[i]);
        if (e != Errc::ok) die(std::string(put ? "put: " : "invoke: ") + to_string(e));
      };
      auto t0 = Clock::now();
      int posted = 0;
      for (uint32_t i = 0; i < window && posted < count; ++i, ++posted) start(i);
      for (int done = 0; done < count; ++done) {
        uint32_t i = static_cast<uint32_t>(done % window);
        if (Errc e = ex->wait(h[i], nullptr); e != Errc::ok) die(std::string("wait: ") + to_string(e));
        if (posted < count) {
          start(i);
          ++posted;
        }
      }
      return static_cast<double>(size) * count / std::chrono::duration<double>(Clock::now() - t0).count() / 1e9;
    };
    std::printf("\nbandwidth, %u in flight on both sides (GB/s, medians of %d; ratio = median of per-repeat ratios)\n",
                window, o.repeats);
    // raw: the raw stream from and into 4 KiB pages (as a program allocates them), every write to
    // the start of the peer's buffer. rawH: from and into the huge-page memory rfaas uses
    // (fabric::HostMemory), like for like; rawH16: the 16 in flight to 16 distinct places, as 16
    // invocations in flight land in 16 input slots (up to 16 MiB of buffer).
    std::printf("%-10s %7s %7s %7s %7s %7s %9s %9s %9s %11s\n", "size", "raw", "rawH", "rawH16", "put", "invoke",
                "put/raw", "put/rawH", "inv/raw", "inv/rawH16");
    for (size_t size : {size_t{64} << 10, size_t{1} << 20, size_t{16} << 20}) {
      lease_for(size);
      const int count = std::max(static_cast<int>(total / static_cast<double>(size)), 2 * static_cast<int>(window));
      std::vector<double> r, rh, rh16, p, v, pr, prh, vr, vrh16;
      auto stream = [&](Raw& t, uint64_t op, bool spread) {
        raw_command(sock, {op, size, static_cast<uint64_t>(count)});
        double gbps = stream_initiator(t, size, count, spread);
        raw_done(sock);
        return gbps;
      };
      for (int rep = 0; rep < o.repeats; ++rep) {
        r.push_back(stream(raw, 2, false));
        rh.push_back(stream(*huge_ptr, 3, false));
        rh16.push_back(stream(*huge_ptr, 3, true));
        p.push_back(windowed(size, count, true));
        v.push_back(windowed(size, count, false));
        pr.push_back(p.back() / r.back());
        prh.push_back(p.back() / rh.back());
        vr.push_back(v.back() / r.back());
        vrh16.push_back(v.back() / rh16.back());
      }
      std::printf("%-10zu %7.2f %7.2f %7.2f %7.2f %7.2f %9.3f %9.3f %9.3f %11.3f\n", size, median(r), median(rh),
                  median(rh16), median(p), median(v), median(pr), median(prh), median(vr), median(vrh16));
      std::snprintf(buf, sizeof buf,
                    "\"metric\":\"bandwidth_gbps\",\"provider\":\"%s\",\"size\":%zu,\"window\":%u,\"raw\":%.4f,"
                    "\"raw_huge\":%.4f,\"raw_huge16\":%.4f,\"put\":%.4f,\"invoke\":%.4f,\"put_ratio\":%.4f,"
                    "\"put_ratio_huge\":%.4f,\"invoke_ratio\":%.4f,\"invoke_ratio_huge16\":%.4f,\"repeats\":%d",
                    prov, size, window, median(r), median(rh), median(rh16), median(p), median(v), median(pr),
                    median(prh), median(vr), median(vrh16), o.repeats);
      json_line(json, buf);
    }
    ex->release();
  };
  // The end of every run: the raw responder told to stop and reaped, the JSON file closed.
  auto finish = [&] {
    raw_command(sock, {0, 0, 0});
    int st;
    waitpid(child, &st, 0);
    if (json && json != stdout) std::fclose(json);
    return 0;
  };
  if (o.bandwidth_only) {
    bandwidth();
    return finish();
  }

  // Cold start, library not yet cached, then the hot lease used below.
  auto t0 = Clock::now();
  DeployOptions hot = deploy_options(o, kHotLeaseIdleUs);
  hot.client_hot_timeout_us = -1;
  auto ex = Executor::deploy(daemon.lease(), hot);
  auto in = ex->allocate(kMaxSize);
  auto out = ex->allocate(kMaxSize);
  size_t n;
  int echo = ex->function("echo"), noop = ex->function("noop");
  if (ex->invoke(noop, in->data(), 8, out->data(), out->size(), &n) != Errc::ok) die("first invocation failed");
  double cold_uncached_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  DeployTiming cold_uncached = ex->deploy_timing();
  for (size_t i = 0; i < kMaxSize; ++i) static_cast<uint8_t*>(in->data())[i] = static_cast<uint8_t>(i * 7);

  std::printf("\nrfaas-bench invoke  provider %s  (%d interleaved repeats; hot lease, 1 worker on core 1; us)\n",
              o.provider.c_str(), o.repeats);
  // ratio: the median over repeats of (echo median / raw median) within the repeat.
  // ratio q1-q3: the quartiles of those per-repeat ratios (how much the machine drifted).
  std::printf("%-9s %10s %9s %11s %10s %9s %9s %13s %11s\n", "size", "raw med", "raw p99", "echo med", "echo p99",
              "diff", "ratio", "ratio q1-q3", "noop med");
  for (size_t size : o.sizes) {
    int iters = iterations_for(size, o);
    int warmup = std::max(10, iters / 10);
    std::vector<double> raw_med, echo_med, noop_med, raw_all, echo_all, ratios;
    for (int r = 0; r < o.repeats; ++r) {
      // Raw and echo blocks swap places every other repeat, so that drift over the run and the
      // position of a block (what ran before it) weigh on both alike.
      auto raw_block = [&] {
        raw_command(sock, {1, size, static_cast<uint64_t>(warmup + iters)});
        auto v = pingpong_initiator(raw, size, warmup, iters);
        raw_done(sock);
        return v;
      };
      std::vector<double> a, b;
      if (r % 2 == 0) {
        a = raw_block();
        b = invoke_rtts(*ex, echo, *in, *out, size, warmup, iters);
      } else {
        b = invoke_rtts(*ex, echo, *in, *out, size, warmup, iters);
        a = raw_block();
      }
      auto c = invoke_rtts(*ex, noop, *in, *out, size, warmup, iters);
      raw_med.push_back(median(a));
      echo_med.push_back(median(b));
      noop_med.push_back(median(c));
      ratios.push_back(median(b) / median(a));  // paired within a repeat: robust to drift
      raw_all.insert(raw_all.end(), a.begin(), a.end());
      echo_all.insert(echo_all.end(), b.begin(), b.end());
    }
    double rm = median(raw_med) / 1e3, em = median(echo_med) / 1e3, nm = median(noop_med) / 1e3;
    double rp = percentile(raw_all, 0.99) / 1e3, ep = percentile(echo_all, 0.99) / 1e3;
    double ratio = median(ratios);
    double q1 = percentile(ratios, 0.25), q3 = percentile(ratios, 0.75);
    std::printf("%-9zu %10.3f %9.3f %11.3f %10.3f %+9.3f %9.3f %6.3f-%-6.3f %11.3f\n", size, rm, rp, em, ep, em - rm,
                ratio, q1, q3, nm);
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "\"metric\":\"hot_rtt_us\",\"provider\":\"%s\",\"size\":%zu,\"raw_median\":%.4f,\"raw_p99\":%.4f,"
                  "\"echo_median\":%.4f,\"echo_p99\":%.4f,\"noop_median\":%.4f,\"diff\":%.4f,\"ratio\":%.4f,"
                  "\"ratio_q1\":%.4f,\"ratio_q3\":%.4f,\"repeats\":%d,\"iterations\":%d",
                  prov, size, rm, rp, em, ep, nm, em - rm, ratio, q1, q3, o.repeats, iters);
    json_line(json, buf);
  }
  if (o.hot_only) return finish();

  std::vector<std::unique_ptr<Buffer>> outs;
  for (int i = 0; i < 4; ++i) outs.push_back(ex->allocate(64));
  char buf[512];

  // Throughput of small invocations.
  std::vector<double> t1, t4;
  for (int r = 0; r < o.repeats; ++r) {
    t1.push_back(throughput(*ex, noop, *in, outs, 64, 1, o.seconds * 4, nullptr));
    t4.push_back(throughput(*ex, noop, *in, outs, 64, 4, o.seconds * 4, nullptr));
  }
  std::printf("throughput, 64 B no-ops: %.0f /s with 1 in flight, %.0f /s with 4 in flight (one worker)\n",
              median(t1), median(t4));
  std::snprintf(buf, sizeof buf,
                "\"metric\":\"throughput_per_s\",\"provider\":\"%s\",\"size\":64,\"in_flight_1\":%.0f,\"in_flight_4\":%.0f",
                prov, median(t1), median(t4));
  json_line(json, buf);
  double hot64 = 0;
  {
    auto v = invoke_rtts(*ex, echo, *in, *out, 64, 100, 2000);
    hot64 = median(v) / 1e3;
  }
  ex->release();
  ex.reset();

  // Warm: an always-warm executor, one call after each pause.
  auto warm = Executor::deploy(daemon.lease(), deploy_options(o, 0));
  auto win = warm->allocate(64), wout = warm->allocate(64);
  std::vector<double> warm_ns;
  for (int i = 0; i < 40; ++i) {
    std::this_thread::sleep_for(3ms);
    auto t = Clock::now();
    if (warm->invoke(warm->function("echo"), win->data(), 64, wout->data(), 64, &n) != Errc::ok) die("warm invoke");
    warm_ns.push_back(std::chrono::duration<double, std::nano>(Clock::now() - t).count());
  }
  warm->release();
  warm.reset();
  double wm = median(warm_ns) / 1e3, wp = percentile(warm_ns, 0.99) / 1e3;
  std::printf("warm round trip, 64 B echo after 3 ms idle: median %.1f us, p99 %.1f us (hot: %.3f us)\n", wm, wp, hot64);
  std::snprintf(buf, sizeof buf,
                "\"metric\":\"warm_rtt_us\",\"provider\":\"%s\",\"size\":64,\"median\":%.3f,\"p99\":%.3f,\"hot_median\":%.3f",
                prov, wm, wp, hot64);
  json_line(json, buf);

  // Cold start with the library cached: token to first result.
  std::vector<double> cold_total, cold_connect, cold_start, cold_eps, cold_first, back_to_back;
  for (int r = 0; r < o.repeats; ++r) {
    std::this_thread::sleep_for(1500ms);  // the standby replacing the one just taken is ready
    auto t = Clock::now();
    auto c = Executor::deploy(daemon.lease(), deploy_options(o, -1));
    auto tf = Clock::now();
    uint64_t v = 1, back = 0;
    if (c->invoke(c->function("echo"), &v, 8, &back, 8, &n) != Errc::ok) die("cold invoke");
    auto te = Clock::now();
    auto dt = c->deploy_timing();
    cold_total.push_back(std::chrono::duration<double, std::milli>(te - t).count());
    cold_first.push_back(std::chrono::duration<double, std::milli>(te - tf).count());
    cold_connect.push_back(dt.connect_ms);
    cold_start.push_back(dt.executor_start_ms);
    cold_eps.push_back(dt.endpoints_ms);
    c->release();
    // Straight after: the next standby is still starting.
    auto tb = Clock::now();
    auto b = Executor::deploy(daemon.lease(), deploy_options(o, -1));
    if (b->invoke(b->function("echo"), &v, 8, &back, 8, &n) != Errc::ok) die("cold invoke");
    back_to_back.push_back(std::chrono::duration<double, std::milli>(Clock::now() - tb).count());
    b->release();
  }
  std::printf("cold start, token to first result (library cached), median of %d: %.2f ms = connect %.2f + executor start "
              "%.2f + endpoints %.2f + first invocation %.2f\n",
              o.repeats, median(cold_total), median(cold_connect), median(cold_start), median(cold_eps),
              median(cold_first));
  std::printf("cold start, library not cached (first lease): %.2f ms (library transfer %.2f ms, executor start %.2f ms)\n",
              cold_uncached_ms, cold_uncached.library_ms, cold_uncached.executor_start_ms);
  std::printf("cold start, a lease right after another (standby still starting): %.2f ms\n", median(back_to_back));
  std::snprintf(buf, sizeof buf,
                "\"metric\":\"cold_start_ms\",\"provider\":\"%s\",\"cached_total\":%.3f,\"connect\":%.3f,"
                "\"executor_start\":%.3f,\"endpoints\":%.3f,\"first_invocation\":%.3f,\"uncached_total\":%.3f,"
                "\"uncached_library\":%.3f,\"back_to_back\":%.3f",
                prov, median(cold_total), median(cold_connect), median(cold_start), median(cold_eps),
                median(cold_first), cold_uncached_ms, cold_uncached.library_ms, median(back_to_back));
  json_line(json, buf);

  bandwidth();
  return finish();
}

}  // namespace

int broker_bench_main(int argc, char** argv);  // broker_bench.cpp

int main(int argc, char** argv) {
  if (argc > 1 && std::string(argv[1]) == "broker") return broker_bench_main(argc - 1, argv + 1);
  Options o;
  po::options_description desc("rfaas-bench invoke: the invocation path beside the raw transport");
  desc.add_options()("help,h", "show this help")
      ("provider,p", po::value(&o.provider)->default_value(o.provider),
       "libfabric provider (shm, tcp) or verbs (addresses from RFAAS_FABRIC_HOST)")
      ("repeats,r", po::value(&o.repeats)->default_value(o.repeats), "interleaved repeats")
      ("seconds,s", po::value(&o.seconds)->default_value(o.seconds), "approximate seconds per block")
      ("sizes", po::value<std::vector<size_t>>()->multitoken(), "payload sizes (default 8 64 4096 65536 1048576)")
      ("json", po::value(&o.json_path), "append JSON lines here ('-' for stdout)")
      ("hot-only", po::bool_switch(&o.hot_only), "only the hot round trips (no bandwidth, throughput, warm or cold start)")
      ("bandwidth-only", po::bool_switch(&o.bandwidth_only), "only the bandwidth of puts and invocations against the raw stream")
      ("executord", po::value(&o.executord)->default_value(o.executord), "rfaas-executord to start")
      ("library", po::value(&o.library)->default_value(o.library), "function library with echo and noop");
  po::positional_options_description pos;
  pos.add("command", 1);
  desc.add_options()("command", po::value<std::string>(), "invoke");
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(desc).positional(pos).run(), vm);
    po::notify(vm);
  } catch (const std::exception& e) {
    std::cerr << "rfaas-bench: " << e.what() << "\n" << desc << "\n";
    return 2;
  }
  if (vm.count("help") || !vm.count("command")) {
    std::cout << "usage: rfaas-bench invoke [options]   (rfaas-bench broker --help: the broker benchmark)\n" << desc << "\n";
    return vm.count("help") ? 0 : 2;
  }
  if (vm["command"].as<std::string>() != "invoke") {
    std::cerr << "rfaas-bench: unknown benchmark '" << vm["command"].as<std::string>() << "' (have: invoke, broker)\n";
    return 2;
  }
  if (vm.count("sizes")) o.sizes = vm["sizes"].as<std::vector<size_t>>();
  for (size_t s : o.sizes)
    if (s > kMaxSize) die("sizes are limited to 1 MiB");
  // The client library reads the transport from the environment; keep both sides on one provider.
  setenv("RFAAS_FABRIC", o.provider == "verbs" ? "verbs" : "ofi", 1);
  setenv("RFAAS_OFI_PROVIDER", o.provider.c_str(), 1);
  if (o.provider == "tcp") o.provider = "tcp;ofi_rxm";
  try {
#ifdef RFAAS_BENCH_VERBS
    if (o.provider == "verbs") return run<RawVerbs>(o);
#endif
    if (o.provider == "verbs") die("this rfaas-bench was built without the verbs backend");
    return run<RawOfi>(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rfaas-bench: %s\n", e.what());
    return 1;
  }
}
