// The verbs backend: libibverbs for the data path, librdmacm for connections.
//
// One protection domain per Domain, on the device librdmacm uses for the configured address
// (Config::verbs_device picks one by name). Each Endpoint is an RC queue pair with its own
// completion queue (send and receive), a completion channel for blocking waits and an rdma_cm
// event channel that reports the peer's disconnect. Writes with immediate consume a receive at
// the target: receives without buffers are kept posted and replenished in batches.
#include "fabric/verbs/verbs_backend.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <rdma/rdma_cma.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace rfaas::fabric::verbs {
namespace {

using Clock = std::chrono::steady_clock;
// wr_id of the posted receives: error completions carry no valid opcode, so this tells a failed
// receive from a failed write (whose wr_id is the caller's context).
constexpr uint64_t kReceiveTag = ~uint64_t{0};

[[noreturn]] void fail(Errc code, const std::string& what) { throw Error(code, what); }
std::string errno_text(const char* call) { return std::string(call) + ": " + std::strerror(errno); }

// Waits for one rdma_cm event on `channel`, bounded. The caller acks it.
rdma_cm_event* next_event(rdma_event_channel* channel, Clock::time_point deadline, const char* waiting_for = "") {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) fail(Errc::timeout, std::string("rdma_cm: no event in time, waiting for ") + waiting_for);
    pollfd p{channel->fd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000)));
    if (r < 0 && errno != EINTR) fail(Errc::io, errno_text("poll"));
    if (r <= 0) continue;
    rdma_cm_event* ev = nullptr;
    if (rdma_get_cm_event(channel, &ev) != 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      fail(Errc::io, errno_text("rdma_get_cm_event"));
    }
    return ev;
  }
}

void set_nonblocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

sockaddr_storage resolve(const std::string& host, uint16_t port) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  if (int e = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res); e != 0)
    fail(Errc::invalid_argument, "address " + host + ": " + gai_strerror(e));
  sockaddr_storage ss{};
  std::memcpy(&ss, res->ai_addr, res->ai_addrlen);
  ::freeaddrinfo(res);
  return ss;
}

std::pair<std::string, uint16_t> split(const std::string& address) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos) fail(Errc::invalid_argument, "address '" + address + "' is not host:port");
  return {address.substr(0, colon), static_cast<uint16_t>(std::stoi(address.substr(colon + 1)))};
}

// ConnectionData as rdma_cm private data: [length | bytes]. The first byte is needed because
// private data arrives padded to the transport's size.
struct ConnectionParams {
  uint8_t data[1 + kConnectionDataMax] = {};
  rdma_conn_param param{};
  explicit ConnectionParams(const ConnectionData& mine) {
    data[0] = mine.size;
    std::memcpy(data + 1, mine.bytes, mine.size);
    param.private_data = data;
    param.private_data_len = static_cast<uint8_t>(1 + mine.size);
    param.responder_resources = 1;
    param.initiator_depth = 1;
    param.retry_count = 7;
    param.rnr_retry_count = 7;
  }
  ConnectionParams(const ConnectionParams&) = delete;  // param points into data
};

// False when the peer's private data is not an rfaas [length | bytes] block.
bool unpack_private_data(const rdma_conn_param& conn, ConnectionData& theirs) {
  theirs.size = 0;
  if (!conn.private_data || conn.private_data_len == 0) return false;
  auto* p = static_cast<const uint8_t*>(conn.private_data);
  if (p[0] > kConnectionDataMax || size_t{p[0]} > size_t{conn.private_data_len} - 1) return false;
  theirs.size = p[0];
  std::memcpy(theirs.bytes, p + 1, p[0]);
  return true;
}

class VerbsDomain;

