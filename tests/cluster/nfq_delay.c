/* A network delay for the namespace cluster, where the kernel has no netem qdisc: every packet
 * an iptables NFQUEUE rule hands to queue Q is held here for MS milliseconds, then given back to
 * the kernel (NF_ACCEPT), in arrival order. Run inside a node's network namespace; stops on
 * SIGTERM/SIGINT after releasing what it holds. With `--queue-bypass` on the rule, packets flow
 * undelayed once this process is gone, so a killed delayer never cuts a link.
 *
 *   rfaas-nfq-delay QUEUE MS
 */
#include <arpa/inet.h> /* before linux/netfilter.h, which would define in_addr again */
#include <errno.h>
#include <linux/netfilter.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Held packets, oldest first: a constant delay keeps arrival order, so a ring is enough. Past its
 * size packets are dropped, as a full router queue would. */
#define HELD_MAX 65536u

struct held {
  uint32_t id;
  int64_t due_ns;
};

static struct held ring[HELD_MAX];
static unsigned head, count;
static int64_t delay_ns;
static unsigned long dropped, passed;
static volatile sig_atomic_t stopping;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa, void *data) {
  (void)msg;
  (void)data;
  struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
  if (!ph) return 0;
  uint32_t id = ntohl(ph->packet_id);
  if (count == HELD_MAX) {
    ++dropped;
    return nfq_set_verdict(qh, id, NF_DROP, 0, NULL);
  }
  ring[(head + count) % HELD_MAX] = (struct held){id, now_ns() + delay_ns};
  ++count;
  return 0;
}

static void release_due(struct nfq_q_handle *qh, int64_t until) {
  while (count > 0 && ring[head].due_ns <= until) {
    nfq_set_verdict(qh, ring[head].id, NF_ACCEPT, 0, NULL);
    head = (head + 1) % HELD_MAX;
    --count;
    ++passed;
  }
}

static void on_signal(int sig) {
  (void)sig;
  stopping = 1;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: rfaas-nfq-delay QUEUE MS\n");
    return 2;
  }
  char *end = NULL;
  long queue = strtol(argv[1], &end, 10);
  if (*end || queue < 0 || queue > 65535) {
    fprintf(stderr, "rfaas-nfq-delay: QUEUE is 0..65535\n");
    return 2;
  }
  long ms = strtol(argv[2], &end, 10);
  if (*end || ms < 0 || ms > 10000) {
    fprintf(stderr, "rfaas-nfq-delay: MS is 0..10000\n");
    return 2;
  }
  delay_ns = (int64_t)ms * 1000000;

  struct nfq_handle *h = nfq_open();
  if (!h) {
    perror("rfaas-nfq-delay: nfq_open");
    return 1;
  }
  struct nfq_q_handle *qh = nfq_create_queue(h, (uint16_t)queue, on_packet, NULL);
  if (!qh) {
    perror("rfaas-nfq-delay: nfq_create_queue (is another delayer on this queue?)");
    return 1;
  }
  /* Only the verdict needs the packet id; no payload is copied to us. */
  if (nfq_set_mode(qh, NFQNL_COPY_META, 0) < 0 && nfq_set_mode(qh, NFQNL_COPY_PACKET, 0) < 0) {
    perror("rfaas-nfq-delay: nfq_set_mode");
    return 1;
  }
  nfq_set_queue_maxlen(qh, HELD_MAX);
  nfnl_rcvbufsiz(nfq_nfnlh(h), 8u << 20);

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  int fd = nfq_fd(h);
  static char buf[65536] __attribute__((aligned));
  printf("rfaas-nfq-delay: queue %ld, %ld ms\n", queue, ms);
  fflush(stdout);
  while (!stopping) {
    int timeout_ms = 100;
    if (count > 0) {
      int64_t wait = ring[head].due_ns - now_ns();
      timeout_ms = wait <= 0 ? 0 : (int)((wait + 999999) / 1000000);
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, timeout_ms);
    if (r > 0) {
      /* Drain what is waiting without blocking again. */
      for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
          nfq_handle_packet(h, buf, (int)n);
          continue;
        }
        /* ENOBUFS: the kernel dropped messages for us (a burst past the socket buffer); go on. */
        if (n < 0 && errno == ENOBUFS) continue;
        break;
      }
    }
    release_due(qh, now_ns());
  }
  release_due(qh, INT64_MAX);
  fprintf(stderr, "rfaas-nfq-delay: stopped (%lu packets delayed, %lu dropped at a full queue)\n", passed, dropped);
  nfq_destroy_queue(qh);
  nfq_close(h);
  return 0;
}
