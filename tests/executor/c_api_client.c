/* A plain C program using rfaas.h against a running daemon:
 *   c_api_client DAEMON_ADDRESS NODE_NAME SECRET_FILE LIBRARY
 * Exits 0 when every check holds; prints the first failure otherwise. */
#include <rfaas/rfaas.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                       \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      fprintf(stderr, "c_api_client: %s:%d: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
              rfaas_last_error());                                                        \
      exit(1);                                                                            \
    }                                                                                     \
  } while (0)

int main(int argc, char** argv) {
  if (argc != 5) return 64;
  for (int code = 0; code <= RFAAS_ERR_LEASE_IN_USE; ++code) CHECK(strlen(rfaas_strerror(code)) > 0);
  CHECK(strcmp(rfaas_strerror(RFAAS_ERR_UNKNOWN_FUNCTION), "unknown function") == 0);

  rfaas_lease* lease = NULL;
  CHECK(rfaas_lease_direct(argv[1], argv[2], argv[3], 1, 60000, &lease) == RFAAS_OK);
  rfaas_deploy_options o;
  rfaas_deploy_options_init(&o);
  o.library_path = argv[4];
  o.functions = "echo,saxpy";
  o.input_capacity = 4096;
  o.output_capacity = 4096;
  rfaas_executor* ex = NULL;
  CHECK(rfaas_deploy(lease, &o, &ex) == RFAAS_OK);
  CHECK(rfaas_workers(ex) == 1);
  int echo = rfaas_function(ex, "echo");
  CHECK(echo == 0);
  CHECK(rfaas_function(ex, "saxpy") == 1);
  CHECK(rfaas_function(ex, "nope") == -1);

  char in[100], out[100];
  size_t n = 0;
  for (int i = 0; i < 100; ++i) in[i] = (char)(i * 3);
  CHECK(rfaas_invoke(ex, echo, in, sizeof in, out, sizeof out, &n) == RFAAS_OK);
  CHECK(n == sizeof in && memcmp(in, out, n) == 0);

  /* Registered memory and the asynchronous calls. */
  CHECK(rfaas_register(ex, in, sizeof in) == RFAAS_OK);
  CHECK(rfaas_register(ex, out, sizeof out) == RFAAS_OK);
  memset(out, 0, sizeof out);
  rfaas_invocation h;
  CHECK(rfaas_submit(ex, echo, in, 50, out, sizeof out, &h) == RFAAS_OK);
  int done = 0;
  CHECK(rfaas_test(ex, &h, &done) == RFAAS_OK);
  CHECK(rfaas_wait(ex, &h, &n, -1) == RFAAS_OK);
  CHECK(n == 50 && memcmp(in, out, 50) == 0);
  CHECK(rfaas_deregister(ex, in) == RFAAS_OK);

  /* Named errors. */
  char big[5000];
  CHECK(rfaas_invoke(ex, echo, big, sizeof big, out, sizeof out, &n) == RFAAS_ERR_PAYLOAD_TOO_LARGE);
  CHECK(rfaas_invoke(ex, 7, in, 1, out, 1, &n) == RFAAS_ERR_UNKNOWN_FUNCTION);
  CHECK(rfaas_deploy(NULL, &o, &ex) == RFAAS_ERR_INVALID_ARGUMENT);

  rfaas_usage u;
  CHECK(rfaas_release(ex, &u) == RFAAS_OK);
  CHECK(u.invocations == 2);
  CHECK(rfaas_invoke(ex, echo, in, 1, out, 1, &n) == RFAAS_ERR_INVALID_ARGUMENT);
  rfaas_executor_free(ex);

  /* A lease for another node is refused with a named error and a message. */
  rfaas_lease* wrong = NULL;
  CHECK(rfaas_lease_direct(argv[1], "not-this-node", argv[3], 1, 60000, &wrong) == RFAAS_OK);
  rfaas_executor* none = NULL;
  CHECK(rfaas_deploy(wrong, &o, &none) == RFAAS_ERR_BAD_TOKEN);
  CHECK(strstr(rfaas_last_error(), "not-this-node") != NULL);
  rfaas_lease_free(wrong);
  rfaas_lease_free(lease);
  printf("c_api_client: all checks passed\n");
  return 0;
}
