#include "fabric/ofi/ofi_backend.hpp"

#include <poll.h>
#include <sys/random.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include <algorithm>
#include <unistd.h>
#include <cstdio>
#include <random>
#include <cerrno>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "net/tcp_socket.hpp"

namespace rfaas::fabric::ofi {
namespace {

constexpr uint32_t kApiVersion = FI_VERSION(1, 9);
// Once per this many poll() calls (or at the next poll after a wait()), the endpoint checks the
// bootstrap socket for a lost peer and its outstanding writes against write_timeout: one syscall
// per few thousand polls, a lost peer noticed within about a millisecond of polling.
constexpr uint32_t kPollsPerHousekeeping = 4096;
constexpr int kCqBatch = 16;

[[noreturn]] void fail(Errc code, const std::string& what, int fi_rc) {
  throw Error(code, what + ": " + fi_strerror(-fi_rc) + " (" + std::to_string(fi_rc) + ")");
}

std::string full_provider_name(const std::string& requested) {
  if (requested == "tcp") return "tcp;ofi_rxm";
  if (requested == "auto") return "shm";  // no peer in mind: this host's
  return requested;
}

// Maps a provider's error number for a failed operation to our names.
Errc map_cq_error(int err) {
  switch (err) {
    case FI_EACCES:
    case FI_EINVAL:
    case FI_EKEYREJECTED:
    case FI_EPERM:
    case FI_EFAULT:
    case FI_EOVERFLOW:
    case FI_ETOOSMALL:
      return Errc::remote_access;
    case FI_ECONNRESET:
    case FI_ECONNREFUSED:
    case FI_ECONNABORTED:
    case FI_ENOTCONN:
    case FI_EHOSTUNREACH:
    case EPIPE:
    case FI_ESHUTDOWN:
    case FI_EIO:
    case FI_ETIMEDOUT:
    case FI_ECANCELED:  // tcp;ofi_rxm cancels what was queued on a broken connection
      return Errc::peer_lost;
    default:
      return Errc::io;
  }
}

fi_info* make_hints(const std::string& provider) {
  fi_info* hints = fi_allocinfo();
  if (!hints) throw Error(Errc::io, "fi_allocinfo failed");
  hints->caps = FI_RMA | FI_WRITE | FI_REMOTE_WRITE;
  // Modes rfaas supports: every operation carries its own context slot.
  hints->mode = FI_CONTEXT | FI_CONTEXT2;
  hints->ep_attr->type = FI_EP_RDM;
  hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
  // One endpoint and CQ per worker thread; a domain's endpoints are used concurrently.
  hints->domain_attr->threading = FI_THREAD_COMPLETION;
  if (!provider.empty()) hints->fabric_attr->prov_name = strdup(provider.c_str());
  return hints;
}

class OfiDomain;

class OfiMemoryRegion final : public MemoryRegion {
 public:
  OfiMemoryRegion(fid_mr* mr, void* data, size_t size, void* desc, uint64_t key, uint64_t base) : mr_(mr) {
    data_ = data;
    size_ = size;
    desc_ = desc;
    key_ = key;
    remote_base_ = base;
  }
  ~OfiMemoryRegion() override { fi_close(&mr_->fid); }

 private:
  fid_mr* mr_;
};

// Handshake on the bootstrap socket; both sides send one and read one.
struct HelloHeader {
  char magic[4];
  uint16_t version;
  uint16_t provider_len;
  uint16_t address_len;
  uint8_t data_len;
  uint8_t pad;
};
constexpr char kHelloMagic[4] = {'R', 'F', 'O', 'F'};
constexpr uint16_t kHelloVersion = 1;
constexpr size_t kHelloMax = sizeof(HelloHeader) + 256 + 1024 + kConnectionDataMax;

class OfiEndpoint final : public Endpoint {
 public:
  OfiEndpoint(OfiDomain& domain, const EndpointConfig& config);
  ~OfiEndpoint() override;

  void connect(const std::string& address, const ConnectionData& mine, ConnectionData& theirs,
               std::chrono::milliseconds timeout) override;
  Errc write_imm(const MemoryRegion& src, size_t src_offset, size_t length, const RemoteRegion& dst,
                 uint64_t dst_offset, uint32_t imm, uint64_t context) noexcept override;
  Errc write_imm(const Segment* segments, int count, const RemoteRegion& dst, uint64_t dst_offset, uint32_t imm,
                 uint64_t context) noexcept override;
  int poll(Completion* out, int max) noexcept override;
  Errc wait(std::chrono::microseconds timeout) noexcept override;
  size_t max_inline() const noexcept override { return inject_size_; }
  bool connected() const noexcept override { return peer_ != FI_ADDR_NOTAVAIL && !broken_; }

