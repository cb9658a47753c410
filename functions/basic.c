/* Function library "basic": mostly the reference ABI (the context ABI at the end),
 *   uint32_t name(void* in, uint32_t in_size, void* out)  -> bytes written to out.
 * The output capacity is the lease's output_capacity (negotiated at deploy); a function must
 * not write more. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Returns nothing: measures the invocation path alone. */
uint32_t noop(void* in, uint32_t in_size, void* out) {
  (void)in;
  (void)in_size;
  (void)out;
  return 0;
}

/* Input: uint32 n. Prints n bytes to stdout (lines of 64) and returns nothing: a chatty
 * function, as debugging prints are. */
uint32_t chatty(void* in, uint32_t in_size, void* out) {
  (void)out;
  uint32_t n = 0;
  if (in_size >= sizeof n) memcpy(&n, in, sizeof n);
  for (uint32_t i = 0; i < n; i += 64) printf("chatty: %055u\n", i);
  fflush(stdout);
  return 0;
}

/* Input: a variable's name (not terminated). Output: its value in the executor's environment,
 * or nothing when it is not set (what leased code can see of the daemon's environment). */
uint32_t env_value(void* in, uint32_t in_size, void* out) {
  char name[256];
  if (in_size >= sizeof name) return 0;
  memcpy(name, in, in_size);
  name[in_size] = 0;
  const char* v = getenv(name);
  if (!v) return 0;
  size_t n = strlen(v);
  if (n > 4096) n = 4096;
  memcpy(out, v, n);
  return (uint32_t)n;
}

/* Returns its input. */
uint32_t echo(void* in, uint32_t in_size, void* out) {
  memcpy(out, in, in_size);
  return in_size;
}

/* Input: [float a][uint32 n][float x[n]][float y[n]]. Output: float y'[n] = a*x + y. */
uint32_t saxpy(void* in, uint32_t in_size, void* out) {
  const unsigned char* p = (const unsigned char*)in;
  float a;
  uint32_t n;
  if (in_size < 8) return 0;
  memcpy(&a, p, 4);
  memcpy(&n, p + 4, 4);
  if ((uint64_t)in_size < 8 + 8 * (uint64_t)n) return 0;
  const float* x = (const float*)(p + 8);
  const float* y = x + n;
  float* r = (float*)out;
  for (uint32_t i = 0; i < n; ++i) r[i] = a * x[i] + y[i];
  return n * 4;
}

/* Deliberately crashes its executor (for tests of crash isolation). */
uint32_t crash(void* in, uint32_t in_size, void* out) {
  (void)in;
  (void)in_size;
  (void)out;
  volatile int* null = 0;
  *null = 42;
  return 0;
}

/* Claims more output than any capacity (for tests of output_too_large). */
uint32_t overclaim(void* in, uint32_t in_size, void* out) {
  (void)in;
  (void)in_size;
  (void)out;
  return 0xFFFFFFFFu;
}

/* Input: [uint32 milliseconds] (at most 10000). Sleeps that long, then returns its input: a
 * result that arrives late, for tests of timeouts. */
uint32_t sleep_ms(void* in, uint32_t in_size, void* out) {
  uint32_t ms;
  if (in_size < 4) return 0;
  memcpy(&ms, in, 4);
  if (ms > 10000) ms = 10000;
  struct timespec t = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&t, &t) != 0) {
  }
  memcpy(out, &ms, 4);
  return 4;
}

/* --- The context ABI (rfaas/function.h), beside the reference ABI in the same library. ------- */
#include "rfaas/function.h"

/* Input: [uint32 region][uint32 pad][uint64 offset][uint64 length]. Output: those bytes of the
 * resident region, and nothing else; status 1: no such region, 2: past its end, 3: beyond the
 * output capacity. */
RFAAS_FUNCTION(region_read) {
  struct {
    uint32_t region, pad;
    uint64_t offset, length;
  } a;
  if (call->in_size != sizeof a) return 4;
  memcpy(&a, call->in, sizeof a);
  if (a.region >= call->region_count) return 1;
  const rfaas_region_view* r = &call->regions[a.region];
  if (a.offset > r->size || a.length > r->size - a.offset) return 2;
  if (a.length > call->out_capacity) return 3;
  memcpy(call->out, (const char*)r->data + a.offset, a.length);
  call->out_size = a.length;
  return 0;
}

/* Fills exactly its output capacity with bytes 0xA5, and reports [uint64 capacity][uint32
 * worker][uint32 workers] at the start when it fits: shows what the function is told. */
RFAAS_FUNCTION(fill_capacity) {
  memset(call->out, 0xA5, call->out_capacity);
  if (call->out_capacity >= 16) {
    uint64_t cap = call->out_capacity;
    memcpy(call->out, &cap, 8);
    memcpy((char*)call->out + 8, &call->worker, 4);
    memcpy((char*)call->out + 12, &call->workers, 4);
  }
  call->out_size = call->out_capacity;
  return 0;
}

/* Input: [int32 status]. Returns that status with no result (0: an empty result). */
RFAAS_FUNCTION(fail_with) {
  int32_t status;
  if (call->in_size != 4) return 99;
  memcpy(&status, call->in, 4);
  return status;
}

/* Input: [uint32 region]. Adds every byte of the region (mod 2^64): a function that reads a
 * large resident operand. Output: [uint64 sum]. */
RFAAS_FUNCTION(region_sum) {
  uint32_t id;
  if (call->in_size != 4 || call->out_capacity < 8) return 4;
  memcpy(&id, call->in, 4);
  if (id >= call->region_count) return 1;
  const unsigned char* p = (const unsigned char*)call->regions[id].data;
  uint64_t sum = 0;
  for (uint64_t i = 0; i < call->regions[id].size; ++i) sum += p[i];
  memcpy(call->out, &sum, 8);
  call->out_size = 8;
  return 0;
}

/* Returns [uint64 n]: how many calls this worker ran before this one (for tests of ordering:
 * calls submitted to one worker run in order of submission). */
static uint64_t calls_per_worker[64];
RFAAS_FUNCTION(next_in_sequence) {
  if (call->out_capacity < 8 || call->worker >= 64) return 1;
  uint64_t n = calls_per_worker[call->worker]++;
  memcpy(call->out, &n, 8);
  call->out_size = 8;
  return 0;
}
