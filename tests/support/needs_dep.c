/* A function library that links a library of its own (rfaas_test_dep, beside it in the build):
 * unless shipped as a dependency, it is missing where the executor loads this one. */
#include <rfaas/function.h>
#include <stdint.h>

uint64_t rfaas_test_dep_value(void);

RFAAS_FUNCTION(uses_dep) {
  uint64_t v = rfaas_test_dep_value();
  if (call->out_capacity < sizeof v) return 1;
  __builtin_memcpy(call->out, &v, sizeof v);
  call->out_size = sizeof v;
  return 0;
}
