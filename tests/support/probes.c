/* Test-only function library: what a lease's code can see and do on the executor node, for
 * the tests of confinement (tests/broker, "[users]"). Reference ABI; text out. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static uint32_t text(void* out, const char* s) {
  size_t n = strlen(s);
  memcpy(out, s, n);
  return (uint32_t)n;
}

static void terminated(const void* in, uint32_t in_size, char* buf, size_t cap) {
  size_t n = in_size < cap - 1 ? in_size : cap - 1;
  memcpy(buf, in, n);
  buf[n] = 0;
}

/* "uid gid euid egid": who the lease's code runs as. */
uint32_t identity(void* in, uint32_t in_size, void* out) {
  (void)in;
  (void)in_size;
  char buf[128];
  snprintf(buf, sizeof buf, "%u %u %u %u", (unsigned)getuid(), (unsigned)getgid(), (unsigned)geteuid(),
           (unsigned)getegid());
  return text(out, buf);
}

/* Input: a path. "read N" (its first bytes could be read) or "errno E". */
uint32_t read_path(void* in, uint32_t in_size, void* out) {
  char path[512], buf[64];
  terminated(in, in_size, path, sizeof path);
  int fd = open(path, O_RDONLY);
  if (fd < 0) {
    snprintf(buf, sizeof buf, "errno %d", errno);
    return text(out, buf);
  }
  char data[256];
  ssize_t n = read(fd, data, sizeof data);
  int err = errno;
  close(fd);
  if (n < 0) snprintf(buf, sizeof buf, "errno %d", err);
  else snprintf(buf, sizeof buf, "read %zd", n);
  return text(out, buf);
}

/* Input: a pid. "0" if it may be signalled, else the errno of kill(pid, 0). */
uint32_t signal_pid(void* in, uint32_t in_size, void* out) {
  char arg[32], buf[32];
  terminated(in, in_size, arg, sizeof arg);
  int rc = kill((pid_t)atol(arg), 0);
  snprintf(buf, sizeof buf, "%d", rc == 0 ? 0 : errno);
  return text(out, buf);
}

/* Starts a process in a session of its own (out of the executor's process group) that sleeps
 * ten minutes; returns its pid. */
uint32_t spawn_sleeper(void* in, uint32_t in_size, void* out) {
  (void)in;
  (void)in_size;
  pid_t pid = fork();
  if (pid == 0) {
    setsid();
    for (int i = 0; i < 600; ++i) sleep(1);
    _exit(0);
  }
  char buf[32];
  snprintf(buf, sizeof buf, "%ld", (long)pid);
  return text(out, buf);
}

/* Input: decimal bytes. Allocates and touches them, returns "done". */
uint32_t hog(void* in, uint32_t in_size, void* out) {
  char arg[32];
  terminated(in, in_size, arg, sizeof arg);
  size_t bytes = (size_t)strtoull(arg, NULL, 10);
  char* p = malloc(bytes);
  if (!p) return text(out, "malloc failed");
  for (size_t i = 0; i < bytes; i += 4096) p[i] = 1;
  /* Kept: the memory must stay charged while the kernel decides. */
  return text(out, "done");
}

/* The executor's pid, as text. */
uint32_t self_pid(void* in, uint32_t in_size, void* out) {
  (void)in;
  (void)in_size;
  char buf[32];
  snprintf(buf, sizeof buf, "%ld", (long)getpid());
  return text(out, buf);
}

/* Input: a descriptor number. What it is open on (readlink of /proc/self/fd/N), or "errno E". */
uint32_t fd_target(void* in, uint32_t in_size, void* out) {
  char arg[32], path[64], target[256];
  terminated(in, in_size, arg, sizeof arg);
  snprintf(path, sizeof path, "/proc/self/fd/%d", atoi(arg));
  ssize_t n = readlink(path, target, sizeof target - 1);
  if (n < 0) {
    snprintf(target, sizeof target, "errno %d", errno);
    return text(out, target);
  }
  target[n] = 0;
  return text(out, target);
}

/* Input: text. Writes it to the executor's stderr on a line of its own (as a forged log line
 * would be), returns "wrote N". */
uint32_t write_stderr(void* in, uint32_t in_size, void* out) {
  char buf[1024], reply[32];
  terminated(in, in_size, buf + 1, sizeof buf - 2);
  buf[0] = '\n';
  size_t n = strlen(buf);
  buf[n] = '\n';
  ssize_t w = write(2, buf, n + 1);
  snprintf(reply, sizeof reply, "wrote %zd", w);
  return text(out, reply);
}

/* Input: a path. Creates that file (it must not exist) with a line in it: "created", or the
 * errno. What a lease leaves behind in /tmp or /dev/shm. */
uint32_t create_file(void* in, uint32_t in_size, void* out) {
  char path[512], buf[64];
  terminated(in, in_size, path, sizeof path);
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (fd < 0) {
    snprintf(buf, sizeof buf, "errno %d", errno);
    return text(out, buf);
  }
  ssize_t w = write(fd, "left by a lease\n", 16);
  close(fd);
  return text(out, w == 16 ? "created" : "short write");
}

/* The memory+swap limit of the lease's cgroup (v1's memory.memsw.limit_in_bytes, v2's
 * memory.swap.max), or "none" when this cgroup has no such file. */
uint32_t memsw_limit(void* in, uint32_t in_size, void* out) {
  (void)in;
  (void)in_size;
  char line[1024], path[1400], buf[64] = "none";
  FILE* f = fopen("/proc/self/cgroup", "r");
  if (!f) return text(out, "no /proc/self/cgroup");
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    char* memory = strstr(line, ":memory:");
    if (memory) snprintf(path, sizeof path, "/sys/fs/cgroup/memory%s/memory.memsw.limit_in_bytes", memory + 8);
    else if (strncmp(line, "0::", 3) == 0) snprintf(path, sizeof path, "/sys/fs/cgroup%s/memory.swap.max", line + 3);
    else continue;
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
      ssize_t n = read(fd, buf, sizeof buf - 1);
      close(fd);
      buf[n > 0 ? n : 0] = 0;
      buf[strcspn(buf, "\n")] = 0;
      break;
    }
  }
  fclose(f);
  return text(out, buf);
}