class VerbsMemoryRegion final : public MemoryRegion {
 public:
  VerbsMemoryRegion(ibv_pd* pd, void* data, size_t size, Access access) {
    if (!data || size == 0) fail(Errc::invalid_argument, "verbs: cannot register an empty region");
    int flags = IBV_ACCESS_LOCAL_WRITE;
    if (access == Access::remote_write) flags |= IBV_ACCESS_REMOTE_WRITE;
    mr_ = ibv_reg_mr(pd, data, size, flags);
    if (!mr_) fail(Errc::io, errno_text("ibv_reg_mr"));
    data_ = data;
    size_ = size;
    desc_ = mr_;
    key_ = mr_->rkey;
    local_key_ = mr_->lkey;
    remote_base_ = reinterpret_cast<uint64_t>(data);
  }
  ~VerbsMemoryRegion() override { ibv_dereg_mr(mr_); }

 private:
  ibv_mr* mr_ = nullptr;
};

class VerbsEndpoint final : public Endpoint {
 public:
  VerbsEndpoint(VerbsDomain& domain, const EndpointConfig& config);
  ~VerbsEndpoint() override;

  void connect(const std::string& address, const ConnectionData& mine, ConnectionData& theirs,
               std::chrono::milliseconds timeout) override;
  Errc write_imm(const MemoryRegion& src, size_t src_offset, size_t length, const RemoteRegion& dst,
                 uint64_t dst_offset, uint32_t imm, uint64_t context) noexcept override {
    Segment s{&src, src_offset, length};
    return write_imm(&s, 1, dst, dst_offset, imm, context);
  }
  Errc write_imm(const Segment* segments, int count, const RemoteRegion& dst, uint64_t dst_offset, uint32_t imm,
                 uint64_t context) noexcept override;
  int poll(Completion* out, int max) noexcept override;
  Errc wait(std::chrono::microseconds timeout) noexcept override;
  size_t max_inline() const noexcept override { return max_inline_; }
  bool connected() const noexcept override { return connected_ && !lost_; }
  PathInfo path() const;

  // Used by the listener: takes over an id from a connection request.
  void accept_from(rdma_cm_id* id, const ConnectionData& mine, rdma_event_channel* listen_channel,
                   Clock::time_point deadline);

 private:
  void create_qp(rdma_cm_id* id);
  void move_qp(ibv_qp_state state);
  void abandon_connection() noexcept;  // after a failed accept: ready for the next connector
  void post_receives(uint32_t n) noexcept;
  bool check_disconnect() noexcept;  // true once the peer is gone
  bool convert(const ibv_wc& wc, Completion& c) noexcept;  // false: nothing to report

  VerbsDomain& domain_;
  EndpointConfig config_;
  rdma_event_channel* cm_channel_ = nullptr;
  rdma_cm_id* id_ = nullptr;
  ibv_comp_channel* comp_channel_ = nullptr;
  ibv_cq* cq_ = nullptr;
  ibv_qp* qp_ = nullptr;
  size_t max_inline_ = 0;
  uint32_t outstanding_ = 0;
  uint32_t receives_to_post_ = 0;
  uint32_t unacked_events_ = 0;
  uint32_t polls_ = 0;
  bool connected_ = false;
  bool lost_ = false;
  bool lost_reported_ = false;
  int gid_index_ = -1;
  uint8_t port_ = 0;
  ibv_wc stash_[16];  // completions wait() found after arming the CQ, for poll() to report
  int stash_n_ = 0;
};

// The device whose netdev holds `host` (IPv4), as librdmacm sees it; nullptr when none does.
ibv_context* device_of_address(const std::string& host) {
  rdma_event_channel* channel = rdma_create_event_channel();
  if (!channel) return nullptr;
  rdma_cm_id* id = nullptr;
  ibv_context* ctx = nullptr;
  if (rdma_create_id(channel, &id, nullptr, RDMA_PS_TCP) == 0) {
    addrinfo hints{}, *res = nullptr;
    hints.ai_family = AF_INET;
    hints.ai_flags = AI_NUMERICHOST;
    if (::getaddrinfo(host.c_str(), nullptr, &hints, &res) == 0) {
      if (rdma_bind_addr(id, res->ai_addr) == 0) ctx = id->verbs;
      ::freeaddrinfo(res);
    }
    rdma_destroy_id(id);
  }
  rdma_destroy_event_channel(channel);
  return ctx;
}

