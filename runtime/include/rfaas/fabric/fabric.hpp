// runtime/fabric: the narrow transport interface rfaas is built on.
//
// It offers what the invocation protocol needs and nothing more: a domain, memory registration,
// connected endpoints, RDMA write-with-immediate, completion polling (busy) and waiting
// (blocking). It knows nothing of leases or functions. A backend (ofi/, verbs/, loopback/) fills
// these classes; which backend is chosen once, at open_domain(), never per operation. faults/ wraps
// any of them (Config::faults) to inject failures at chosen operations, for tests.
//
// Errors: setup calls throw fabric::Error (cold path). Hot-path calls (write_imm, poll, wait)
// are noexcept and return error values; a broken connection surfaces as an error completion.
#pragma once

#include "rfaas/coded_error.hpp"
#include <chrono>
#include <functional>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace rfaas::fabric {

enum class Errc : uint8_t {
  ok = 0,
  again,             // too many writes outstanding: poll completions, then retry
  timeout,           // a bounded wait ended without the event
  peer_lost,         // the peer died or the connection broke
  remote_access,     // the write hit a wrong key or went beyond the remote region
  invalid_argument,  // a local argument is wrong (bounds of a local region, sizes)
  no_backend,        // the requested backend or provider is not available here
  unsupported,       // the provider cannot do what rfaas needs
  protocol,          // the peer sent a malformed or incompatible handshake
  io,                // any other transport failure (message has the provider's words)
};
const char* to_string(Errc) noexcept;

using Error = CodedError<Errc>;

// loopback: in-process only (both ends in one process), for tests of what is built on the fabric
// without processes or a provider.
enum class Backend : uint8_t { ofi, verbs, loopback };
const char* to_string(Backend) noexcept;

struct Config {
  Backend backend = Backend::ofi;
  // Failures to inject (the faults decorator over `backend`), e.g. "drop_write@3,lose_peer@10":
  // faults/faults_backend.hpp has the rules. Empty: the backend as it is.
  std::string faults;
  // libfabric provider: "shm", "tcp" (means "tcp;ofi_rxm"), any provider string fi_getinfo takes,
  // or "auto" (the default): shm between processes of one host, tcp between hosts. A domain
  // opened without a peer in mind takes "auto" as shm; the client and the executor resolve it
  // per lease (ofi_provider_for).
  std::string ofi_provider = "auto";
  // Address the endpoints of this domain bind to, where the provider binds to one.
  std::string local_host = "127.0.0.1";
  // Whether local_host was chosen (RFAAS_FABRIC_HOST) rather than defaulted: a client that did
  // not choose binds to the address its control connection to the peer's node uses, so that a
  // peer on another host is reached from an address it can answer.
  bool local_host_chosen = false;
  // verbs: the device by name (rxe0, mlx5_0) or by an IPv4 address of its netdev; empty: the
  // one holding local_host, else the first.
  std::string verbs_device;
  // verbs: the source GID index instead of the one rdma_cm picks for the address; -1: none.
  int verbs_gid_index = -1;

  // From RFAAS_FABRIC (ofi|verbs|loopback, or faults:<backend> with the rules in
  // RFAAS_FABRIC_FAULTS), RFAAS_OFI_PROVIDER, RFAAS_FABRIC_HOST and, for verbs only,
  // RFAAS_VERBS_DEVICE and RFAAS_VERBS_GID_INDEX; unset keeps the defaults above. Throws Error(no_backend) for an
  // unknown backend name, Error(invalid_argument) for a malformed value. The process's
  // environment is read here only, by the binaries and the C API (the edges).
  static Config from_env();
  // The same from any source of variables (name -> value, or null where unset).
  static Config from_variables(const std::function<const char*(const char*)>& lookup);
  // The variables from_variables reads back into this configuration ("NAME=value"), for a
  // process this one starts: the executor daemon hands its executors its own configuration.
  // local_host is left out; the starter gives the child its address.
  std::vector<std::string> to_variables() const;
  // The provider to use with a peer on this host (same_host) or another: ofi_provider, unless
  // it is "auto".
  std::string ofi_provider_for(bool same_host) const;
};

// Whether two ofi provider names are the same provider ("tcp" is "tcp;ofi_rxm").
bool same_ofi_provider(const std::string& a, const std::string& b);

// This host as shm sees it: its boot id and its name. Processes whose identities are equal meet
// over shm; any other peer is on another host.
std::string host_identity();

// Where the remote side may write: the triple a peer needs for write_imm. `address` is what the
// provider wants as the target address of byte 0 of the region: its virtual address for providers
// with virtual addressing (shm, verbs), 0 for offset-addressed ones (tcp;ofi_rxm).
struct RemoteRegion {
  uint64_t address = 0;
  uint64_t key = 0;
  uint64_t length = 0;
};

