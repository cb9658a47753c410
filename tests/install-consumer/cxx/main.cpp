// A C++ program on the installed rfaas/client.hpp, without MPI: leases a core through the broker,
// deploys the installed echo function, invokes it, gives the lease back.
#include <rfaas/client.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

int main() {
  const char* broker = std::getenv("RFAAS_BROKER");
  const char* functions = std::getenv("RFAAS_FUNCTIONS");
  if (!broker || !functions) {
    std::fprintf(stderr, "consumer_cxx: RFAAS_BROKER and RFAAS_FUNCTIONS must be set\n");
    return 1;
  }
  try {
    rfaas::BrokerLeaseOptions lo;
    lo.memory_bytes = 64 << 20;
    auto grant = rfaas::broker_lease(broker, lo);
    rfaas::DeployOptions o;
    o.library_path = std::string(functions) + "/librfaas_functions_basic.so";
    o.functions = {"echo"};
    o.input_capacity = o.output_capacity = 4096;
    std::unique_ptr<rfaas::Executor> ex;
    try {
      ex = rfaas::Executor::deploy(grant, o);
    } catch (...) {
      rfaas::broker_release(broker, grant.lease_id);  // a failed deploy: give the cores back
      throw;
    }
    const char in[] = "hello from C++";
    char out[64] = {};
    size_t n = 0;
    auto rc = ex->invoke(ex->function("echo"), in, sizeof in, out, sizeof out, &n);
    std::printf("consumer_cxx: node %s echoed \"%s\" (%s)\n", grant.node.c_str(), out, rfaas::to_string(rc));
    ex->release();
    rfaas::broker_release(broker, grant.lease_id);
    return rc == rfaas::Errc::ok && n == sizeof in && std::strcmp(in, out) == 0 ? 0 : 1;
  } catch (const rfaas::Error& e) {
    std::fprintf(stderr, "consumer_cxx: %s: %s\n", rfaas::to_string(e.code()), e.what());
    return 1;
  }
}