  // Exchanges addresses and connection data over `stream`, then keeps it for liveness.
  // Exchanges hellos over the bootstrap stream. With `admit` (the accepting side) the peer's hello
  // is read and judged first: false when refused (nothing of ours was sent).
  // `hello_read`: the peer's hello, already read by the listener.
  bool handshake(net::TcpStream stream, const ConnectionData& mine, ConnectionData& theirs, net::Deadline deadline,
                 const Listener::Admit* admit = nullptr, const std::vector<uint8_t>* hello_read = nullptr);
  OfiDomain& domain() const { return domain_; }

 private:
  enum class SlotState : uint8_t { free, in_use, abandoned };
  struct OpSlot {
    fi_context2 ctx;  // first member: the provider hands back &ctx as op_context
    uint64_t user_context;
    SlotState state;
    // When housekeeping first saw this write outstanding; stamped there, not on the fast path.
    std::chrono::steady_clock::time_point first_seen;
  };

  int report_lost(Completion* out, int max) noexcept;
  int housekeeping(Completion* out, int max) noexcept;
  // Returns a completed slot; false when it had been abandoned (its error was already reported).
  OpSlot* take_slot(uint64_t context) noexcept {
    if (free_count_ == 0) return nullptr;
    OpSlot* slot = &slots_[free_slots_[--free_count_]];
    slot->user_context = context;
    slot->state = SlotState::in_use;
    slot->first_seen = {};
    return slot;
  }
  bool release_slot(OpSlot* slot) noexcept {
    bool live = slot->state == SlotState::in_use;
    slot->state = SlotState::free;
    free_slots_[free_count_++] = static_cast<uint32_t>(slot - slots_.data());
    return live;
  }
  Errc sleeping_wait(std::chrono::microseconds timeout) noexcept;

  OfiDomain& domain_;
  fid_ep* ep_ = nullptr;
  fid_cq* cq_ = nullptr;
  fid_av* av_ = nullptr;
  int cq_fd_ = -1;
  fi_addr_t peer_ = FI_ADDR_NOTAVAIL;
  size_t inject_size_ = 0;
  net::TcpStream bootstrap_;

  std::vector<OpSlot> slots_;
  std::vector<uint32_t> free_slots_;
  uint32_t free_count_ = 0;
  uint32_t polls_ = 0;
  std::chrono::milliseconds write_timeout_;
  WaitMode wait_mode_;
  // Entries a sleeping wait() read ahead; poll() hands them out first.
  fi_cq_data_entry stash_[kCqBatch];
  int stash_count_ = 0;
  int stash_next_ = 0;
  bool broken_ = false;
  bool lost_reported_ = false;
  size_t lost_cursor_ = 0;
};

class OfiDomain final : public Domain {
 public:
  explicit OfiDomain(const Config& config);
  ~OfiDomain() override;

  Backend backend() const noexcept override { return Backend::ofi; }
  std::string provider() const override { return info_->fabric_attr->prov_name; }
  Capabilities capabilities() const noexcept override {
    // shm and tcp keep working across a credential change; providers over RDMA devices hold
    // descriptors the kernel refuses after one.
    const char* prov = info_->fabric_attr->prov_name;
    const bool shm = std::strcmp(prov, "shm") == 0;
    return {.survives_credential_change = shm || std::strncmp(prov, "tcp", 3) == 0, .meets_peers_in_dev_shm = shm};
  }
  std::unique_ptr<MemoryRegion> register_memory(void* data, size_t size, Access access) override;
  std::unique_ptr<Endpoint> create_endpoint(const EndpointConfig& config) override {
    return std::make_unique<OfiEndpoint>(*this, config);
  }
  std::unique_ptr<Listener> listen(const std::string& host, uint16_t port) override;

  fi_info* info() const { return info_; }
  fid_fabric* fabric() const { return fabric_; }
  fid_domain* domain() const { return domain_; }

 private:
  fi_info* info_ = nullptr;
  fid_fabric* fabric_ = nullptr;
  fid_domain* domain_ = nullptr;
  std::atomic<uint64_t> next_key_{1};
};

class OfiListener final : public Listener {
 public:
  OfiListener(OfiDomain& domain, net::TcpListener tcp) : domain_(domain), tcp_(std::move(tcp)) {}
  std::string address() const override { return net::HostPort{tcp_.host(), tcp_.port()}.str(); }
  std::unique_ptr<Endpoint> accept(const EndpointConfig& config, const ConnectionData& mine, ConnectionData& theirs,
                                   std::chrono::milliseconds timeout, const Admit& admit = {}) override;
  void prepare(const EndpointConfig& config, size_t count) override {
    for (size_t i = 0; i < count; ++i) prepared_.push_back(std::make_unique<OfiEndpoint>(domain_, config));
  }