enum class Access : uint32_t {
  local = 0,         // source of writes only
  remote_write = 1,  // peers may write into it
};

// A registered range of memory. The hot path reads the plain members directly.
class MemoryRegion {
 public:
  virtual ~MemoryRegion() = default;
  MemoryRegion(const MemoryRegion&) = delete;
  MemoryRegion& operator=(const MemoryRegion&) = delete;

  void* data() const noexcept { return data_; }
  size_t size() const noexcept { return size_; }
  void* descriptor() const noexcept { return desc_; }
  // The key a local gather entry names (verbs' lkey); 0 where the provider uses descriptor().
  uint32_t local_key() const noexcept { return local_key_; }
  RemoteRegion remote() const noexcept { return {remote_base_, key_, size_}; }

 protected:
  MemoryRegion() = default;
  void* data_ = nullptr;
  size_t size_ = 0;
  void* desc_ = nullptr;
  uint64_t key_ = 0;
  uint64_t remote_base_ = 0;
  uint32_t local_key_ = 0;
};

struct Completion {
  enum class Kind : uint8_t {
    write_sent,      // our write_imm finished locally; `context` is the caller's
    write_received,  // a peer's write landed here; `imm` is what it carried. Its length is not
                     // reported: tcp;ofi_rxm does not, so protocols carry sizes themselves.
    error,           // `error` says what; `context` names the failed write (0 if none).
                     // A lost peer fails each outstanding write, then reports once with context 0.
  };
  Kind kind = Kind::error;
  Errc error = Errc::ok;
  uint32_t imm = 0;
  uint64_t context = 0;
};

// One piece of a gathered write: bytes [offset, offset+length) of a registered region.
struct Segment {
  const MemoryRegion* region = nullptr;
  size_t offset = 0;
  size_t length = 0;
};
// Every backend gathers at least this many segments into one write.
inline constexpr int kMaxSegments = 2;

// Up to this many bytes travel with a connection request and its answer (rdma_cm's RC private
// data allows 56; the protocol needs a region descriptor and a few ids).
inline constexpr size_t kConnectionDataMax = 48;

struct ConnectionData {
  uint8_t size = 0;
  uint8_t bytes[kConnectionDataMax] = {};
};

// How Endpoint::wait() blocks. Chosen at setup because it can cost on the hot path.
enum class WaitMode : uint8_t {
  none,   // poll only; wait() returns Errc::unsupported
  sleep,  // wait() polls with sleeps of at most 256 us between reads: free while hot, wakes
          // within one sleep period, wakes at once for a lost peer
  event,  // wait() blocks on the provider's wait object: wakes at once, but some providers
          // pay for it on every completion (tcp;ofi_rxm: ~0.75 us); shm has none and sleeps
};

struct EndpointConfig {
  uint32_t max_outstanding_writes = 64;  // write_imm returns Errc::again beyond this
  uint32_t receive_depth = 256;          // receives kept posted, for backends that consume one per write
  WaitMode wait_mode = WaitMode::sleep;
  // A write not completed by then fails with Errc::timeout: some providers drop a refused write
  // without reporting it (see docs/fabric.md). Checked while polling, off the fast path.
  std::chrono::milliseconds write_timeout{10'000};
};

class Endpoint {
 public:
  virtual ~Endpoint() = default;
  Endpoint(const Endpoint&) = delete;
  Endpoint& operator=(const Endpoint&) = delete;

  // Connects to a listener at "host:port". `mine` reaches the listener's accept(); its answer
  // comes back in `theirs`. Throws Error; bounded by `timeout`.
  virtual void connect(const std::string& address, const ConnectionData& mine, ConnectionData& theirs,
                       std::chrono::milliseconds timeout) = 0;

  // Writes [src.data()+src_offset, +length) to dst.address+dst_offset at the peer and delivers
  // `imm` with it. One write_sent (or error) completion carrying `context` follows.
  virtual Errc write_imm(const MemoryRegion& src, size_t src_offset, size_t length, const RemoteRegion& dst,
                         uint64_t dst_offset, uint32_t imm, uint64_t context) noexcept = 0;

  // The same, gathering up to kMaxSegments local segments into one contiguous remote range
  // (e.g. a small header and a payload in the caller's own memory).
  virtual Errc write_imm(const Segment* segments, int count, const RemoteRegion& dst, uint64_t dst_offset,
                         uint32_t imm, uint64_t context) noexcept = 0;

