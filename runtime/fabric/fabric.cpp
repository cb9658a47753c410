#include "rfaas/fabric/fabric.hpp"

#include <sys/utsname.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

#include "fabric/faults/faults_backend.hpp"
#include "fabric/loopback/loopback_backend.hpp"
#ifdef RFAAS_HAVE_OFI
#include "fabric/ofi/ofi_backend.hpp"
#endif
#ifdef RFAAS_HAVE_VERBS
#include "fabric/verbs/verbs_backend.hpp"
#endif

namespace rfaas::fabric {

const char* to_string(Errc e) noexcept {
  switch (e) {
    case Errc::ok: return "ok";
    case Errc::again: return "again (too many writes outstanding)";
    case Errc::timeout: return "timeout";
    case Errc::peer_lost: return "peer lost";
    case Errc::remote_access: return "remote access error (wrong key or out of bounds)";
    case Errc::invalid_argument: return "invalid argument";
    case Errc::no_backend: return "backend or provider not available";
    case Errc::unsupported: return "unsupported by the provider";
    case Errc::protocol: return "protocol error";
    case Errc::io: return "transport i/o error";
  }
  return "unknown";
}

const char* to_string(Backend b) noexcept {
  switch (b) {
    case Backend::ofi: return "ofi";
    case Backend::verbs: return "verbs";
    case Backend::loopback: return "loopback";
  }
  return "unknown";
}

Config Config::from_env() {
  return from_variables([](const char* name) { return std::getenv(name); });
}

Config Config::from_variables(const std::function<const char*(const char*)>& lookup) {
  auto get = [&](const char* name) {
    const char* v = lookup(name);
    return std::string(v ? v : "");
  };
  Config c;
  const std::string fabric = get("RFAAS_FABRIC");
#ifdef RFAAS_HAVE_VERBS
  if (fabric.empty() && verbs::device_present()) c.backend = Backend::verbs;
#endif
  if (!fabric.empty()) {
    std::string name = fabric;
    if (name.rfind("faults:", 0) == 0) {  // the decorator over the backend after the colon
      name = name.substr(7);
      c.faults = get("RFAAS_FABRIC_FAULTS");
      if (c.faults.empty())
        throw Error(Errc::invalid_argument, "RFAAS_FABRIC=faults:" + name + " needs its rules in RFAAS_FABRIC_FAULTS");
    }
    if (name == "ofi") c.backend = Backend::ofi;
    else if (name == "verbs") c.backend = Backend::verbs;
    else if (name == "loopback") c.backend = Backend::loopback;
    else throw Error(Errc::no_backend, "RFAAS_FABRIC='" + fabric +
                                           "' is not a backend (ofi, verbs, loopback, or faults:<one of them>)");
  }
  if (std::string p = get("RFAAS_OFI_PROVIDER"); !p.empty()) c.ofi_provider = p;
  if (std::string h = get("RFAAS_FABRIC_HOST"); !h.empty()) {
    c.local_host = h;
    c.local_host_chosen = true;
  }
  if (c.backend != Backend::verbs) return c;  // the verbs settings mean nothing to the others
  c.verbs_device = get("RFAAS_VERBS_DEVICE");
  if (std::string g = get("RFAAS_VERBS_GID_INDEX"); !g.empty()) {
    char* end = nullptr;
    errno = 0;
    const long i = std::strtol(g.c_str(), &end, 10);
    if (*end || errno != 0 || i < 0 || i > 255)
      throw Error(Errc::invalid_argument, "RFAAS_VERBS_GID_INDEX='" + g + "' is not a GID index (0-255)");
    c.verbs_gid_index = static_cast<int>(i);
  }
  return c;
}

std::vector<std::string> Config::to_variables() const {
  std::vector<std::string> v;
  v.push_back(std::string("RFAAS_FABRIC=") + (faults.empty() ? "" : "faults:") + to_string(backend));
  if (!faults.empty()) v.push_back("RFAAS_FABRIC_FAULTS=" + faults);
  v.push_back("RFAAS_OFI_PROVIDER=" + ofi_provider);
  if (!verbs_device.empty()) v.push_back("RFAAS_VERBS_DEVICE=" + verbs_device);
  if (verbs_gid_index >= 0) v.push_back("RFAAS_VERBS_GID_INDEX=" + std::to_string(verbs_gid_index));
  return v;
}

std::string Config::ofi_provider_for(bool same_host) const {
  if (ofi_provider != "auto") return ofi_provider;
  return same_host ? "shm" : "tcp";
}

bool same_ofi_provider(const std::string& a, const std::string& b) {
  auto full = [](const std::string& p) { return p == "tcp" ? std::string("tcp;ofi_rxm") : p; };
  return full(a) == full(b);
}

std::string host_identity() {
  std::string boot;
  if (FILE* f = std::fopen("/proc/sys/kernel/random/boot_id", "re")) {
    char buf[64] = {};
    if (std::fgets(buf, sizeof buf, f)) boot = buf;
    std::fclose(f);
  }
  while (!boot.empty() && (boot.back() == '\n' || boot.back() == ' ')) boot.pop_back();
  utsname u{};
  ::uname(&u);
  return boot + "/" + u.nodename;
}

static std::unique_ptr<Domain> open_backend(const Config& config) {
  switch (config.backend) {
    case Backend::ofi:
#ifdef RFAAS_HAVE_OFI
      return ofi::open_domain(config);
#else
      throw Error(Errc::no_backend, "this rfaas was built without the ofi backend (RFAAS_WITH_OFI=OFF)");
#endif
    case Backend::verbs:
#ifdef RFAAS_HAVE_VERBS
      return verbs::open_domain(config);
#else
      throw Error(Errc::no_backend, "this rfaas was built without the verbs backend (RFAAS_WITH_VERBS=OFF)");
#endif
    case Backend::loopback: return loopback::open_domain(config);
  }
  throw Error(Errc::no_backend, "unknown backend");
}

std::unique_ptr<Domain> open_domain(const Config& config) {
  auto domain = open_backend(config);
  if (config.faults.empty()) return domain;
  return faults::wrap(std::move(domain), config.faults);
}

void clean_up_after(int pid) noexcept {
#ifdef RFAAS_HAVE_OFI
  ofi::clean_up_after(pid);
#else
  (void)pid;
#endif
}

}  // namespace rfaas::fabric
