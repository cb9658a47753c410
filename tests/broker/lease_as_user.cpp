// The client half of the confinement test: run as another user (setpriv), it leases through
// the broker, deploys the probe library and runs each command of its command line, printing
// "command -> result" lines, then releases. Exit status 0 when every step could be asked.
//   lease_as_user BROKER LIBRARY command...   (identity, read_path:P, signal_pid:N,
//                                              spawn_sleeper, hog:BYTES, fd_target:N,
//                                              write_stderr:TEXT, create_file:P,
//                                              memsw_limit, release_at_broker)
// release_at_broker releases the lease at the broker only (rfaas_lease_release without
// rfaas_release), then invokes "identity" until it fails (at most 10 s), printing how many
// calls were served after the release, how long it took and how they ended. "deploy -> cached"
// or "received": whether the daemon had the library cached for this user.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "rfaas/client.hpp"

int main(int argc, char** argv) {
  if (argc < 3) return 2;
  try {
    rfaas::BrokerLeaseOptions lo;
    lo.memory_bytes = 64ull << 20;
    lo.client = "lease_as_user";
    auto grant = rfaas::broker_lease(argv[1], lo);
    std::printf("lease -> %llu\n", static_cast<unsigned long long>(grant.lease_id));
    rfaas::DeployOptions o;
    o.library_path = argv[2];
    o.functions = {"identity",  "read_path",    "signal_pid",  "spawn_sleeper", "hog",
                   "self_pid",  "fd_target",    "write_stderr", "create_file",   "memsw_limit"};
    o.input_capacity = o.output_capacity = 4096;
    auto ex = rfaas::Executor::deploy(grant, o);
    std::printf("deploy -> %s\n", ex->library_was_cached() ? "cached" : "received");
    for (int i = 3; i < argc; ++i) {
      std::string cmd = argv[i], name = cmd.substr(0, cmd.find(':'));
      if (cmd == "release_at_broker") {
        rfaas::broker_release(argv[1], grant.lease_id);
        const auto released = std::chrono::steady_clock::now();
        unsigned long served = 0;
        rfaas::Errc e = rfaas::Errc::ok;
        char out[64];
        size_t n = 0;
        while (e == rfaas::Errc::ok && std::chrono::steady_clock::now() - released < std::chrono::seconds(10)) {
          e = ex->invoke(ex->function("identity"), nullptr, 0, out, sizeof out, &n, std::chrono::seconds(2));
          if (e == rfaas::Errc::ok) ++served;
        }
        const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - released);
        std::printf("release_at_broker -> %s after %lld ms, %lu calls served after the release\n", rfaas::to_string(e),
                    static_cast<long long>(ms.count()), served);
        std::fflush(stdout);
        return 0;
      }
      std::string arg = cmd.find(':') == std::string::npos ? "" : cmd.substr(cmd.find(':') + 1);
      char out[4096];
      size_t n = 0;
      auto e = ex->invoke(ex->function(name), arg.data(), arg.size(), out, sizeof out, &n, std::chrono::seconds(20));
      if (e == rfaas::Errc::ok) std::printf("%s -> %.*s\n", cmd.c_str(), static_cast<int>(n), out);
      else std::printf("%s -> error %s\n", cmd.c_str(), rfaas::to_string(e));
      std::fflush(stdout);
      if (e != rfaas::Errc::ok) {
        // Why the lease ended, as the daemon says it.
        try {
          ex->create_region(4096);
        } catch (const rfaas::Error& err) {
          std::printf("lease_end -> %s | %s\n", rfaas::to_string(err.code()), err.what());
        }
        return 0;
      }
    }
    ex->release();
    rfaas::broker_release(argv[1], grant.lease_id);
    std::printf("released -> ok\n");
  } catch (const rfaas::Error& e) {
    std::printf("failed -> %s | %s\n", rfaas::to_string(e.code()), e.what());
    return 1;
  }
  return 0;
}
