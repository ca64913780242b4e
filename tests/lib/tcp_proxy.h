/* tcp_proxy.h - a TCP relay on 127.0.0.1 that a test can cut, to
 * partition one process from another without stopping either (SIGSTOP
 * would cut it off from everyone). Point the client process at the
 * proxy's port instead of the server's.
 */
#ifndef CFS_TESTS_TCP_PROXY_H
#define CFS_TESTS_TCP_PROXY_H

#include <stdbool.h>
#include <stdint.h>

struct tcp_proxy;

/* Listens on a free loopback port and relays each connection to
 * 127.0.0.1:UPSTREAM on its own thread. NULL on failure. */
struct tcp_proxy *tcp_proxy_start(uint16_t upstream);
uint16_t tcp_proxy_port(const struct tcp_proxy *p);
/* CUT: closes every relayed connection and closes new ones at once
 * (the client sees resets) until called again with false. */
void tcp_proxy_cut(struct tcp_proxy *p, bool cut);
/* DELAY: from now on, what upstream sends reaches the client MS later
 * (0: at once again); requests are not delayed, and replies to concurrent
 * requests are each late by MS, not queued behind each other: a server
 * that is alive but slower than the client's per-request timeout. */
void tcp_proxy_delay(struct tcp_proxy *p, unsigned ms);
/* Stops the thread, closes everything, frees. NULL-safe. */
void tcp_proxy_free(struct tcp_proxy *p);

#endif
