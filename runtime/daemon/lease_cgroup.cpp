#include "daemon/lease_cgroup.hpp"
#include "text/comma_list.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

namespace rfaas::daemon {

namespace {

bool read_file(const std::string& path, std::string* out) {
  std::ifstream in(path);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  *out = ss.str();
  while (!out->empty() && (out->back() == '\n' || out->back() == ' ')) out->pop_back();
  return true;
}

// One write(2): cgroup files take a value per write and answer errors there.
void write_file(const std::string& path, const std::string& value) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) throw CgroupError("open " + path + ": " + std::strerror(errno));
  ssize_t n = ::write(fd, value.data(), value.size());
  int err = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(value.size())) throw CgroupError("write '" + value + "' to " + path + ": " + std::strerror(err));
}

bool make_dir(const std::string& path, std::string* why, bool fresh = false) {
  if (::mkdir(path.c_str(), 0755) == 0 || (!fresh && errno == EEXIST)) return true;
  *why = "mkdir " + path + ": " + std::strerror(errno);
  return false;
}

// SIGKILL to every process listed in `dir`/cgroup.procs, each through a pidfd taken before its
// membership is checked again, so that a pid reused meanwhile is never signalled.
bool kill_listed(const std::string& dir) {
  std::string procs;
  if (!read_file(dir + "/cgroup.procs", &procs) || procs.empty()) return false;
  std::istringstream ps(procs);
  long pid;
  while (ps >> pid) {
    int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0));
    if (pidfd < 0) continue;  // gone already
    std::string again;
    read_file(dir + "/cgroup.procs", &again);
    std::istringstream as(again);
    long p;
    bool member = false;
    while (!member && as >> p) member = p == pid;
    if (member) ::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
    ::close(pidfd);
  }
  return true;
}

// Child folders of `dir` (names only).
std::vector<std::string> subdirs(const std::string& dir) {
  std::vector<std::string> out;
  if (DIR* d = ::opendir(dir.c_str())) {
    while (dirent* e = ::readdir(d))
      if (e->d_type == DT_DIR && e->d_name[0] != '.') out.push_back(e->d_name);
    ::closedir(d);
  }
  return out;
}

