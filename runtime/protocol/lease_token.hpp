// Lease tokens: the lease's fields with an HMAC-SHA256 over them, keyed by the cluster secret
// that the broker and the executor daemons share. A daemon serves a lease only for a token it
// can verify. The same format is issued by the broker and, in direct mode, made by whoever
// holds the secret (tests, single-node setups).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace rfaas::protocol {

class SecretError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class ClusterSecret {
 public:
  // Reads the secret file. Refuses a file readable or writable by group or others, or one
  // shorter than 16 bytes: SecretError with the reason.
  static ClusterSecret load(const std::string& path);
  // Writes `bytes` random bytes to a new file with mode 0600.
  static void generate(const std::string& path, size_t bytes = 32);
  explicit ClusterSecret(std::vector<uint8_t> key) : key_(std::move(key)) {}
  const std::vector<uint8_t>& key() const { return key_; }
  // HMAC-SHA256 of `text` with this secret, lowercase hex; and its constant-time check.
  std::string sign(const std::string& text) const;
  bool verify(const std::string& text, const std::string& mac) const;
  // A key of one purpose, derived from this one (HMAC-SHA256 of "rfaas-key-v1\n" + purpose):
  // what one purpose signs never verifies as another's, and a key can be handed out for its
  // purpose alone. Purposes: kTokenKey (lease tokens), kNodeKey (daemon registrations and
  // reports). Operators authenticate with MUNGE, not with a key.
  ClusterSecret derive(const std::string& purpose) const;

 private:
  std::vector<uint8_t> key_;
};

inline constexpr const char* kTokenKey = "lease-token";
inline constexpr const char* kNodeKey = "node";

struct LeaseToken {
  uint64_t lease_id = 0;
  std::string executor;      // node name of the executor daemon it is valid on
  uint32_t cores = 0;
  uint64_t memory_bytes = 0;
  int64_t expires_at_ms = 0;  // Unix epoch milliseconds
  std::string client;         // who holds it, for accounting
  // The leasing user, as the broker authenticated it (MUNGE): the daemon runs the lease's
  // executor as this uid and gid. `job`: the client's Slurm job (SLURM_JOB_ID), or empty.
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::string job;
  std::string mac;            // lowercase hex HMAC-SHA256 over canonical(), with the kTokenKey key

  std::string canonical() const;
  // With the cluster secret's kTokenKey key.
  void sign(const ClusterSecret& secret);
  // Constant-time comparison of the MAC; says nothing about expiry.
  bool verify(const ClusterSecret& secret) const;
};

void to_json(nlohmann::json& j, const LeaseToken& t);
void from_json(const nlohmann::json& j, LeaseToken& t);  // throws MessageError(malformed)

struct WorkerHello;
// The key a lease's client proves itself with to the lease's executor: derived from the token's
// MAC (SHA-256 of "rfaas-worker-hello-v1\n" + mac, hex), which only holders of the token know.
std::string worker_hello_key(const LeaseToken& token);
void sign_worker_hello(WorkerHello& hello, const std::string& key);
bool worker_hello_valid(const WorkerHello& hello, const std::string& key);  // constant-time

int64_t unix_now_ms();
std::string sha256_hex(const void* data, size_t size);

}  // namespace rfaas::protocol
