/* Function library "basic": the reference ABI,
 *   uint32_t name(void* in, uint32_t in_size, void* out)  -> bytes written to out.
 * The output capacity is the lease's output_capacity (negotiated at deploy); a function must
 * not write more. */
#include <stdint.h>
#include <string.h>
#include <time.h>

/* Returns nothing: measures the invocation path alone. */
uint32_t noop(void* in, uint32_t in_size, void* out) {
  (void)in;
  (void)in_size;
  (void)out;
  return 0;
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
