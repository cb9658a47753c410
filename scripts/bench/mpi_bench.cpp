// rfaas-mpi-bench: the per-call cost of rfaas_offload and rfaas_ioffload + MPI_Wait beside the raw
// transport's round trip, measured in one run (interleaved blocks, medians).
//
//   scripts/local-cluster.sh --cores 1 -- mpirun --bind-to none -np 1 rfaas-mpi-bench [--provider shm] [--repeats 5]
// It pins itself to core 0 and its raw responder to core 1, the core the executor daemon leases.
//
// Before MPI_Init it forks a raw libfabric responder (raw_ofi.hpp; the child never touches MPI);
// the rank then leases one core through the broker (RFAAS_BROKER) and calls echo of S bytes
// (S in, S out, registered buffers), against the raw write-with-immediate ping-pong of S bytes.
#include <mpi.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "raw_ofi.hpp"
#include "rfaas/rfaas_mpi.h"

using namespace rfaas::bench;
using rfaas::CycleClock;

namespace {

struct Command {
  uint64_t op;  // 0 quit, 1 ping-pong
  uint64_t size;
  uint64_t count;
};

void raw_responder(const std::string& provider, int sock) {
  RawOfi raw(provider, sock);
  for (;;) {
    Command c;
    sock_recv(sock, &c, sizeof c);
    if (c.op == 0) return;
    pingpong_responder(raw, c.size, static_cast<int>(c.count));
    char done = 1;
    sock_send(sock, &done, 1);
  }
}

// Round trips (ns) of `iters` offloads after `warmup` ones; blocking or through MPI_Wait.
std::vector<double> offload_rtts(bool nonblocking, void* in, void* out, size_t size, int warmup, int iters) {
  std::vector<double> ns;
  ns.reserve(iters);
  for (int i = 0; i < warmup + iters; ++i) {
    uint64_t t0 = CycleClock::now();
    int e = 0;
    if (nonblocking) {
      MPI_Request req;
      MPI_Status st;
      e = rfaas_ioffload("echo", in, size, out, size, &req);
      if (e == 0) {
        MPI_Wait(&req, &st);
        e = st.MPI_TAG;
      }
    } else {
      e = rfaas_offload("echo", in, size, out, size, nullptr);
    }
    uint64_t t1 = CycleClock::now();
    if (e) die(std::string("offload: ") + rfaas_strerror(e));
    if (i >= warmup) ns.push_back(elapsed_ns(t0, t1));
  }
  return ns;
}

}  // namespace

int main(int argc, char** argv) {
  std::string provider = std::getenv("RFAAS_OFI_PROVIDER") ? std::getenv("RFAAS_OFI_PROVIDER") : "shm";
  int repeats = 5;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--provider") provider = argv[i + 1];
    else if (a == "--repeats") repeats = std::max(1, std::atoi(argv[i + 1]));
  }
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return 1;
  std::fflush(stdout);
  pid_t child = fork();
  if (child == 0) {
    ::close(sv[0]);
    pin_to_core(1);  // beside the leased core (executord --cores 1): the same distance as the executor
    try {
      raw_responder(provider, sv[1]);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "raw responder: %s\n", e.what());
      _exit(1);
    }
    _exit(0);
  }
  ::close(sv[1]);
  int sock = sv[0];
  pin_to_core(0);
  int rc = 0;
  MPI_Init(&argc, &argv);
  try {
    RawOfi raw(provider, sock);
    rfaas_mpi_config cfg;
    rfaas_mpi_config_init(&cfg);
    std::string library = std::string(std::getenv("RFAAS_FUNCTIONS") ? std::getenv("RFAAS_FUNCTIONS") : ".") +
                          "/librfaas_functions_basic.so";
    cfg.library_path = library.c_str();
    cfg.functions = "echo";
    cfg.input_capacity = cfg.output_capacity = 64 * 1024;
    // The executor busy-polls 1 ms after a call, then sleeps, so that it leaves core 1 to the raw
    // responder during the raw blocks (the warm-up calls wake it).
    cfg.hot_timeout_us = 1000;
    if (int e = rfaas_mpi_init(MPI_COMM_WORLD, &cfg))
      die(std::string("rfaas_mpi_init: ") + rfaas_strerror(e) + " (" + rfaas_mpi_last_error() + ")");
    std::vector<uint8_t> in(64 * 1024, 7), out(64 * 1024);
    rfaas_mpi_register(in.data(), in.size());
    rfaas_mpi_register(out.data(), out.size());

    std::printf("rfaas-mpi-bench  provider %s  (%d interleaved repeats, medians in us; overhead = call - raw)\n",
                provider.c_str(), repeats);
    std::printf("%-7s %9s %15s %8s %8s %21s %8s %8s\n", "size", "raw rtt", "rfaas_offload", "over", "ratio",
                "rfaas_ioffload+Wait", "over", "ratio");
    for (size_t size : {size_t{8}, size_t{64}, size_t{4096}, size_t{65536}}) {
      const int warmup = 200, iters = size >= 65536 ? 1000 : 5000;
      std::vector<double> raw_m, blk_m, nb_m;
      for (int r = 0; r < repeats; ++r) {
        Command c{1, size, static_cast<uint64_t>(warmup + iters)};
        sock_send(sock, &c, sizeof c);
        raw_m.push_back(median(pingpong_initiator(raw, size, warmup, iters)));
        char done;
        sock_recv(sock, &done, 1);
        blk_m.push_back(median(offload_rtts(false, in.data(), out.data(), size, warmup, iters)));
        nb_m.push_back(median(offload_rtts(true, in.data(), out.data(), size, warmup, iters)));
      }
      double rw = median(raw_m) / 1e3, b = median(blk_m) / 1e3, nb = median(nb_m) / 1e3;
      std::printf("%-7zu %9.3f %15.3f %8.3f %8.3f %21.3f %8.3f %8.3f\n", size, rw, b, b - rw, b / rw, nb, nb - rw,
                  nb / rw);
      std::printf("{\"bench\":\"mpi\",\"provider\":\"%s\",\"size\":%zu,\"raw_us\":%.4f,\"offload_us\":%.4f,"
                  "\"ioffload_wait_us\":%.4f}\n",
                  provider.c_str(), size, rw, b, nb);
    }
    std::fflush(stdout);
    if (int e = rfaas_mpi_finalize()) die(std::string("rfaas_mpi_finalize: ") + rfaas_strerror(e));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rfaas-mpi-bench: %s\n", e.what());
    rc = 1;
  }
  Command quit{0, 0, 0};
  ::send(sock, &quit, sizeof quit, MSG_NOSIGNAL);
  ::close(sock);
  int status = 0;
  waitpid(child, &status, 0);
  MPI_Finalize();
  return rc;
}