class VerbsDomain final : public Domain {
 public:
  // The device: config.verbs_device by name (rxe0, mlx5_0) or by an IPv4 address of its netdev;
  // else the one holding config.local_host; else the first.
  explicit VerbsDomain(const Config& config) : config_(config), gid_override_(config.verbs_gid_index) {
    int n = 0;
    ibv_context** list = rdma_get_devices(&n);
    if (!list || n == 0) {
      if (list) rdma_free_devices(list);
      fail(Errc::no_backend, "verbs: no RDMA device here (ibv_devices lists none)");
    }
    const std::string& want = config.verbs_device;
    in_addr ip{};
    bool want_ip = !want.empty() && inet_pton(AF_INET, want.c_str(), &ip) == 1;
    ibv_context* by_address = want.empty() ? device_of_address(config.local_host)
                                           : (want_ip ? device_of_address(want) : nullptr);
    std::string names;
    for (int i = 0; i < n; ++i) {
      std::string name = ibv_get_device_name(list[i]->device);
      names += (names.empty() ? "" : ", ") + name;
      if (want.empty() || want_ip) {
        if (list[i] == by_address) ctx_ = list[i];
      } else if (name == want) {
        ctx_ = list[i];
      }
    }
    if (!ctx_ && want.empty()) ctx_ = list[0];
    rdma_free_devices(list);
    if (!ctx_)
      fail(Errc::no_backend, "verbs: no device " + (want_ip ? "with address " : std::string()) + "'" + want +
                                 "' (have: " + names + ")");
    device_ = ibv_get_device_name(ctx_->device);
    if (gid_override_ >= 0) check_gid_index(gid_override_);
    pd_ = ibv_alloc_pd(ctx_);
    if (!pd_) fail(Errc::io, errno_text("ibv_alloc_pd"));
  }
  ~VerbsDomain() override {
    if (pd_) ibv_dealloc_pd(pd_);
  }

  Backend backend() const noexcept override { return Backend::verbs; }
  std::string provider() const override { return "verbs;" + device_; }
  Capabilities capabilities() const noexcept override {
    return {.survives_credential_change = false, .meets_peers_in_dev_shm = false};
  }
  std::unique_ptr<MemoryRegion> register_memory(void* data, size_t size, Access access) override {
    return std::make_unique<VerbsMemoryRegion>(pd_, data, size, access);
  }
  std::unique_ptr<Endpoint> create_endpoint(const EndpointConfig& config) override {
    return std::make_unique<VerbsEndpoint>(*this, config);
  }
  std::unique_ptr<Listener> listen(const std::string& host, uint16_t port) override;

  ibv_context* context() const { return ctx_; }
  ibv_pd* pd() const { return pd_; }

  // Throws unless some port of the device has a GID at `index`.
  void check_gid_index(int index) const {
    ibv_device_attr attr{};
    if (ibv_query_device(ctx_, &attr) != 0) fail(Errc::io, errno_text("ibv_query_device"));
    for (uint8_t port = 1; port <= attr.phys_port_cnt; ++port) {
      ibv_gid gid{};
      if (ibv_query_gid(ctx_, port, index, &gid) == 0 &&
          !std::all_of(gid.raw, gid.raw + 16, [](uint8_t b) { return b == 0; }))
        return;
    }
    fail(Errc::invalid_argument,
         "verbs: RFAAS_VERBS_GID_INDEX=" + std::to_string(index) + " is not a GID of " + device_);
  }
  const Config& config() const { return config_; }
  const std::string& device() const { return device_; }
  int gid_override() const { return gid_override_; }

 private:
  Config config_;
  int gid_override_ = -1;
  ibv_context* ctx_ = nullptr;
  ibv_pd* pd_ = nullptr;
  std::string device_;
};

