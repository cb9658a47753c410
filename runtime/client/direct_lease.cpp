#include <openssl/rand.h>
#include <unistd.h>

#include <cstdlib>

#include "protocol/control.hpp"
#include "protocol/lease_token.hpp"
#include "rfaas/client.hpp"

namespace rfaas {

LeaseGrant direct_lease(const std::string& daemon_address, const DirectLeaseOptions& options) {
  protocol::ClusterSecret secret({});
  try {
    secret = protocol::ClusterSecret::load(options.secret_file);
  } catch (const protocol::SecretError& e) {
    throw Error(Errc::bad_token, e.what());
  }
  if (options.node_name.empty()) throw Error(Errc::invalid_argument, "direct_lease: node_name is required");
  protocol::LeaseToken t;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&t.lease_id), sizeof t.lease_id) != 1)
    throw Error(Errc::invalid_argument, "direct_lease: no randomness for a lease id");
  t.lease_id >>= 1;  // fits JSON's signed integers everywhere
  t.executor = options.node_name;
  t.cores = options.cores;
  t.memory_bytes = options.memory_bytes;
  t.expires_at_ms = protocol::unix_now_ms() + options.duration.count();
  t.client = options.client;
  // Whoever holds the secret speaks for any user; a direct lease is its own user's.
  t.uid = static_cast<uint32_t>(::getuid());
  t.gid = static_cast<uint32_t>(::getgid());
  if (const char* job = std::getenv("SLURM_JOB_ID")) t.job = std::string(job).substr(0, 64);
  t.sign(secret);
  return {daemon_address, nlohmann::json(t).dump(), t.lease_id, t.expires_at_ms, t.executor};
}

}  // namespace rfaas
