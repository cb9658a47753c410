// A libfabric endpoint of another process, made without rfaas, that has learnt an rfaas
// endpoint's address and writes into its registered memory with the key it guesses:
//   foreign_writer PROVIDER HOST ADDRESS_HEX TARGET_ADDRESS KEY
// Writes 64 bytes of 0xAB with immediate 9 and says how its write ended: "completed", "refused"
// or "no completion" (within 3 s). Exit 0 unless the endpoint could not be made.
#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

namespace {
[[noreturn]] void die(const char* what, int rc) {
  std::fprintf(stderr, "foreign_writer: %s: %s\n", what, fi_strerror(-rc));
  std::exit(2);
}
}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) return 64;
  const std::string provider = argv[1], host = argv[2], hex = argv[3];
  const uint64_t target = std::strtoull(argv[4], nullptr, 0), key = std::strtoull(argv[5], nullptr, 0);
  std::vector<uint8_t> victim;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) victim.push_back(static_cast<uint8_t>(std::stoul(hex.substr(i, 2), nullptr, 16)));

  fi_info* hints = fi_allocinfo();
  hints->caps = FI_RMA | FI_WRITE | FI_REMOTE_WRITE;
  hints->ep_attr->type = FI_EP_RDM;
  hints->domain_attr->mr_mode = FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY;
  hints->fabric_attr->prov_name = strdup(provider.c_str());
  const bool ip = provider.find("shm") == std::string::npos;
  fi_info* info = nullptr;
  int rc = fi_getinfo(FI_VERSION(1, 9), ip ? host.c_str() : nullptr, nullptr, ip ? FI_SOURCE : 0, hints, &info);
  if (rc != 0) die("fi_getinfo", rc);
  fid_fabric* fabric;
  fid_domain* domain;
  fid_cq* cq;
  fid_av* av;
  fid_ep* ep;
  fid_mr* mr;
  if ((rc = fi_fabric(info->fabric_attr, &fabric, nullptr)) != 0) die("fi_fabric", rc);
  if ((rc = fi_domain(fabric, info, &domain, nullptr)) != 0) die("fi_domain", rc);
  fi_cq_attr cq_attr{};
  cq_attr.format = FI_CQ_FORMAT_DATA;
  if ((rc = fi_cq_open(domain, &cq_attr, &cq, nullptr)) != 0) die("fi_cq_open", rc);
  fi_av_attr av_attr{};
  av_attr.type = FI_AV_TABLE;
  if ((rc = fi_av_open(domain, &av_attr, &av, nullptr)) != 0) die("fi_av_open", rc);
  if ((rc = fi_endpoint(domain, info, &ep, nullptr)) != 0) die("fi_endpoint", rc);
  if ((rc = fi_ep_bind(ep, &av->fid, 0)) != 0 || (rc = fi_ep_bind(ep, &cq->fid, FI_TRANSMIT | FI_RECV)) != 0)
    die("fi_ep_bind", rc);
  if ((rc = fi_enable(ep)) != 0) die("fi_enable", rc);
  std::vector<uint8_t> buffer(4096, 0xAB);
  if ((rc = fi_mr_reg(domain, buffer.data(), buffer.size(), FI_WRITE, 0, 0, 0, &mr, nullptr)) != 0) die("fi_mr_reg", rc);
  fi_addr_t peer;
  if (fi_av_insert(av, victim.data(), 1, &peer, 0, nullptr) != 1) die("fi_av_insert", -FI_EINVAL);

  const char* outcome = "no completion";
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  ssize_t posted;
  while ((posted = fi_writedata(ep, buffer.data(), 64, fi_mr_desc(mr), 9, peer, target, key, nullptr)) == -FI_EAGAIN &&
         std::chrono::steady_clock::now() < end) {
    fi_cq_data_entry e;
    fi_cq_read(cq, &e, 1);
  }
  if (posted != 0 && posted != -FI_EAGAIN) outcome = "refused";
  while (posted == 0 && std::chrono::steady_clock::now() < end) {
    fi_cq_data_entry e;
    ssize_t n = fi_cq_read(cq, &e, 1);
    if (n == 1) {
      outcome = "completed";
      break;
    }
    if (n == -FI_EAVAIL) {
      fi_cq_err_entry err{};
      fi_cq_readerr(cq, &err, 0);
      outcome = "refused";
      break;
    }
  }
  std::printf("%s\n", outcome);
  std::fflush(stdout);
  fi_close(&mr->fid);
  fi_close(&ep->fid);
  fi_close(&av->fid);
  fi_close(&cq->fid);
  fi_close(&domain->fid);
  fi_close(&fabric->fid);
  fi_freeinfo(info);
  return 0;
}