class VerbsListener final : public Listener {
 public:
  VerbsListener(VerbsDomain& domain, const std::string& host, uint16_t port) : domain_(domain) {
    channel_ = rdma_create_event_channel();
    if (!channel_) fail(Errc::io, errno_text("rdma_create_event_channel"));
    set_nonblocking(channel_->fd);
    if (rdma_create_id(channel_, &id_, nullptr, RDMA_PS_TCP) != 0) fail(Errc::io, errno_text("rdma_create_id"));
    auto addr = resolve(host, port);
    if (rdma_bind_addr(id_, reinterpret_cast<sockaddr*>(&addr)) != 0)
      fail(Errc::io, errno_text(("rdma_bind_addr " + host).c_str()));
    if (rdma_listen(id_, 64) != 0) fail(Errc::io, errno_text("rdma_listen"));
    host_ = host;
    port_ = ntohs(rdma_get_src_port(id_));
  }
  ~VerbsListener() override {
    if (id_) rdma_destroy_id(id_);
    if (channel_) rdma_destroy_event_channel(channel_);
  }
  std::string address() const override { return host_ + ":" + std::to_string(port_); }

  std::unique_ptr<Endpoint> accept(const EndpointConfig& config, const ConnectionData& mine, ConnectionData& theirs,
                                   std::chrono::milliseconds timeout, const Admit& admit = {}) override {
    auto deadline = Clock::now() + timeout;
    std::unique_ptr<VerbsEndpoint> ep;
    if (!prepared_.empty()) {
      ep = std::move(prepared_.front());
      prepared_.erase(prepared_.begin());
    } else {
      ep = std::make_unique<VerbsEndpoint>(domain_, config);
    }
    for (;;) {
      rdma_cm_event* ev = next_event(channel_, deadline, "a connection request");
      if (ev->event != RDMA_CM_EVENT_CONNECT_REQUEST) {
        rdma_ack_cm_event(ev);
        continue;
      }
      rdma_cm_id* id = ev->id;
      bool valid = unpack_private_data(ev->param.conn, theirs);
      rdma_ack_cm_event(ev);
      if (!valid) {  // not an rfaas peer: refuse it, say so, keep listening for the next accept
        rdma_reject(id, nullptr, 0);
        rdma_destroy_id(id);
        if (admit) continue;  // a listener that admits by data waits on for an admissible connector
        fail(Errc::protocol, "rdma_cm: a connection request without rfaas connection data was refused");
      }
      if (admit && !admit(theirs)) {  // refused before anything of ours (its QP, `mine`) is set up
        rdma_reject(id, nullptr, 0);
        rdma_destroy_id(id);
        continue;
      }
      try {
        ep->accept_from(id, mine, channel_, deadline);
      } catch (const Error& e) {
        if (e.code() != Errc::peer_lost) throw;
        continue;  // that connector went away: wait for the next
      }
      return ep;
    }
  }

  void prepare(const EndpointConfig& config, size_t count) override {
    for (size_t i = 0; i < count; ++i) prepared_.push_back(std::make_unique<VerbsEndpoint>(domain_, config));
  }

 private:
  VerbsDomain& domain_;
  std::vector<std::unique_ptr<VerbsEndpoint>> prepared_;  // made ahead by prepare(), taken in order
  rdma_event_channel* channel_ = nullptr;
  rdma_cm_id* id_ = nullptr;
  std::string host_;
  uint16_t port_ = 0;
};

std::unique_ptr<Listener> VerbsDomain::listen(const std::string& host, uint16_t port) {
  return std::make_unique<VerbsListener>(*this, host, port);
}

// --- endpoint ------------------------------------------------------------------------------------

VerbsEndpoint::VerbsEndpoint(VerbsDomain& domain, const EndpointConfig& config) : domain_(domain), config_(config) {
  comp_channel_ = ibv_create_comp_channel(domain.context());
  if (!comp_channel_) fail(Errc::io, errno_text("ibv_create_comp_channel"));
  set_nonblocking(comp_channel_->fd);
  int depth = static_cast<int>(config.max_outstanding_writes + config.receive_depth + 16);
  cq_ = ibv_create_cq(domain.context(), depth, nullptr, comp_channel_, 0);
  if (!cq_) fail(Errc::io, errno_text("ibv_create_cq"));
  cm_channel_ = rdma_create_event_channel();
  if (!cm_channel_) fail(Errc::io, errno_text("rdma_create_event_channel"));
  set_nonblocking(cm_channel_->fd);
}