// Empties and removes a cgroup folder and its lease folders (left by a daemon that died).
void remove_tree(const std::string& dir) {
  for (auto& child : subdirs(dir)) remove_tree(dir + "/" + child);
  for (int i = 0; i < 200 && kill_listed(dir); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  for (int i = 0; i < 100 && ::rmdir(dir.c_str()) != 0 && errno == EBUSY; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

// Folders `prefix<pid>` under `base` whose daemon process is gone.
std::vector<std::string> stale_daemon_dirs(const std::string& base, const std::string& prefix) {
  std::vector<std::string> out;
  for (auto& name : subdirs(base)) {
    if (name.rfind(prefix, 0) != 0) continue;
    std::string digits = name.substr(prefix.size());
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    pid_t pid = static_cast<pid_t>(std::stol(digits));
    if (pid == ::getpid() || (::kill(pid, 0) == 0 || errno == EPERM)) continue;  // alive: another daemon's
    out.push_back(base + "/" + name);
  }
  return out;
}

struct Mount {
  std::string point, fstype, options;
};

std::vector<Mount> cgroup_mounts() {
  std::vector<Mount> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // id parent major:minor root mount-point options [optional...] - fstype source super-options
    std::istringstream ls(line);
    std::string id, parent, dev, root, point, opts, field;
    ls >> id >> parent >> dev >> root >> point >> opts;
    while (ls >> field && field != "-") {
    }
    Mount m;
    m.point = point;
    ls >> m.fstype >> field >> m.options;
    if (m.fstype == "cgroup" || m.fstype == "cgroup2") out.push_back(m);
  }
  return out;
}

// This process's cgroup in each hierarchy: "memory" -> "/a/b", "" -> v2's path.
std::map<std::string, std::string> own_cgroups() {
  std::map<std::string, std::string> out;
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    auto a = line.find(':'), b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    std::string controllers = line.substr(a + 1, b - a - 1), path = line.substr(b + 1);
    if (controllers.empty()) out[""] = path;
    for (const auto& c : rfaas::text::split_commas(controllers)) out[c] = path;
  }
  return out;
}

bool has_option(const std::string& options, const std::string& name) {
  for (const auto& o : rfaas::text::split_commas(options))
    if (o == name) return true;
  return false;
}

// The folder of this process's own cgroup under a mount (the mount's root when the path
// is not visible there, as in a cgroup namespace).
std::string own_dir(const std::string& point, const std::string& path) {
  std::string dir = point + (path == "/" ? "" : path);
  struct stat st{};
  return ::stat(dir.c_str(), &st) == 0 ? dir : point;
}

std::string cpu_list(const std::vector<int>& cores) {
  return rfaas::text::join_commas(cores);
}

// The daemon's own folders under each cgroup mount it can use ("" where there is none).
struct OwnCgroups {
  std::string v1_cpuset, v1_memory, v1_pids, v2;
};

OwnCgroups own_cgroup_dirs() {
  OwnCgroups o;
  auto own = own_cgroups();
  for (auto& m : cgroup_mounts()) {
    if (m.fstype == "cgroup2") {
      if (o.v2.empty()) o.v2 = own_dir(m.point, own.count("") ? own[""] : "/");
      continue;
    }
    for (auto* c : {"cpuset", "memory", "pids"}) {
      if (!has_option(m.options, c)) continue;
      std::string dir = own_dir(m.point, own.count(c) ? own[c] : "/");
      if (std::string(c) == "cpuset") o.v1_cpuset = dir;
      if (std::string(c) == "memory") o.v1_memory = dir;
      if (std::string(c) == "pids") o.v1_pids = dir;
    }
  }
  return o;
}

std::unique_ptr<CgroupHierarchy> make_v1(const OwnCgroups& o, const std::string& name, std::string* why) {
  if (o.v1_cpuset.empty() || o.v1_memory.empty() || o.v1_pids.empty()) {
    *why = "no cgroup v1 mounts of cpuset, memory and pids";
    return nullptr;
  }
  std::string c = o.v1_cpuset + "/" + name, m = o.v1_memory + "/" + name, p = o.v1_pids + "/" + name;
  if (!make_dir(c, why) || !make_dir(m, why) || !make_dir(p, why)) return nullptr;
  try {
    // A v1 cpuset starts empty: it takes its parent's cores and memory nodes before any child can.
    std::string cpus, mems;
    read_file(o.v1_cpuset + "/cpuset.cpus", &cpus);
    read_file(o.v1_cpuset + "/cpuset.mems", &mems);
    write_file(c + "/cpuset.cpus", cpus);
    write_file(c + "/cpuset.mems", mems);
    return std::make_unique<CgroupV1>(c, m, p);
  } catch (const CgroupError& e) {
    *why = e.what();
    return nullptr;
  }
}

std::unique_ptr<CgroupHierarchy> make_v2(const OwnCgroups& o, const std::string& name, std::string* why) {
  if (o.v2.empty()) {
    *why = "no cgroup v2 mount";
    return nullptr;
  }
  std::string controllers;
  read_file(o.v2 + "/cgroup.controllers", &controllers);
  std::istringstream cs(controllers);
  std::string c;
  bool memory = false, pids = false, cpuset = false;
  while (cs >> c) {
    memory |= c == "memory";
    pids |= c == "pids";
    cpuset |= c == "cpuset";
  }
  if (!memory || !pids) {
    *why = "cgroup v2 at " + o.v2 + " offers '" + controllers + "', not memory and pids";
    return nullptr;
  }
  std::string dir = o.v2 + "/" + name;
  try {
    std::string ctl = std::string("+memory +pids") + (cpuset ? " +cpuset" : "");
    if (!make_dir(dir, why)) throw CgroupError(*why);
    // Processes live only in leaves ("no internal processes"): where the daemon's own cgroup
    // holds processes (the daemon itself, under systemd or Slurm), the daemon moves into a
    // leaf of its own first, so that its cgroup can hand the controllers down.
    try {
      write_file(o.v2 + "/cgroup.subtree_control", ctl);
    } catch (const CgroupError&) {
      if (!make_dir(dir + "/daemon", why)) throw CgroupError(*why);
      write_file(dir + "/daemon/cgroup.procs", std::to_string(::getpid()));
      // The daemon is now inside `dir`: its parent may enable the controllers, `dir` may not
      // (it holds nothing itself but its leaf), so the leases go beside the daemon's leaf.
      write_file(o.v2 + "/cgroup.subtree_control", ctl);
    }
    write_file(dir + "/cgroup.subtree_control", ctl);
    return std::make_unique<CgroupV2>(dir, cpuset);
  } catch (const CgroupError& e) {
    *why = e.what();
    return nullptr;
  }
}

}  // namespace

std::string sweep_crashed_daemons_cgroups(const std::string& prefix) {
  const OwnCgroups o = own_cgroup_dirs();
  std::string swept;
  for (auto* base : {&o.v1_cpuset, &o.v1_memory, &o.v1_pids, &o.v2}) {
    if (base->empty()) continue;
    for (auto& dir : stale_daemon_dirs(*base, prefix)) {
      remove_tree(dir);
      swept += (swept.empty() ? "" : ", ") + dir;
    }
  }
  return swept;
}

std::unique_ptr<CgroupHierarchy> make_daemon_cgroups(const std::string& prefix, std::string* why) {
  const OwnCgroups o = own_cgroup_dirs();
  const std::string name = prefix + std::to_string(::getpid());
  std::string v1_why, v2_why;
  if (auto h = make_v1(o, name, &v1_why)) return h;
  if (auto h = make_v2(o, name, &v2_why)) return h;
  *why = "cgroup v1: " + v1_why + "; cgroup v2: " + v2_why;
  return nullptr;
}

// --- cgroup v1 ---------------------------------------------------------------------------------

std::string CgroupV1::describe() const { return "cgroup v1 (" + cpuset_ + ", " + memory_ + ", " + pids_ + ")"; }

