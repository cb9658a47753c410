// A client for the Slurm test: leases one core through the broker ($RFAAS_BROKER), deploys
// echo, invokes every 20 ms and reports how its lease ended. Exit 0 when it ended with
// lease_revoked (what scancel of the executor job must produce), 3 otherwise, 2 on setup errors.
//   revocation_probe LIBRARY [SECONDS]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "rfaas/client.hpp"

int main(int argc, char** argv) {
  using namespace std::chrono;
  const char* broker = std::getenv("RFAAS_BROKER");
  if (argc < 2 || !broker) {
    std::fprintf(stderr, "usage: RFAAS_BROKER=H:P revocation_probe LIBRARY [SECONDS]\n");
    return 2;
  }
  int seconds = argc > 2 ? std::atoi(argv[2]) : 60;
  try {
    rfaas::BrokerLeaseOptions lo;
    lo.memory_bytes = 1 << 26;
    lo.client = "revocation-probe";
    auto grant = rfaas::broker_lease(broker, lo);
    rfaas::DeployOptions d;
    d.library_path = argv[1];
    d.functions = {"echo"};
    d.input_capacity = d.output_capacity = 4096;
    auto ex = rfaas::Executor::deploy(grant, d);
    std::printf("probe: invoking on node %s (lease %llu)\n", grant.node.c_str(),
                static_cast<unsigned long long>(grant.lease_id));
    std::fflush(stdout);
    uint64_t v = 1, r = 0;
    size_t n = 0;
    unsigned long ok = 0;
    for (auto end = steady_clock::now() + seconds * 1s; steady_clock::now() < end;) {
      rfaas::Errc e = ex->invoke(ex->function("echo"), &v, 8, &r, 8, &n, 2s);
      if (e != rfaas::Errc::ok) {
        std::printf("probe: after %lu invocations: %s\n", ok, rfaas::to_string(e));
        return e == rfaas::Errc::lease_revoked ? 0 : 3;
      }
      ++ok;
      std::this_thread::sleep_for(20ms);
    }
    std::printf("probe: the lease was never revoked (%lu invocations)\n", ok);
    return 3;
  } catch (const rfaas::Error& e) {
    std::printf("probe: setup failed: %s: %s\n", rfaas::to_string(e.code()), e.what());
    return 2;
  }
}