VerbsEndpoint::~VerbsEndpoint() {
  if (id_) {
    if (connected_ && !lost_) rdma_disconnect(id_);
    rdma_destroy_id(id_);
  }
  if (qp_) ibv_destroy_qp(qp_);
  if (cq_) {
    if (unacked_events_) ibv_ack_cq_events(cq_, unacked_events_);
    ibv_destroy_cq(cq_);
  }
  if (comp_channel_) ibv_destroy_comp_channel(comp_channel_);
  if (cm_channel_) rdma_destroy_event_channel(cm_channel_);
}

// The QP is ours, not rdma_cm's (rdma_create_qp would move it through its states itself): we
// take rdma_cm's attributes for each state and may replace the source GID index on the way.
void VerbsEndpoint::create_qp(rdma_cm_id* id) {
  ibv_qp_init_attr attr{};
  attr.send_cq = cq_;
  attr.recv_cq = cq_;
  attr.qp_type = IBV_QPT_RC;
  attr.sq_sig_all = 0;
  attr.cap.max_send_wr = config_.max_outstanding_writes;
  attr.cap.max_recv_wr = config_.receive_depth;
  attr.cap.max_send_sge = kMaxSegments;
  attr.cap.max_recv_sge = 1;
  attr.cap.max_inline_data = 220;
  qp_ = ibv_create_qp(domain_.pd(), &attr);
  if (!qp_) {
    attr.cap.max_inline_data = 0;  // a device without inline sends
    qp_ = ibv_create_qp(domain_.pd(), &attr);
    if (!qp_) fail(Errc::io, errno_text("ibv_create_qp"));
  }
  max_inline_ = attr.cap.max_inline_data;
  port_ = id->port_num;
  move_qp(IBV_QPS_INIT);
  post_receives(config_.receive_depth);
}

void VerbsEndpoint::move_qp(ibv_qp_state state) {
  ibv_qp_attr attr{};
  int mask = 0;
  attr.qp_state = state;
  if (rdma_init_qp_attr(id_, &attr, &mask) != 0) fail(Errc::io, errno_text("rdma_init_qp_attr"));
  // Before the handshake rdma_cm leaves the access flags empty (librdmacm fixes them on the way
  // to RTR when it owns the QP): peers write into our memory, nothing else.
  if (state == IBV_QPS_INIT) {
    attr.qp_access_flags = IBV_ACCESS_REMOTE_WRITE;
    mask |= IBV_QP_ACCESS_FLAGS;
  }
  if (state == IBV_QPS_RTR && attr.ah_attr.is_global) {
    // An override was checked against the GID table when the domain opened.
    if (int want = domain_.gid_override(); want >= 0) attr.ah_attr.grh.sgid_index = static_cast<uint8_t>(want);
    gid_index_ = attr.ah_attr.grh.sgid_index;
  }
  if (ibv_modify_qp(qp_, &attr, mask) != 0) {
    const char* names[] = {"RESET", "INIT", "RTR", "RTS"};
    fail(Errc::io, errno_text((std::string("ibv_modify_qp to ") + (state <= IBV_QPS_RTS ? names[state] : "?")).c_str()));
  }
}

void VerbsEndpoint::post_receives(uint32_t n) noexcept {
  // Writes with immediate need a posted receive but no buffer: chains of empty receives.
  ibv_recv_wr wrs[32];
  while (n > 0) {
    uint32_t k = std::min<uint32_t>(n, 32);
    for (uint32_t i = 0; i < k; ++i) {
      wrs[i] = ibv_recv_wr{};
      wrs[i].wr_id = kReceiveTag;
      wrs[i].num_sge = 0;
      wrs[i].next = i + 1 < k ? &wrs[i + 1] : nullptr;
    }
    ibv_recv_wr* bad = nullptr;
    if (ibv_post_recv(qp_, wrs, &bad) != 0) return;  // the QP is in error: the peer is gone
    n -= k;
  }
}

