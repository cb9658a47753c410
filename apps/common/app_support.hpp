// What both apps need besides their kernels: their figures as JSON lines, medians, a barrier
// that sleeps, and an exit that takes the whole job down.
#pragma once

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

namespace rfaas_apps {

// One JSON line of figures, appended to `path` (for scripts/bench/apps.sh and the quickstart).
[[gnu::format(printf, 2, 3)]] inline void append_json(const std::string& path, const char* format, ...) {
  FILE* f = std::fopen(path.c_str(), "a");
  if (!f) return;
  va_list args;
  va_start(args, format);
  std::vfprintf(f, format, args);
  va_end(args);
  std::fclose(f);
}

// Ends every rank: one rank's bad option or failed offload must not leave the others waiting.
[[noreturn]] inline void die(const char* app, const char* what) {
  std::fprintf(stderr, "%s: %s\n", app, what);
  MPI_Abort(MPI_COMM_WORLD, 2);
  std::abort();
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Ranks other than 0 wait here while rank 0 measures alone: a sleeping wait, so that on a node
// whose cores are shared with the executors the measurement is not competing with spinners.
inline void quiet_barrier() {
  MPI_Request req;
  MPI_Ibarrier(MPI_COMM_WORLD, &req);
  int done = 0;
  while (!done) {
    MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    if (!done) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

}  // namespace rfaas_apps
