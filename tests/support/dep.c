/* The dependency of needs_dep.c. */
#include <stdint.h>
uint64_t rfaas_test_dep_value(void) { return 42; }