void VerbsEndpoint::connect(const std::string& address, const ConnectionData& mine, ConnectionData& theirs,
                            std::chrono::milliseconds timeout) {
  if (id_) fail(Errc::invalid_argument, "endpoint already connected");
  auto deadline = Clock::now() + timeout;
  auto [host, port] = split(address);
  if (rdma_create_id(cm_channel_, &id_, this, RDMA_PS_TCP) != 0) fail(Errc::io, errno_text("rdma_create_id"));
  auto dst = resolve(host, port);
  auto src = resolve(domain_.config().local_host, 0);
  int ms = static_cast<int>(std::max<long long>(1, timeout.count()));
  if (rdma_resolve_addr(id_, reinterpret_cast<sockaddr*>(&src), reinterpret_cast<sockaddr*>(&dst), ms) != 0)
    fail(Errc::io, errno_text("rdma_resolve_addr"));
  auto expect = [&](rdma_cm_event_type want, const char* what) {
    rdma_cm_event* ev = next_event(cm_channel_, deadline, what);
    auto got = ev->event;
    int status = ev->status;
    if (got == want) return ev;
    rdma_ack_cm_event(ev);
    Errc code = got == RDMA_CM_EVENT_REJECTED || got == RDMA_CM_EVENT_UNREACHABLE ? Errc::peer_lost : Errc::io;
    fail(code, std::string("rdma_cm: ") + what + ": " + rdma_event_str(got) + " (status " + std::to_string(status) + ")");
  };
  rdma_ack_cm_event(expect(RDMA_CM_EVENT_ADDR_RESOLVED, "address"));
  if (rdma_resolve_route(id_, ms) != 0) fail(Errc::io, errno_text("rdma_resolve_route"));
  rdma_ack_cm_event(expect(RDMA_CM_EVENT_ROUTE_RESOLVED, "route"));
  if (id_->verbs != domain_.context())
    fail(Errc::invalid_argument, "verbs: " + address + " is reached through another device than this domain's");
  create_qp(id_);

  ConnectionParams params(mine);
  params.param.qp_num = qp_->qp_num;
  if (rdma_connect(id_, &params.param) != 0) fail(Errc::io, errno_text("rdma_connect"));
  // With a QP of our own, rdma_cm stops at the response: ready the QP, then establish.
  rdma_cm_event* ev = expect(RDMA_CM_EVENT_CONNECT_RESPONSE, "connect");
  bool valid = unpack_private_data(ev->param.conn, theirs);
  rdma_ack_cm_event(ev);
  if (!valid) {
    rdma_reject(id_, nullptr, 0);
    fail(Errc::protocol, "rdma_cm: the accepting side sent no rfaas connection data");
  }
  move_qp(IBV_QPS_RTR);
  move_qp(IBV_QPS_RTS);
  if (rdma_establish(id_) != 0) fail(Errc::io, errno_text("rdma_establish"));
  connected_ = true;
}

PathInfo VerbsEndpoint::path() const { return {domain_.device(), port_, gid_index_}; }

void VerbsEndpoint::abandon_connection() noexcept {
  if (qp_) ibv_destroy_qp(qp_);
  if (id_) rdma_destroy_id(id_);
  qp_ = nullptr;
  id_ = nullptr;
  ibv_wc wc[16];
  while (ibv_poll_cq(cq_, 16, wc) > 0) {
  }
  outstanding_ = receives_to_post_ = 0;
  gid_index_ = -1;
}

void VerbsEndpoint::accept_from(rdma_cm_id* id, const ConnectionData& mine, rdma_event_channel* listen_channel,
                                Clock::time_point deadline) {
  if (id_) fail(Errc::invalid_argument, "endpoint already connected");
  id_ = id;
  try {
    if (id->verbs != domain_.context()) {
      rdma_reject(id, nullptr, 0);
      fail(Errc::io, "verbs: a connection arrived on another device than this domain's");
    }
    create_qp(id);
    move_qp(IBV_QPS_RTR);
    move_qp(IBV_QPS_RTS);
    ConnectionParams params(mine);
    params.param.qp_num = qp_->qp_num;
    if (rdma_accept(id, &params.param) != 0) fail(Errc::io, errno_text("rdma_accept"));
    // ESTABLISHED arrives on the listener's channel; then the id moves to this endpoint's own.
    for (;;) {
      rdma_cm_event* ev = next_event(listen_channel, deadline, "established (accept)");
      if (ev->id != id) {
        rdma_ack_cm_event(ev);  // another connector's event: it will retry
        continue;
      }
      auto type = ev->event;
      rdma_ack_cm_event(ev);
      if (type == RDMA_CM_EVENT_ESTABLISHED) break;
      fail(Errc::peer_lost, std::string("rdma_cm: accept: ") + rdma_event_str(type));
    }
    if (rdma_migrate_id(id, cm_channel_) != 0) fail(Errc::io, errno_text("rdma_migrate_id"));
  } catch (...) {
    abandon_connection();
    throw;
  }
  connected_ = true;
}

