/* Links the installed client library from C: the codes and their names are there. */
#include <rfaas/rfaas.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  rfaas_deploy_options o;
  rfaas_deploy_options_init(&o);
  printf("consumer_c: %s; default slots %d\n", rfaas_strerror(RFAAS_ERR_LEASE_EXPIRED), o.slots);
  return strcmp(rfaas_strerror(RFAAS_OK), "ok") == 0 && o.slots > 0 ? 0 : 1;
}
