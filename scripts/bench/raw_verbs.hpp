// The reference for the verbs figures: write-with-immediate straight on libibverbs, the queue
// pair made and connected by librdmacm (rdma_create_qp: librdmacm moves it through its states),
// no abstraction, in the shape raw_ofi.hpp's benchmark loops expect (write / poll_received).
#pragma once

#include <arpa/inet.h>
#include <poll.h>
#include <rdma/rdma_cma.h>

#include "raw_ofi.hpp"

namespace rfaas::bench {

class RawVerbs {
 public:
  // One side listens on `host` (its port travels over `sock`), the other connects.
  RawVerbs(const std::string& host, int sock, bool listens, bool huge = false) : buffer_(huge) {
    channel_ = rdma_create_event_channel();
    if (!channel_) die("raw verbs: rdma_create_event_channel");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    if (inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) die("raw verbs: not an IPv4 address: " + host);
    Remote mine{}, theirs{};
    if (listens) {
      check(rdma_create_id(channel_, &listen_id_, nullptr, RDMA_PS_TCP), "rdma_create_id");
      check(rdma_bind_addr(listen_id_, reinterpret_cast<sockaddr*>(&addr)), "rdma_bind_addr");
      check(rdma_listen(listen_id_, 1), "rdma_listen");
      uint16_t port = ntohs(rdma_get_src_port(listen_id_));
      sock_send(sock, &port, sizeof port);
      rdma_cm_event* ev = expect(RDMA_CM_EVENT_CONNECT_REQUEST);
      id_ = ev->id;
      std::memcpy(&theirs, ev->param.conn.private_data, sizeof theirs);
      rdma_ack_cm_event(ev);
      setup(mine);
      rdma_conn_param p = params(mine);
      check(rdma_accept(id_, &p), "rdma_accept");
      rdma_ack_cm_event(expect(RDMA_CM_EVENT_ESTABLISHED));
    } else {
      uint16_t port;
      sock_recv(sock, &port, sizeof port);
      addr.sin_port = htons(port);
      check(rdma_create_id(channel_, &id_, nullptr, RDMA_PS_TCP), "rdma_create_id");
      check(rdma_resolve_addr(id_, nullptr, reinterpret_cast<sockaddr*>(&addr), 5000), "rdma_resolve_addr");
      rdma_ack_cm_event(expect(RDMA_CM_EVENT_ADDR_RESOLVED));
      check(rdma_resolve_route(id_, 5000), "rdma_resolve_route");
      rdma_ack_cm_event(expect(RDMA_CM_EVENT_ROUTE_RESOLVED));
      setup(mine);
      rdma_conn_param p = params(mine);
      check(rdma_connect(id_, &p), "rdma_connect");
      rdma_cm_event* ev = expect(RDMA_CM_EVENT_ESTABLISHED);
      std::memcpy(&theirs, ev->param.conn.private_data, sizeof theirs);
      rdma_ack_cm_event(ev);
    }
    remote_ = theirs;
  }
  ~RawVerbs() {
    if (id_) {
      rdma_disconnect(id_);
      if (id_->qp) rdma_destroy_qp(id_);
    }
    if (mr_) ibv_dereg_mr(mr_);
    if (id_) rdma_destroy_id(id_);
    if (cq_) ibv_destroy_cq(cq_);
    if (pd_) ibv_dealloc_pd(pd_);
    if (listen_id_) rdma_destroy_id(listen_id_);
    rdma_destroy_event_channel(channel_);
  }
  static const char* name() { return "raw-verbs"; }