Errc VerbsEndpoint::write_imm(const Segment* segments, int count, const RemoteRegion& dst, uint64_t dst_offset,
                              uint32_t imm, uint64_t context) noexcept {
  if (lost_ || !qp_) return Errc::peer_lost;
  if (count < 1 || count > kMaxSegments) return Errc::invalid_argument;
  if (outstanding_ >= config_.max_outstanding_writes) return Errc::again;
  ibv_sge sge[kMaxSegments];
  size_t total = 0;
  int n = 0;
  for (int i = 0; i < count; ++i) {
    const Segment& s = segments[i];
    if (s.offset + s.length > s.region->size()) return Errc::invalid_argument;
    if (s.length == 0) continue;
    sge[n].addr = reinterpret_cast<uint64_t>(static_cast<uint8_t*>(s.region->data()) + s.offset);
    sge[n].length = static_cast<uint32_t>(s.length);
    sge[n].lkey = s.region->local_key();
    total += s.length;
    ++n;
  }
  if (dst_offset + total > dst.length) return Errc::remote_access;  // beyond what the peer advertised
  ibv_send_wr wr{};
  wr.wr_id = context;
  wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
  wr.imm_data = htonl(imm);
  wr.sg_list = n ? sge : nullptr;
  wr.num_sge = n;
  wr.send_flags = IBV_SEND_SIGNALED | (total <= max_inline_ ? IBV_SEND_INLINE : 0);
  wr.wr.rdma.remote_addr = dst.address + dst_offset;
  wr.wr.rdma.rkey = static_cast<uint32_t>(dst.key);
  ibv_send_wr* bad = nullptr;
  if (int e = ibv_post_send(qp_, &wr, &bad); e != 0) return e == ENOMEM ? Errc::again : Errc::peer_lost;
  ++outstanding_;
  return Errc::ok;
}

bool VerbsEndpoint::check_disconnect() noexcept {
  if (lost_) return true;
  rdma_cm_event* ev = nullptr;
  while (rdma_get_cm_event(cm_channel_, &ev) == 0) {
    auto type = ev->event;
    rdma_ack_cm_event(ev);
    if (type == RDMA_CM_EVENT_DISCONNECTED || type == RDMA_CM_EVENT_DEVICE_REMOVAL ||
        type == RDMA_CM_EVENT_TIMEWAIT_EXIT)
      lost_ = true;
  }
  return lost_;
}

bool VerbsEndpoint::convert(const ibv_wc& wc, Completion& c) noexcept {
  c = Completion{};
  if (wc.status == IBV_WC_SUCCESS) {
    if (wc.opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
      c.kind = Completion::Kind::write_received;
      c.imm = ntohl(wc.imm_data);
      if (++receives_to_post_ >= 16) {  // replenish in batches
        post_receives(receives_to_post_);
        receives_to_post_ = 0;
      }
    } else {
      c.kind = Completion::Kind::write_sent;
      c.context = wc.wr_id;
      --outstanding_;
    }
    return true;
  }
  if (wc.status == IBV_WC_WR_FLUSH_ERR || wc.status == IBV_WC_RETRY_EXC_ERR || wc.status == IBV_WC_RNR_RETRY_EXC_ERR)
    lost_ = true;
  if (wc.wr_id == kReceiveTag) return false;  // flushed receives say nothing new
  if (outstanding_) --outstanding_;
  c.kind = Completion::Kind::error;
  c.context = wc.wr_id;
  switch (wc.status) {
    case IBV_WC_REM_ACCESS_ERR:
    case IBV_WC_LOC_PROT_ERR: c.error = Errc::remote_access; break;
    case IBV_WC_REM_INV_REQ_ERR:
    case IBV_WC_LOC_LEN_ERR: c.error = Errc::invalid_argument; break;
    case IBV_WC_WR_FLUSH_ERR:
    case IBV_WC_RETRY_EXC_ERR:
    case IBV_WC_RNR_RETRY_EXC_ERR: c.error = Errc::peer_lost; break;
    default: c.error = Errc::io; break;
  }
  return true;
}