void CgroupV1::remove() const {
  for (auto* d : {&cpuset_, &memory_, &pids_}) ::rmdir(d->c_str());
}

std::unique_ptr<LeaseCgroup> CgroupV1::create(uint64_t lease_id, const LeaseLimits& limits) const {
  const std::string leaf = "/lease-" + std::to_string(lease_id);
  std::vector<std::string> dirs;
  std::string why;
  // Owned by the LeaseCgroup as soon as each folder exists, so a failure below removes them.
  auto group = [&] {
    return std::make_unique<LeaseCgroup>(dirs, pids_ + leaf, memory_ + leaf + "/memory.oom_control", "");
  };
  std::unique_ptr<LeaseCgroup> g;
  for (auto* base : {&cpuset_, &memory_, &pids_}) {
    if (!make_dir(*base + leaf, &why, true)) {
      g = group();
      throw CgroupError(why);
    }
    dirs.push_back(*base + leaf);
  }
  g = group();
  std::string mems;
  read_file(cpuset_ + "/cpuset.mems", &mems);
  write_file(cpuset_ + leaf + "/cpuset.cpus", cpu_list(limits.cores));
  write_file(cpuset_ + leaf + "/cpuset.mems", mems);
  write_file(memory_ + leaf + "/memory.limit_in_bytes", std::to_string(limits.memory_bytes));
  // Memory and swap together, as v2's memory.swap.max 0: a lease cannot spill past its
  // memory into swap. (After the memory limit: v1 keeps memsw at or above it.)
  const std::string memsw = memory_ + leaf + "/memory.memsw.limit_in_bytes";
  if (::access(memsw.c_str(), F_OK) == 0)  // absent without swap accounting (swapaccount=0): nothing to limit
    write_file(memsw, std::to_string(limits.memory_bytes));
  write_file(pids_ + leaf + "/pids.max", std::to_string(limits.max_tasks));
  return g;
}

// --- cgroup v2 ---------------------------------------------------------------------------------

std::string CgroupV2::describe() const { return "cgroup v2 (" + dir_ + (cpuset_ ? "" : ", no cpuset controller") + ")"; }

void CgroupV2::remove() const { ::rmdir(dir_.c_str()); }

std::unique_ptr<LeaseCgroup> CgroupV2::create(uint64_t lease_id, const LeaseLimits& limits) const {
  const std::string dir = dir_ + "/lease-" + std::to_string(lease_id);
  std::string why;
  if (!make_dir(dir, &why, true)) throw CgroupError(why);
  // Linux 5.14 and later kill the cgroup whole through cgroup.kill.
  auto g = std::make_unique<LeaseCgroup>(std::vector<std::string>{dir}, dir, dir + "/memory.events", dir + "/cgroup.kill");
  if (cpuset_) write_file(dir + "/cpuset.cpus", cpu_list(limits.cores));
  write_file(dir + "/memory.max", std::to_string(limits.memory_bytes));
  try {
    write_file(dir + "/memory.swap.max", "0");
  } catch (const CgroupError&) {  // no swap accounting on this host: nothing to limit
  }
  write_file(dir + "/pids.max", std::to_string(limits.max_tasks));
  return g;
}

// --- a lease's cgroup --------------------------------------------------------------------------

LeaseCgroup::LeaseCgroup(std::vector<std::string> dirs, std::string procs_dir, std::string oom_file, std::string kill_file)
    : dirs_(std::move(dirs)), procs_dir_(std::move(procs_dir)), oom_file_(std::move(oom_file)), kill_file_(std::move(kill_file)) {}

LeaseCgroup::~LeaseCgroup() { close(); }

std::string LeaseCgroup::close() {
  if (closed_) return "";
  closed_ = true;
  kill_all();
  std::string left;
  for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it) {
    // An emptied cgroup can take a moment to let go of its last exited task.
    int rc;
    for (int i = 0; i < 100 && (rc = ::rmdir(it->c_str())) != 0 && errno == EBUSY; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (rc != 0 && errno != ENOENT) left += (left.empty() ? "" : "; ") + ("rmdir " + *it + ": " + std::strerror(errno));
  }
  return left;
}

void LeaseCgroup::add(pid_t pid) {
  for (auto& d : dirs_) write_file(d + "/cgroup.procs", std::to_string(pid));
}

void LeaseCgroup::kill_all() {
  if (dirs_.empty()) return;
  if (!kill_file_.empty()) {
    try {
      write_file(kill_file_, "1");  // the kernel does it whole
    } catch (const CgroupError&) {  // before Linux 5.14: one by one below
    }
  }
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  // A fork racing a round is caught by the next; pids.max bounds how many there can be.
  while (kill_listed(procs_dir_) && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

bool LeaseCgroup::memory_exceeded() const {
  std::string text;
  if (!read_file(oom_file_, &text)) return false;
  std::istringstream ts(text);
  std::string key;
  uint64_t value;
  while (ts >> key >> value)
    if (key == "oom_kill" && value > 0) return true;
  return false;
}

}  // namespace rfaas::daemon
