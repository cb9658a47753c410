#include "protocol/lease_token.hpp"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "protocol/invocation.hpp"
#include "protocol/json_fields.hpp"

namespace rfaas::protocol {

using detail::field;
using detail::hex;
using detail::is_hex;
using detail::malformed;

ClusterSecret ClusterSecret::load(const std::string& path) {
  // O_NONBLOCK: a FIFO planted at the path does not hang the daemon (refused below).
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) throw SecretError("cluster secret " + path + ": " + std::strerror(errno));
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > 65536) {
    ::close(fd);
    throw SecretError("cluster secret " + path + " is not a regular file of at most 64 KiB");
  }
  // Whoever owns the file could have written it: only we (root, for root's daemons) may.
  if (st.st_uid != ::geteuid()) {
    ::close(fd);
    throw SecretError("cluster secret " + path + " is owned by uid " + std::to_string(st.st_uid) + ", not by uid " +
                      std::to_string(::geteuid()) + " that reads it; chown it");
  }
  if (st.st_mode & 077) {
    ::close(fd);
    char mode[8];
    std::snprintf(mode, sizeof mode, "%03o", st.st_mode & 0777);
    throw SecretError("cluster secret " + path + " is accessible by group or others (mode " + mode + "); chmod 600 it");
  }
  std::vector<uint8_t> key(static_cast<size_t>(st.st_size));
  ssize_t n = ::read(fd, key.data(), key.size());
  ::close(fd);
  if (n != static_cast<ssize_t>(key.size())) throw SecretError("cluster secret " + path + ": short read");
  if (key.size() < 16) throw SecretError("cluster secret " + path + " is shorter than 16 bytes");
  return ClusterSecret(std::move(key));
}

void ClusterSecret::generate(const std::string& path, size_t bytes) {
  std::vector<uint8_t> key(bytes);
  if (RAND_bytes(key.data(), static_cast<int>(bytes)) != 1) throw SecretError("RAND_bytes failed");
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) throw SecretError("cannot create " + path + ": " + std::strerror(errno));
  bool ok = ::write(fd, key.data(), key.size()) == static_cast<ssize_t>(key.size());
  ::close(fd);
  if (!ok) throw SecretError("cannot write " + path);
}

std::string LeaseToken::canonical() const {
  return "rfaas-lease-v2\n" + std::to_string(lease_id) + "\n" + executor + "\n" + std::to_string(cores) + "\n" +
         std::to_string(memory_bytes) + "\n" + std::to_string(expires_at_ms) + "\n" + std::to_string(uid) + "\n" +
         std::to_string(gid) + "\n" + job + "\n" + client;
}

std::string ClusterSecret::sign(const std::string& text) const {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()), reinterpret_cast<const unsigned char*>(text.data()),
       text.size(), out, &len);
  return hex(out, len);
}

bool ClusterSecret::verify(const std::string& text, const std::string& mac) const {
  std::string expected = sign(text);
  return mac.size() == expected.size() && CRYPTO_memcmp(mac.data(), expected.data(), mac.size()) == 0;
}

ClusterSecret ClusterSecret::derive(const std::string& purpose) const {
  const std::string label = "rfaas-key-v1\n" + purpose;
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()), reinterpret_cast<const unsigned char*>(label.data()),
       label.size(), out, &len);
  return ClusterSecret(std::vector<uint8_t>(out, out + len));
}

void LeaseToken::sign(const ClusterSecret& secret) { mac = secret.derive(kTokenKey).sign(canonical()); }

bool LeaseToken::verify(const ClusterSecret& secret) const { return secret.derive(kTokenKey).verify(canonical(), mac); }

void to_json(nlohmann::json& j, const LeaseToken& t) {
  j = {{"lease_id", t.lease_id}, {"executor", t.executor}, {"cores", t.cores}, {"memory_bytes", t.memory_bytes},
       {"expires_at_ms", t.expires_at_ms}, {"client", t.client}, {"uid", t.uid}, {"gid", t.gid}, {"job", t.job}, {"mac", t.mac}};
}

void from_json(const nlohmann::json& j, LeaseToken& t) {
  t.lease_id = field<uint64_t>(j, "lease_id");
  t.executor = field<std::string>(j, "executor");
  t.cores = field<uint32_t>(j, "cores");
  t.memory_bytes = field<uint64_t>(j, "memory_bytes");
  t.expires_at_ms = field<int64_t>(j, "expires_at_ms");
  t.client = field<std::string>(j, "client");
  t.uid = field<uint32_t>(j, "uid");
  t.gid = field<uint32_t>(j, "gid");
  t.job = field<std::string>(j, "job");
  if (t.job.size() > 64) malformed("token job must be at most 64 bytes");
  t.mac = field<std::string>(j, "mac");
  if (!is_hex(t.mac, 64)) malformed("token mac must be 64 lowercase hex digits");
}

std::string worker_hello_key(const LeaseToken& token) {
  const std::string text = "rfaas-worker-hello-v1\n" + token.mac;
  return sha256_hex(text.data(), text.size());
}

namespace {
void hello_tag(const WorkerHello& hello, const std::string& key, uint8_t out[16]) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(&hello),
       offsetof(WorkerHello, tag), mac, &len);
  std::memcpy(out, mac, 16);
}
}  // namespace

void sign_worker_hello(WorkerHello& hello, const std::string& key) { hello_tag(hello, key, hello.tag); }

bool worker_hello_valid(const WorkerHello& hello, const std::string& key) {
  uint8_t expected[16];
  hello_tag(hello, key, expected);
  return CRYPTO_memcmp(expected, hello.tag, sizeof expected) == 0;
}

int64_t unix_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string sha256_hex(const void* data, size_t size) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data, size, out, &len, EVP_sha256(), nullptr);
  return hex(out, len);
}

}  // namespace rfaas::protocol