 private:
  OfiDomain& domain_;
  net::TcpListener tcp_;
  std::vector<std::unique_ptr<OfiEndpoint>> prepared_;  // made ahead by prepare(), taken in order
};

// ---------------------------------------------------------------------------------------------

OfiDomain::OfiDomain(const Config& config) {
  std::string prov = full_provider_name(config.ofi_provider);
  fi_info* hints = make_hints(prov);
  // Providers on IP networks bind their endpoints to the configured host.
  bool ip_provider = prov.find("shm") == std::string::npos;
  int rc = fi_getinfo(kApiVersion, ip_provider ? config.local_host.c_str() : nullptr, nullptr,
                      ip_provider ? FI_SOURCE : 0, hints, &info_);
  fi_freeinfo(hints);
  if (rc != 0 || !info_) {
    info_ = nullptr;
    throw Error(Errc::no_backend, "libfabric provider '" + prov +
                                      "' is not available or cannot do RMA writes with remote CQ data (" +
                                      fi_strerror(-rc) + "); usable providers here: " + available_providers());
  }
  // Keep only the first (preferred) match.
  if (info_->next) {
    fi_freeinfo(info_->next);
    info_->next = nullptr;
  }
  if (info_->domain_attr->cq_data_size < 4) {
    std::string name = info_->fabric_attr->prov_name;
    fi_freeinfo(info_);
    throw Error(Errc::unsupported, "provider '" + name + "' carries fewer than 4 bytes of remote CQ data");
  }
  if ((rc = fi_fabric(info_->fabric_attr, &fabric_, nullptr)) != 0) {
    fi_freeinfo(info_);
    fail(Errc::io, "fi_fabric", rc);
  }
  if ((rc = fi_domain(fabric_, info_, &domain_, nullptr)) != 0) {
    fi_close(&fabric_->fid);
    fi_freeinfo(info_);
    fail(Errc::io, "fi_domain", rc);
  }
}

OfiDomain::~OfiDomain() {
  if (domain_) fi_close(&domain_->fid);
  if (fabric_) fi_close(&fabric_->fid);
  if (info_) fi_freeinfo(info_);
}

std::unique_ptr<MemoryRegion> OfiDomain::register_memory(void* data, size_t size, Access access) {
  if (!data || size == 0) throw Error(Errc::invalid_argument, "register_memory: empty region");
  uint64_t mode = info_->domain_attr->mr_mode;
  uint64_t flags = FI_WRITE;
  if (access == Access::remote_write) flags |= FI_REMOTE_WRITE;
  // Where the provider takes the key from us (tcp;ofi_rxm, shm), a random one: sequential keys
  // (with offsets from 0 where addresses are not virtual) would let anything that reaches an
  // endpoint guess its way into another's registered memory.
  const size_t key_bytes = std::min<size_t>(info_->domain_attr->mr_key_size, sizeof(uint64_t));
  auto random_key = [&] {
    uint64_t k = 0;
    if (::getrandom(&k, sizeof k, 0) != static_cast<ssize_t>(sizeof k)) k = next_key_.fetch_add(1) * 0x9E3779B97F4A7C15ull;
    return key_bytes >= sizeof(uint64_t) ? k : k & ((uint64_t{1} << (8 * key_bytes)) - 1);
  };
  uint64_t requested_key = random_key();
  fid_mr* mr = nullptr;
  int rc = fi_mr_reg(domain_, data, size, flags, 0, requested_key, 0, &mr, nullptr);
  if (rc == -FI_ENOKEY) {  // taken already (one in 2^64): another
    requested_key = random_key();
    rc = fi_mr_reg(domain_, data, size, flags, 0, requested_key, 0, &mr, nullptr);
  }
  if (rc != 0) fail(Errc::io, "fi_mr_reg of " + std::to_string(size) + " bytes", rc);
  uint64_t key = (mode & FI_MR_PROV_KEY) ? fi_mr_key(mr) : requested_key;
  uint64_t base = (mode & FI_MR_VIRT_ADDR) ? reinterpret_cast<uint64_t>(data) : 0;
  return std::make_unique<OfiMemoryRegion>(mr, data, size, fi_mr_desc(mr), key, base);
}

std::unique_ptr<Listener> OfiDomain::listen(const std::string& host, uint16_t port) {
  try {
    return std::make_unique<OfiListener>(*this, net::TcpListener::bind(host, port));
  } catch (const net::NetError& e) {
    throw Error(Errc::io, std::string("listen: ") + e.what());
  }
}

// ---------------------------------------------------------------------------------------------

// "rfaas-<pid>-<random>-<n>": unique across processes and endpoints, stale regions included.
std::string unique_shm_name() {
  static std::atomic<uint32_t> counter{0};
  static const uint64_t nonce = [] {
    std::random_device rd;
    return (uint64_t{rd()} << 32) ^ rd();
  }();
  char buf[64];
  std::snprintf(buf, sizeof buf, "rfaas-%d-%016llx-%u", static_cast<int>(::getpid()),
                static_cast<unsigned long long>(nonce), counter.fetch_add(1));
  return buf;
}

OfiEndpoint::OfiEndpoint(OfiDomain& domain, const EndpointConfig& config) : domain_(domain) {
  fi_info* info = domain.info();
  uint32_t depth = std::max<uint32_t>(1, std::min<uint32_t>(config.max_outstanding_writes,
                                                            static_cast<uint32_t>(info->tx_attr->size)));
  slots_.resize(depth);
  free_slots_.resize(depth);
  for (uint32_t i = 0; i < depth; ++i) free_slots_[i] = depth - 1 - i;
  free_count_ = depth;
  inject_size_ = info->tx_attr->inject_size;
  write_timeout_ = config.write_timeout;
  wait_mode_ = config.wait_mode;

  auto cleanup_fail = [this](const char* what, int rc) {
    if (ep_) fi_close(&ep_->fid);
    if (cq_) fi_close(&cq_->fid);
    if (av_) fi_close(&av_->fid);
    ep_ = nullptr, cq_ = nullptr, av_ = nullptr;
    fail(Errc::io, what, rc);
  };

  fi_cq_attr cq_attr{};
  cq_attr.format = FI_CQ_FORMAT_DATA;
  cq_attr.size = std::max<size_t>(depth + config.receive_depth, 64);
  cq_attr.wait_obj = config.wait_mode == WaitMode::event ? FI_WAIT_FD : FI_WAIT_NONE;
  int rc = fi_cq_open(domain.domain(), &cq_attr, &cq_, nullptr);
  if (rc != 0 && cq_attr.wait_obj == FI_WAIT_FD) {
    // No fd to block on (shm has none): wait() sleeps instead, see sleeping_wait().
    cq_attr.wait_obj = FI_WAIT_NONE;
    rc = fi_cq_open(domain.domain(), &cq_attr, &cq_, nullptr);
  }
  if (rc != 0) {
    cq_ = nullptr;
    cleanup_fail("fi_cq_open", rc);
  }
  if (cq_attr.wait_obj == FI_WAIT_FD && (rc = fi_control(&cq_->fid, FI_GETWAIT, &cq_fd_)) != 0)
    cleanup_fail("fi_control(FI_GETWAIT)", rc);

  fi_av_attr av_attr{};
  av_attr.type = FI_AV_TABLE;
  av_attr.count = 1;
  if ((rc = fi_av_open(domain.domain(), &av_attr, &av_, nullptr)) != 0) cleanup_fail("fi_av_open", rc);
  if ((rc = fi_endpoint(domain.domain(), info, &ep_, nullptr)) != 0) cleanup_fail("fi_endpoint", rc);
  if ((rc = fi_ep_bind(ep_, &av_->fid, 0)) != 0) cleanup_fail("fi_ep_bind(av)", rc);
  if ((rc = fi_ep_bind(ep_, &cq_->fid, FI_TRANSMIT | FI_RECV)) != 0) cleanup_fail("fi_ep_bind(cq)", rc);
  if (std::string(info->fabric_attr->prov_name) == "shm") {
    // shm names its region in /dev/shm after the pid unless told otherwise. A process killed
    // with SIGKILL leaves its region behind, and a later process that gets the same pid would
    // fail fi_enable with EBUSY: a name no other process can have avoids that.
    std::string name = unique_shm_name();
    if ((rc = fi_setname(&ep_->fid, name.data(), name.size() + 1)) != 0) cleanup_fail("fi_setname", rc);
  }
  if ((rc = fi_enable(ep_)) != 0) cleanup_fail("fi_enable", rc);
}

OfiEndpoint::~OfiEndpoint() {
  // libfabric 1.17's rxm can use freed memory in fi_close on an endpoint whose connection broke
  // (its teardown flushes the message CQ after closing the connection's endpoint; fixed upstream
  // much later): seen here as a segfault in about one of five closes after a peer was killed.
  // Such an endpoint is left open instead: a bounded leak per lost peer, not a crash.
  if (broken_ && domain_.provider().find("rxm") != std::string::npos) return;
  if (ep_) fi_close(&ep_->fid);
  if (cq_) fi_close(&cq_->fid);
  if (av_) fi_close(&av_->fid);
}

bool OfiEndpoint::handshake(net::TcpStream stream, const ConnectionData& mine, ConnectionData& theirs,
                            net::Deadline deadline, const Listener::Admit* admit, const std::vector<uint8_t>* hello_read) {
  if (peer_ != FI_ADDR_NOTAVAIL) throw Error(Errc::invalid_argument, "endpoint is already connected");
  if (mine.size > kConnectionDataMax) throw Error(Errc::invalid_argument, "connection data too large");
  std::string prov = domain_.provider();
  uint8_t name[1024];
  size_t name_len = sizeof name;
  int rc = fi_getname(&ep_->fid, name, &name_len);
  if (rc != 0) fail(Errc::io, "fi_getname", rc);

  HelloHeader h{};
  std::memcpy(h.magic, kHelloMagic, 4);
  h.version = kHelloVersion;
  h.provider_len = static_cast<uint16_t>(prov.size());
  h.address_len = static_cast<uint16_t>(name_len);
  h.data_len = mine.size;
  std::vector<uint8_t> msg(sizeof h);
  std::memcpy(msg.data(), &h, sizeof h);
  msg.insert(msg.end(), prov.begin(), prov.end());
  msg.insert(msg.end(), name, name + name_len);
  msg.insert(msg.end(), mine.bytes, mine.bytes + mine.size);

  std::vector<uint8_t> reply;
  try {
    if (admit) {
      // Theirs first, judged below before ours goes out.
      reply = hello_read ? *hello_read : stream.recv_frame(kHelloMax, deadline);
    } else {
      stream.send_frame(msg.data(), msg.size(), deadline);
      reply = stream.recv_frame(kHelloMax, deadline);
    }
  } catch (const net::NetError& e) {
    throw Error(e.code() == net::NetErrc::timeout ? Errc::timeout
                : e.code() == net::NetErrc::too_large ? Errc::protocol
                                                      : Errc::peer_lost,
                std::string("fabric handshake: ") + e.what());
  }
  HelloHeader peer{};
  if (reply.size() < sizeof peer) throw Error(Errc::protocol, "fabric handshake: short hello");
  std::memcpy(&peer, reply.data(), sizeof peer);
  if (std::memcmp(peer.magic, kHelloMagic, 4) != 0 || peer.version != kHelloVersion)
    throw Error(Errc::protocol, "fabric handshake: peer is not an rfaas ofi endpoint of this version");
  if (reply.size() != sizeof peer + peer.provider_len + peer.address_len + peer.data_len ||
      peer.data_len > kConnectionDataMax)
    throw Error(Errc::protocol, "fabric handshake: hello lengths do not add up");
  const uint8_t* p = reply.data() + sizeof peer;
  std::string peer_prov(reinterpret_cast<const char*>(p), peer.provider_len);
  p += peer.provider_len;
  if (peer_prov != prov)
    throw Error(Errc::protocol, "fabric handshake: peer uses provider '" + peer_prov + "', this side '" + prov + "'");
  if (admit) {
    ConnectionData offered;
    offered.size = peer.data_len;
    std::memcpy(offered.bytes, p + peer.address_len, peer.data_len);
    if (!(*admit)(offered)) return false;  // the stream closes: the connector's connect fails
    try {
      stream.send_frame(msg.data(), msg.size(), deadline);
    } catch (const net::NetError& e) {
      throw Error(e.code() == net::NetErrc::timeout ? Errc::timeout : Errc::peer_lost,
                  std::string("fabric handshake: ") + e.what());
    }
  }
  rc = fi_av_insert(av_, p, 1, &peer_, 0, nullptr);
  if (rc != 1) {
    peer_ = FI_ADDR_NOTAVAIL;
    fail(Errc::protocol, "fabric handshake: fi_av_insert of the peer's address", rc < 0 ? rc : -FI_EINVAL);
  }
  p += peer.address_len;
  theirs.size = peer.data_len;
  std::memcpy(theirs.bytes, p, peer.data_len);
  // The bootstrap connection is how a peer's loss shows (peer_closed): a silent one too.
  try {
    stream.keep_alive(net::kKeepAliveIdle, net::kKeepAliveInterval, net::kKeepAliveProbes);
  } catch (const net::NetError& e) {
    throw Error(Errc::io, std::string("fabric handshake: ") + e.what());
  }
  bootstrap_ = std::move(stream);
  return true;
}

void OfiEndpoint::connect(const std::string& address, const ConnectionData& mine, ConnectionData& theirs,
                          std::chrono::milliseconds timeout) {
  auto deadline = net::deadline_in(timeout);
  net::TcpStream stream;
  try {
    stream = net::TcpStream::connect(net::HostPort::parse(address), deadline);
  } catch (const net::NetError& e) {
    throw Error(e.code() == net::NetErrc::timeout ? Errc::timeout
                : e.code() == net::NetErrc::invalid_address ? Errc::invalid_argument
                                                            : Errc::peer_lost,
                std::string("connect: ") + e.what());
  }
  handshake(std::move(stream), mine, theirs, deadline);
}

std::unique_ptr<Endpoint> OfiListener::accept(const EndpointConfig& config, const ConnectionData& mine,
                                              ConnectionData& theirs, std::chrono::milliseconds timeout,
                                              const Admit& admit) {
  std::unique_ptr<OfiEndpoint> ep;
  if (!prepared_.empty()) {
    ep = std::move(prepared_.front());
    prepared_.erase(prepared_.begin());
  } else {
    ep = std::make_unique<OfiEndpoint>(domain_, config);
  }
  OfiEndpoint* ofi_ep = ep.get();
  auto deadline = net::deadline_in(timeout);
  if (!admit) {
    net::TcpStream stream;
    try {
      stream = tcp_.accept(deadline);
    } catch (const net::NetError& e) {
      throw Error(e.code() == net::NetErrc::timeout ? Errc::timeout : Errc::io, std::string("accept: ") + e.what());
    }
    ofi_ep->handshake(std::move(stream), mine, theirs, deadline);
    return ep;
  }
  // Connectors are judged side by side, each given kAdmitHelloTimeout from its arrival to
  // present its hello: silent ones cost only themselves, never the connector behind them. At
  // most kMaxWaitingConnectors wait; past that the oldest is turned away.
  struct Connector {
    net::TcpStream stream;
    net::FrameReader hello{kHelloMax};
    net::Deadline until;
  };
  constexpr size_t kMaxWaitingConnectors = 256;
  std::vector<Connector> waiting;
  std::vector<pollfd> fds;
  enum class Verdict { waiting, turned_away, admitted };
  auto judge = [&](Connector& c) {
    try {
      if (!c.hello.read_available(c.stream)) return Verdict::waiting;
    } catch (const net::NetError&) {  // gone, or a hello too large
      return Verdict::turned_away;
    }
    try {
      if (ofi_ep->handshake(std::move(c.stream), mine, theirs, std::min(deadline, net::deadline_in(kAdmitHelloTimeout)),
                            &admit, &c.hello.frame()))
        return Verdict::admitted;
    } catch (const Error& e) {
      if (e.code() != Errc::protocol && e.code() != Errc::timeout && e.code() != Errc::peer_lost) throw;
    }
    return Verdict::turned_away;
  };
  for (;;) {
    auto now = net::Clock::now();
    std::erase_if(waiting, [&](const Connector& c) { return c.until <= now; });
    if (now >= deadline) throw Error(Errc::timeout, "accept: no admissible connector in time");
    // Each newcomer is judged as it is taken (its hello usually came with it), so a burst of
    // strangers behind it cannot push it out before it was read.
    for (size_t n = 0; n < kMaxWaitingConnectors; ++n) {
      Connector c{{}, net::FrameReader(kHelloMax), std::min(deadline, now + kAdmitHelloTimeout)};
      try {
        c.stream = tcp_.try_accept();
      } catch (const net::NetError& e) {
        if (waiting.empty()) throw Error(Errc::io, std::string("accept: ") + e.what());
        waiting.erase(waiting.begin());  // out of descriptors: the oldest stranger makes room
        continue;
      }
      if (!c.stream) break;
      Verdict v = judge(c);
      if (v == Verdict::admitted) return ep;
      if (v == Verdict::turned_away) continue;
      if (waiting.size() >= kMaxWaitingConnectors) waiting.erase(waiting.begin());
      waiting.push_back(std::move(c));
    }
    for (size_t i = 0; i < waiting.size();) {
      Verdict v = judge(waiting[i]);
      if (v == Verdict::admitted) return ep;
      if (v == Verdict::turned_away) waiting.erase(waiting.begin() + static_cast<std::ptrdiff_t>(i));
      else ++i;
    }
    fds.assign(1, pollfd{tcp_.fd(), POLLIN, 0});
    auto wake = deadline;
    for (auto& c : waiting) {
      fds.push_back({c.stream.fd(), POLLIN, 0});
      wake = std::min(wake, c.until);
    }
    auto ms = std::chrono::ceil<std::chrono::milliseconds>(wake - net::Clock::now()).count();
    ::poll(fds.data(), fds.size(), static_cast<int>(std::clamp<int64_t>(ms, 0, 1000)));
  }
}

// --- hot path --------------------------------------------------------------------------------

Errc OfiEndpoint::write_imm(const MemoryRegion& src, size_t src_offset, size_t length, const RemoteRegion& dst,
                            uint64_t dst_offset, uint32_t imm, uint64_t context) noexcept {
  if (broken_) [[unlikely]]
    return Errc::peer_lost;
  if (src_offset + length > src.size()) [[unlikely]]
    return Errc::invalid_argument;
  if (dst_offset + length > dst.length) [[unlikely]]
    return Errc::remote_access;
  OpSlot* slot = take_slot(context);
  if (!slot) [[unlikely]]
    return Errc::again;
  ssize_t rc = fi_writedata(ep_, static_cast<char*>(src.data()) + src_offset, length, src.descriptor(), imm, peer_,
                            dst.address + dst_offset, dst.key, &slot->ctx);
  if (rc == 0) [[likely]]
    return Errc::ok;
  release_slot(slot);
  return rc == -FI_EAGAIN ? Errc::again : map_cq_error(static_cast<int>(-rc));
}

Errc OfiEndpoint::write_imm(const Segment* segments, int count, const RemoteRegion& dst, uint64_t dst_offset,
                            uint32_t imm, uint64_t context) noexcept {
  if (broken_) [[unlikely]]
    return Errc::peer_lost;
  if (count < 1 || count > kMaxSegments) [[unlikely]]
    return Errc::invalid_argument;
  iovec iov[kMaxSegments];
  void* desc[kMaxSegments];
  size_t total = 0;
  for (int i = 0; i < count; ++i) {
    const Segment& s = segments[i];
    if (s.offset + s.length > s.region->size()) [[unlikely]]
      return Errc::invalid_argument;
    iov[i].iov_base = static_cast<char*>(s.region->data()) + s.offset;
    iov[i].iov_len = s.length;
    desc[i] = s.region->descriptor();
    total += s.length;
  }
  if (dst_offset + total > dst.length) [[unlikely]]
    return Errc::remote_access;
  OpSlot* slot = take_slot(context);
  if (!slot) [[unlikely]]
    return Errc::again;
  fi_rma_iov rma{dst.address + dst_offset, total, dst.key};
  fi_msg_rma msg{};
  msg.msg_iov = iov;
  msg.desc = desc;
  msg.iov_count = static_cast<size_t>(count);
  msg.addr = peer_;
  msg.rma_iov = &rma;
  msg.rma_iov_count = 1;
  msg.context = &slot->ctx;
  msg.data = imm;
  ssize_t rc = fi_writemsg(ep_, &msg, FI_REMOTE_CQ_DATA | FI_COMPLETION);
  if (rc == 0) [[likely]]
    return Errc::ok;
  release_slot(slot);
  return rc == -FI_EAGAIN ? Errc::again : map_cq_error(static_cast<int>(-rc));
}

int OfiEndpoint::report_lost(Completion* out, int max) noexcept {
  // Every write still outstanding fails with its own completion, then the endpoint reports the
  // loss once more with context 0, so a caller with nothing in flight learns of it too.
  int n = 0;
  for (; lost_cursor_ < slots_.size() && n < max; ++lost_cursor_) {
    OpSlot& s = slots_[lost_cursor_];
    if (s.state == SlotState::free) continue;
    if (release_slot(&s)) out[n++] = Completion{Completion::Kind::error, Errc::peer_lost, 0, s.user_context};
  }
  if (n < max && lost_cursor_ == slots_.size() && !lost_reported_) {
    lost_reported_ = true;
    out[n++] = Completion{Completion::Kind::error, Errc::peer_lost, 0, 0};
  }
  return n;
}

int OfiEndpoint::housekeeping(Completion* out, int max) noexcept {
  polls_ = 0;
  if (bootstrap_ && bootstrap_.peer_closed()) {
    broken_ = true;
    return report_lost(out, max);
  }
  int n = 0;
  auto now = std::chrono::steady_clock::now();
  for (OpSlot& s : slots_) {
    if (s.state != SlotState::in_use) continue;
    if (s.first_seen == std::chrono::steady_clock::time_point{}) {
      s.first_seen = now;
    } else if (now - s.first_seen > write_timeout_ && n < max) {
      // Keep the slot until the provider hands it back; report the failure now.
      s.state = SlotState::abandoned;
      out[n++] = Completion{Completion::Kind::error, Errc::timeout, 0, s.user_context};
    }
  }
  return n;
}

int OfiEndpoint::poll(Completion* out, int max) noexcept {
  if (broken_) [[unlikely]]
    return report_lost(out, max);
  if (++polls_ >= kPollsPerHousekeeping) [[unlikely]] {
    if (int n = housekeeping(out, max)) return n;
  }
  fi_cq_data_entry read_buf[kCqBatch];
  const fi_cq_data_entry* entries = read_buf;
  ssize_t n;
  if (stash_count_ > stash_next_) [[unlikely]] {
    entries = stash_ + stash_next_;
    n = std::min(max, stash_count_ - stash_next_);
    stash_next_ += static_cast<int>(n);
  } else {
    n = fi_cq_read(cq_, read_buf, static_cast<size_t>(std::min(max, kCqBatch)));
  }
  if (n > 0) [[likely]] {
    int out_n = 0;
    for (ssize_t i = 0; i < n; ++i) {
      const fi_cq_data_entry& e = entries[i];
      Completion& c = out[out_n];
      if (e.flags & FI_REMOTE_CQ_DATA) {
        c.kind = Completion::Kind::write_received;
        c.error = Errc::ok;
        c.imm = static_cast<uint32_t>(e.data);
        c.context = 0;
        ++out_n;
      } else {
        auto* slot = reinterpret_cast<OpSlot*>(e.op_context);
        c.kind = Completion::Kind::write_sent;
        c.error = Errc::ok;
        c.imm = 0;
        c.context = slot->user_context;
        out_n += release_slot(slot);
      }
    }
    return out_n;
  }
  if (n == -FI_EAGAIN) return 0;
  if (n == -FI_EAVAIL) {
    fi_cq_err_entry err{};
    if (fi_cq_readerr(cq_, &err, 0) != 1) return 0;
    Errc code = map_cq_error(err.err);
    // Providers name a dead peer in many ways (ECANCELED, ENOTCONN, ...); the bootstrap socket
    // tells for sure.
    if (code != Errc::remote_access && bootstrap_ && bootstrap_.peer_closed()) code = Errc::peer_lost;
    if (code == Errc::peer_lost) broken_ = true;
    uint64_t context = 0;
    if (err.op_context && !(err.flags & FI_REMOTE_CQ_DATA)) {
      auto* slot = reinterpret_cast<OpSlot*>(err.op_context);
      context = slot->user_context;
      if (!release_slot(slot)) return 0;  // already reported as timed out
    }
    out[0] = Completion{Completion::Kind::error, code, 0, context};
    return 1;
  }
  out[0] = Completion{Completion::Kind::error, Errc::io, 0, 0};
  return 1;
}

Errc OfiEndpoint::wait(std::chrono::microseconds timeout) noexcept {
  if (broken_) return Errc::peer_lost;
  polls_ = kPollsPerHousekeeping;  // the next poll() looks after timeouts and liveness
  if (wait_mode_ == WaitMode::none) return Errc::unsupported;
  if (stash_count_ > stash_next_) return Errc::ok;
  if (cq_fd_ < 0) return sleeping_wait(timeout);
  fid* fids[1] = {&cq_->fid};
  if (fi_trywait(domain_.fabric(), fids, 1) != FI_SUCCESS) return Errc::ok;  // something is ready
  pollfd fds[2] = {{cq_fd_, POLLIN, 0}, {bootstrap_.fd(), POLLIN, 0}};
  auto us = std::max<int64_t>(0, timeout.count());
  timespec ts{static_cast<time_t>(us / 1'000'000), static_cast<long>((us % 1'000'000) * 1000)};
  int r = ::ppoll(fds, bootstrap_ ? 2 : 1, &ts, nullptr);
  if (r == 0) return Errc::timeout;
  if (r > 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) && bootstrap_.peer_closed()) {
    broken_ = true;
    return Errc::peer_lost;
  }
  return Errc::ok;
}

// For providers without a wait object (shm progresses only when polled): read the CQ, and
// between reads sleep on the bootstrap socket with a period that doubles from 4 us to
// kMaxSleepUs. The thread gives up its core, a lost peer wakes it at once, and a write that
// arrives is noticed within one period.
Errc OfiEndpoint::sleeping_wait(std::chrono::microseconds timeout) noexcept {
  constexpr int64_t kMaxSleepUs = 256;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int64_t step_us = 4;
  for (;;) {
    ssize_t n = fi_cq_read(cq_, stash_, kCqBatch);
    if (n > 0) {
      stash_count_ = static_cast<int>(n);
      stash_next_ = 0;
      return Errc::ok;
    }
    if (n != -FI_EAGAIN) return Errc::ok;  // an error entry: poll() reports it
    auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return Errc::timeout;
    int64_t left_us = std::chrono::duration_cast<std::chrono::microseconds>(deadline - now).count();
    int64_t us = std::min(step_us, left_us);
    timespec ts{static_cast<time_t>(us / 1'000'000), static_cast<long>((us % 1'000'000) * 1000)};
    pollfd fd{bootstrap_.fd(), POLLIN, 0};
    int r = ::ppoll(&fd, bootstrap_ ? 1 : 0, &ts, nullptr);
    if (r > 0 && bootstrap_.peer_closed()) {
      broken_ = true;
      return Errc::peer_lost;
    }
    step_us = std::min(step_us * 2, kMaxSleepUs);
  }
}

}  // namespace

std::string available_providers() {
  fi_info* hints = make_hints("");
  fi_info* list = nullptr;
  std::set<std::string> names;
  if (fi_getinfo(kApiVersion, nullptr, nullptr, 0, hints, &list) == 0) {
    for (fi_info* i = list; i; i = i->next) names.insert(i->fabric_attr->prov_name);
    fi_freeinfo(list);
  }
  fi_freeinfo(hints);
  std::string out;
  for (auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out.empty() ? "(none)" : out;
}

std::unique_ptr<Domain> open_domain(const Config& config) { return std::make_unique<OfiDomain>(config); }

void clean_up_after(int pid) noexcept {
  // The shm regions a process's endpoints made are named after it (unique_shm_name above); one that was
  // killed could not remove them, and each holds up to 16 MiB of /dev/shm.
  std::error_code ec;
  const std::string prefix = "rfaas-" + std::to_string(pid) + "-";
  // increment(ec), not ++: nothing here may throw.
  for (std::filesystem::directory_iterator it("/dev/shm", ec), end; !ec && it != end; it.increment(ec))
    if (it->path().filename().string().rfind(prefix, 0) == 0) std::filesystem::remove(it->path(), ec);
}

}  // namespace rfaas::fabric::ofi