  bool write(size_t size, uint32_t imm, uint64_t dst_offset = 0) {
    if (outstanding_ >= kSendDepth) return false;
    ibv_sge sge{reinterpret_cast<uint64_t>(buffer_.data()), static_cast<uint32_t>(size), mr_->lkey};
    ibv_send_wr wr{};
    wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
    wr.imm_data = htonl(imm);
    wr.sg_list = size ? &sge : nullptr;
    wr.num_sge = size ? 1 : 0;
    wr.send_flags = IBV_SEND_SIGNALED | (size <= max_inline_ ? IBV_SEND_INLINE : 0);
    wr.wr.rdma.remote_addr = remote_.address + dst_offset;
    wr.wr.rdma.rkey = remote_.rkey;
    ibv_send_wr* bad = nullptr;
    if (ibv_post_send(id_->qp, &wr, &bad) != 0) die("raw verbs: ibv_post_send");
    ++outstanding_;
    return true;
  }
  int poll_received() {
    ibv_wc wc[16];
    int n = ibv_poll_cq(cq_, 16, wc);
    if (n < 0) die("raw verbs: ibv_poll_cq");
    int received = 0;
    for (int i = 0; i < n; ++i) {
      if (wc[i].status != IBV_WC_SUCCESS) die(std::string("raw verbs: ") + ibv_wc_status_str(wc[i].status));
      if (wc[i].opcode == IBV_WC_RECV_RDMA_WITH_IMM) {
        ++received;
        if (++consumed_ == kRepostBatch) {
          post_receives(kRepostBatch);
          consumed_ = 0;
        }
      } else {
        --outstanding_;
      }
    }
    return received;
  }

 private:
  struct Remote {
    uint64_t address;
    uint32_t rkey;
  };
  static constexpr uint32_t kSendDepth = 64, kReceiveDepth = 256, kRepostBatch = 16;

  static void check(int rc, const char* what) {
    if (rc != 0) die(std::string("raw verbs: ") + what + ": " + std::strerror(errno));
  }
  rdma_cm_event* expect(rdma_cm_event_type want) {
    pollfd p{channel_->fd, POLLIN, 0};
    if (::poll(&p, 1, 10000) != 1) die(std::string("raw verbs: no ") + rdma_event_str(want) + " in 10 s");
    rdma_cm_event* ev = nullptr;
    check(rdma_get_cm_event(channel_, &ev), "rdma_get_cm_event");
    if (ev->event != want) die(std::string("raw verbs: ") + rdma_event_str(ev->event) + " instead of " + rdma_event_str(want));
    return ev;
  }
  void setup(Remote& mine) {
    pd_ = ibv_alloc_pd(id_->verbs);
    if (!pd_) die("raw verbs: ibv_alloc_pd");
    cq_ = ibv_create_cq(id_->verbs, kSendDepth + kReceiveDepth, nullptr, nullptr, 0);
    if (!cq_) die("raw verbs: ibv_create_cq");
    mr_ = ibv_reg_mr(pd_, buffer_.data(), kMaxStreamSize, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
    if (!mr_) die("raw verbs: ibv_reg_mr");
    ibv_qp_init_attr attr{};
    attr.send_cq = attr.recv_cq = cq_;
    attr.qp_type = IBV_QPT_RC;
    attr.cap.max_send_wr = kSendDepth;
    attr.cap.max_recv_wr = kReceiveDepth;
    attr.cap.max_send_sge = attr.cap.max_recv_sge = 1;
    attr.cap.max_inline_data = 220;
    check(rdma_create_qp(id_, pd_, &attr), "rdma_create_qp");
    max_inline_ = attr.cap.max_inline_data;
    post_receives(kReceiveDepth);
    mine = {reinterpret_cast<uint64_t>(buffer_.data()), mr_->rkey};
  }
  rdma_conn_param params(const Remote& mine) {
    mine_ = mine;
    rdma_conn_param p{};
    p.private_data = &mine_;
    p.private_data_len = sizeof mine_;
    p.responder_resources = p.initiator_depth = 1;
    p.retry_count = p.rnr_retry_count = 7;
    return p;
  }
  void post_receives(uint32_t n) {
    ibv_recv_wr wrs[kReceiveDepth];
    for (uint32_t i = 0; i < n; ++i) {
      wrs[i] = ibv_recv_wr{};
      wrs[i].next = i + 1 < n ? &wrs[i + 1] : nullptr;
    }
    ibv_recv_wr* bad = nullptr;
    if (ibv_post_recv(id_->qp, wrs, &bad) != 0) die("raw verbs: ibv_post_recv");
  }

  rdma_event_channel* channel_ = nullptr;
  rdma_cm_id* listen_id_ = nullptr;
  rdma_cm_id* id_ = nullptr;
  ibv_pd* pd_ = nullptr;
  ibv_cq* cq_ = nullptr;
  ibv_mr* mr_ = nullptr;
  RawBuffer buffer_;
  Remote remote_{}, mine_{};
  uint32_t max_inline_ = 0, outstanding_ = 0, consumed_ = 0;
};

}  // namespace rfaas::bench
