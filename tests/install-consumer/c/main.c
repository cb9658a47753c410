/* A C program on the installed rfaas.h: leases a core through the broker ($RFAAS_BROKER),
 * deploys the installed echo function ($RFAAS_FUNCTIONS), invokes it, gives the lease back. */
#include <rfaas/rfaas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fail(const char* what, int rc) {
  fprintf(stderr, "consumer_c: %s: %s (%s)\n", what, rfaas_strerror(rc), rfaas_last_error());
  return 1;
}

int main(void) {
  const char* functions = getenv("RFAAS_FUNCTIONS");
  if (!functions) return fail("RFAAS_FUNCTIONS unset", RFAAS_ERR_INVALID_ARGUMENT);
  char library[4096];
  snprintf(library, sizeof library, "%s/librfaas_functions_basic.so", functions);

  rfaas_lease_options lo;
  rfaas_lease_options_init(&lo);
  lo.memory_bytes = 64u << 20;
  rfaas_lease* lease = NULL;
  int rc = rfaas_lease_broker(NULL, &lo, &lease);
  if (rc != RFAAS_OK) return fail("rfaas_lease_broker", rc);
  rfaas_deploy_options o;
  rfaas_deploy_options_init(&o);
  o.library_path = library;
  o.functions = "echo";
  o.input_capacity = o.output_capacity = 4096;
  rfaas_executor* ex = NULL;
  if ((rc = rfaas_deploy(lease, &o, &ex)) != RFAAS_OK) {
    rfaas_lease_release(lease); /* a failed deploy: give the cores back */
    return fail("rfaas_deploy", rc);
  }
  char *in = NULL, *out = NULL;
  if ((rc = rfaas_alloc(ex, 4096, (void**)&in)) != RFAAS_OK || (rc = rfaas_alloc(ex, 4096, (void**)&out)) != RFAAS_OK)
    return fail("rfaas_alloc", rc);
  strcpy(in, "hello from C");
  size_t n = 0;
  if ((rc = rfaas_invoke(ex, rfaas_function(ex, "echo"), in, strlen(in) + 1, out, 4096, &n)) != RFAAS_OK)
    return fail("rfaas_invoke", rc);
  printf("consumer_c: node %s echoed \"%s\"\n", rfaas_lease_node(lease), out);
  int ok = n == strlen(in) + 1 && strcmp(in, out) == 0;
  rfaas_release(ex, NULL);
  rfaas_executor_free(ex);
  rfaas_lease_release(lease);
  rfaas_lease_free(lease);
  return ok ? 0 : 1;
}