  // Fills up to `max` completions without blocking; returns how many.
  virtual int poll(Completion* out, int max) noexcept = 0;

  // Blocks until a completion may be ready (Errc::ok), `timeout` passes (Errc::timeout), or the
  // peer is lost (Errc::peer_lost; poll() then reports it). See WaitMode.
  virtual Errc wait(std::chrono::microseconds timeout) noexcept = 0;

  // Payloads up to this size are sent inline (no local memory registration is read).
  virtual size_t max_inline() const noexcept = 0;
  virtual bool connected() const noexcept = 0;

 protected:
  Endpoint() = default;
};

// A connector sends its data as it connects: one that has said nothing after this long holds up
// an admitting accept no longer.
inline constexpr std::chrono::milliseconds kAdmitHelloTimeout{500};

class Listener {
 public:
  virtual ~Listener() = default;
  // "host:port" for connectors.
  virtual std::string address() const = 0;
  // Whether a connector may connect, judged by its connection data before anything of this side's
  // (`mine`) reaches it.
  using Admit = std::function<bool(const ConnectionData& theirs)>;
  // Accepts one connection and returns its endpoint, made with `config` in the listener's domain.
  // A connector that `admit` refuses is turned away (it sees its connect fail) and the wait goes
  // on for the next. Connectors are judged side by side, each given at most kAdmitHelloTimeout to
  // present its data: silent ones delay no other. Throws Error(timeout).
  virtual std::unique_ptr<Endpoint> accept(const EndpointConfig& config, const ConnectionData& mine,
                                           ConnectionData& theirs, std::chrono::milliseconds timeout,
                                           const Admit& admit = {}) = 0;
  // Makes `count` endpoints with `config` now, for the next accepts (which then take them instead
  // of making their own): an endpoint can take tens of milliseconds to make (a provider's queues,
  // a QP), which a connector should not wait for. Accepts must use the same config.
  virtual void prepare(const EndpointConfig& config, size_t count) {
    (void)config;
    (void)count;
  }
};

// What a domain's transport does beyond the interface, asked rather than inferred from names.
struct Capabilities {
  // Endpoints and registrations opened before a credential change (setuid) go on working after
  // it. The kernel refuses RDMA descriptors (rdma_cm, uverbs) opened before one: verbs must be
  // opened again as the new user.
  bool survives_credential_change = true;
  // Peers meet through files in the host's /dev/shm (libfabric's shm provider): a process that
  // talks over this domain needs the host's /dev/shm, not a private one.
  bool meets_peers_in_dev_shm = false;
};

class Domain {
 public:
  virtual ~Domain() = default;
  Domain(const Domain&) = delete;
  Domain& operator=(const Domain&) = delete;

  virtual Backend backend() const noexcept = 0;
  // Human-readable provider name, e.g. "shm" or "tcp;ofi_rxm".
  virtual std::string provider() const = 0;
  virtual Capabilities capabilities() const noexcept = 0;

  virtual std::unique_ptr<MemoryRegion> register_memory(void* data, size_t size, Access access) = 0;
  virtual std::unique_ptr<Endpoint> create_endpoint(const EndpointConfig& config = {}) = 0;
  // Port 0 picks a free port.
  virtual std::unique_ptr<Listener> listen(const std::string& host, uint16_t port) = 0;

 protected:
  Domain() = default;
};

// Opens a domain of the configured backend (wrapped by the faults decorator when config.faults
// names rules). Throws Error(no_backend) naming what is available when the backend or provider
// is missing, Error(invalid_argument) for rules that do not parse.
std::unique_ptr<Domain> open_domain(const Config& config);

// Removes what a process that used the fabric and died without closing it left on this host (the
// shm provider's files in /dev/shm), by its pid. For the parent of such a process.
void clean_up_after(int pid) noexcept;

// Helpers for ConnectionData.
template <class T>
ConnectionData make_connection_data(const T& value) {
  static_assert(sizeof(T) <= kConnectionDataMax, "connection data too large for the transport");
  ConnectionData cd;
  cd.size = sizeof(T);
  __builtin_memcpy(cd.bytes, &value, sizeof(T));
  return cd;
}

template <class T>
T read_connection_data(const ConnectionData& cd) {
  static_assert(sizeof(T) <= kConnectionDataMax, "connection data too large for the transport");
  if (cd.size != sizeof(T)) throw Error(Errc::protocol, "connection data has " + std::to_string(cd.size) +
                                                            " bytes, expected " + std::to_string(sizeof(T)));
  T value;
  __builtin_memcpy(&value, cd.bytes, sizeof(T));
  return value;
}

}  // namespace rfaas::fabric
