/* A function that writes past the end of its output (for the output guard test): as many bytes
 * as its input says, whatever its capacity. */
#include <rfaas/function.h>
#include <stdint.h>
#include <string.h>

RFAAS_FUNCTION(overrun) {
  uint64_t n = 0;
  if (call->in_size >= sizeof n) memcpy(&n, call->in, sizeof n);
  memset(call->out, 0x5a, n);
  call->out_size = n < call->out_capacity ? n : call->out_capacity;
  return 0;
}