int VerbsEndpoint::poll(Completion* out, int max) noexcept {
  if (!cq_ || max <= 0) return 0;
  int n = 0, got = 0;
  int s = 0;
  for (; s < stash_n_ && n < max; ++s)
    if (convert(stash_[s], out[n])) ++n;
  if (s < stash_n_) {
    std::memmove(stash_, stash_ + s, sizeof(ibv_wc) * static_cast<size_t>(stash_n_ - s));
    stash_n_ -= s;
    return n;
  }
  stash_n_ = 0;
  if (n < max) {
    ibv_wc wc[16];
    got = ibv_poll_cq(cq_, std::min(max - n, 16), wc);
    for (int i = 0; i < got; ++i)
      if (convert(wc[i], out[n])) ++n;
  }
  // A disconnect with nothing outstanding produces no completion: look now and then (each look
  // is a syscall, so only every 64Ki empty polls: about a millisecond on hardware).
  if (got <= 0 && ((++polls_ & 65535) == 0 || lost_)) check_disconnect();
  if (lost_ && !lost_reported_ && n < max && outstanding_ == 0) {
    lost_reported_ = true;
    out[n++] = Completion{Completion::Kind::error, Errc::peer_lost, 0, 0};
  }
  return n;
}

Errc VerbsEndpoint::wait(std::chrono::microseconds timeout) noexcept {
  if (config_.wait_mode == WaitMode::none) return Errc::unsupported;
  if (stash_n_ > 0) return Errc::ok;
  if (check_disconnect()) return Errc::peer_lost;
  // Verbs has a real wait object and it costs nothing per completion: both modes block on it.
  // Arm, then look once more: a completion that landed before arming raises no event.
  if (ibv_req_notify_cq(cq_, 0) != 0) return Errc::io;
  stash_n_ = ibv_poll_cq(cq_, 16, stash_);
  if (stash_n_ < 0) stash_n_ = 0;
  if (stash_n_ > 0) return Errc::ok;
  auto deadline = Clock::now() + timeout;
  pollfd fds[2] = {{comp_channel_->fd, POLLIN, 0}, {cm_channel_->fd, POLLIN, 0}};
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left < 0) return Errc::timeout;
    int r = ::poll(fds, 2, static_cast<int>(std::min<long long>(left + 1, 1000)));
    if (r < 0 && errno != EINTR) return Errc::io;
    if (r <= 0) {
      if (Clock::now() >= deadline) return Errc::timeout;
      continue;
    }
    if (fds[1].revents && check_disconnect()) return Errc::peer_lost;
    if (fds[0].revents) {
      ibv_cq* cq;
      void* ctx;
      if (ibv_get_cq_event(comp_channel_, &cq, &ctx) == 0 && ++unacked_events_ >= 64) {
        ibv_ack_cq_events(cq_, unacked_events_);  // acked in batches: each ack takes a lock
        unacked_events_ = 0;
      }
      return Errc::ok;
    }
  }
}

}  // namespace

std::unique_ptr<Domain> open_domain(const Config& config) { return std::make_unique<VerbsDomain>(config); }

PathInfo path_info(const Endpoint& ep) {
  auto* v = dynamic_cast<const VerbsEndpoint*>(&ep);
  if (!v) fail(Errc::invalid_argument, "path_info: not a verbs endpoint");
  return v->path();
}

bool device_present() noexcept {
  int n = 0;
  ibv_device** list = ibv_get_device_list(&n);
  if (list) ibv_free_device_list(list);
  return n > 0;
}

}  // namespace rfaas::fabric::verbs
