/* A plain C program leasing through the broker with rfaas.h (what a C or Fortran code without
 * MPI does): RFAAS_BROKER names the broker, the node has one core.
 *   c_broker_client LIBRARY
 * Exits 0 when every check holds; prints the first failure otherwise. */
#include <rfaas/rfaas.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CHECK(cond)                                                                            \
  do {                                                                                         \
    if (!(cond)) {                                                                             \
      fprintf(stderr, "c_broker_client: %s:%d: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
              rfaas_last_error());                                                             \
      exit(1);                                                                                 \
    }                                                                                          \
  } while (0)

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char** argv) {
  if (argc != 2) return 64;
  rfaas_lease_options lo;
  rfaas_lease_options_init(&lo);
  CHECK(lo.cores == 1 && lo.duration_ms > 0 && lo.timeout_ms > 0);
  lo.memory_bytes = 64u << 20;
  lo.duration_ms = 5000;

  /* A deploy the daemon refuses: the lease is given back, and the node's only core is free for
   * the next lease at once (not after the lease's 5 s). */
  rfaas_lease* lease = NULL;
  CHECK(rfaas_lease_broker(NULL, &lo, &lease) == RFAAS_OK);
  CHECK(rfaas_lease_id(lease) > 0);
  CHECK(strlen(rfaas_lease_node(lease)) > 0);
  CHECK(rfaas_lease_expires_at_ms(lease) > now_ms());
  rfaas_deploy_options o;
  rfaas_deploy_options_init(&o);
  o.library_path = argv[1];
  o.functions = "echo,not_in_this_library";
  o.input_capacity = o.output_capacity = 4096;
  rfaas_executor* ex = NULL;
  CHECK(rfaas_deploy(lease, &o, &ex) == RFAAS_ERR_LIBRARY_LOAD_FAILED);
  CHECK(strstr(rfaas_last_error(), "not_in_this_library") != NULL);
  CHECK(rfaas_lease_release(lease) == RFAAS_OK);
  rfaas_lease_free(lease);

  /* Lease, deploy, invoke from registered memory, on every worker, renew, release. */
  CHECK(rfaas_lease_broker(NULL, &lo, &lease) == RFAAS_OK);
  o.functions = "echo";
  CHECK(rfaas_deploy(lease, &o, &ex) == RFAAS_OK);
  int echo = rfaas_function(ex, "echo");
  CHECK(echo == 0);
  char *in = NULL, *out = NULL;
  CHECK(rfaas_alloc(ex, 4096, (void**)&in) == RFAAS_OK && in != NULL);
  CHECK(rfaas_alloc(ex, 4096, (void**)&out) == RFAAS_OK && out != NULL);
  CHECK(rfaas_alloc(ex, 0, (void**)&out) == RFAAS_ERR_INVALID_ARGUMENT);
  for (int i = 0; i < 4096; ++i) in[i] = (char)(i * 7);
  size_t n = 0;
  CHECK(rfaas_invoke(ex, echo, in, 4096, out, 4096, &n) == RFAAS_OK);
  CHECK(n == 4096 && memcmp(in, out, n) == 0);
  void* outs[1] = {out};
  size_t sizes[1] = {0};
  memset(out, 0, 4096);
  CHECK(rfaas_invoke_all(ex, echo, in, 100, outs, 4096, sizes) == RFAAS_OK);
  CHECK(sizes[0] == 100 && memcmp(in, out, 100) == 0);

  int64_t before = rfaas_lease_expires_at_ms(lease);
  CHECK(rfaas_expires_at_ms(ex) == before);
  CHECK(rfaas_library_was_cached(ex) == 1);  /* shipped by the refused deploy above */
  CHECK(rfaas_region_size(ex, 0) == 0);
  CHECK(rfaas_lease_renew(lease, ex, 60000) == RFAAS_OK);
  CHECK(rfaas_lease_expires_at_ms(lease) >= before + 50000);
  CHECK(rfaas_expires_at_ms(ex) == rfaas_lease_expires_at_ms(lease));
  CHECK(rfaas_invoke(ex, echo, in, 8, out, 8, &n) == RFAAS_OK);
  rfaas_free(ex, in);
  rfaas_free(ex, out);

  rfaas_usage u;
  CHECK(rfaas_release(ex, &u) == RFAAS_OK);
  CHECK(u.invocations == 3);
  rfaas_executor_free(ex);
  CHECK(rfaas_lease_release(lease) == RFAAS_OK);
  rfaas_lease_free(lease);

  /* Named errors. */
  rfaas_lease_options bad = lo;
  bad.cores = 0;
  CHECK(rfaas_lease_broker(NULL, &bad, &lease) == RFAAS_ERR_INVALID_ARGUMENT);
  bad = lo;
  bad.cores = 16; /* within the broker's policy, beyond the node */
  CHECK(rfaas_lease_broker(NULL, &bad, &lease) == RFAAS_ERR_NO_CAPACITY);
  bad.cores = 64; /* beyond the default policy of 32 per lease */
  CHECK(rfaas_lease_broker(NULL, &bad, &lease) == RFAAS_ERR_INVALID_ARGUMENT);
  CHECK(strstr(rfaas_last_error(), "at most 32 per lease") != NULL);
  CHECK(rfaas_lease_renew(NULL, NULL, 1000) == RFAAS_ERR_INVALID_ARGUMENT);
  unsetenv("RFAAS_BROKER");
  CHECK(rfaas_lease_broker(NULL, &lo, &lease) == RFAAS_ERR_INVALID_ARGUMENT);
  CHECK(strstr(rfaas_last_error(), "RFAAS_BROKER") != NULL);
  printf("c_broker_client: all checks passed\n");
  return 0;
}
