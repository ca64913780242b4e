/* mgmtd_conn.h - calls to "the primary mgmtd" over a list of addresses.
 *
 * A mgmtd_conn holds an RPC client and the address list of a cluster's
 * mgmtds. mgmtd_conn_call sends a request to the last known primary and
 * follows redirects: a -CFS_ENOT_PRIMARY reply names the primary (its error
 * text), which is tried next; a transport failure (refused, closed, timed
 * out, -CFS_EUNAVAIL) moves on to the next address of the list. Addresses
 * learned from redirects are tried too. Used by mgmtd_client (services)
 * and by the admin commands.
 */
#ifndef CFS_MGMTD_MGMTD_CONN_H
#define CFS_MGMTD_MGMTD_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "common/buf.h"
#include "mgmtd/routing.h"

#define MGMTD_CONN_MAX_ADDRS 16

struct mgmtd_conn;

struct mgmtd_conn_opts {
	const char *const *addrs; /* 1..MGMTD_CONN_MAX_ADDRS "ip:port"; copied */
	size_t n_addrs;
	const char *cluster_id; /* copied */
	const uint8_t *secret;  /* >= 16 bytes; copied */
	size_t secret_len;
	uint32_t timeout_ms; /* default per-attempt deadline [3000] */
	uint32_t max_backoff_ms; /* longest pause between reconnects to a mgmtd [5000] */
};

/* 0, or -EINVAL (bad option or address; message in ERR) / -errno. */
int mgmtd_conn_new(const struct mgmtd_conn_opts *o, struct mgmtd_conn **out, char *err,
                   size_t errlen);
/* Completes calls in flight with -CFS_ECLOSED first. NULL-safe. Not from a
 * thread blocked in mgmtd_conn_call. */
void mgmtd_conn_free(struct mgmtd_conn *c);

/* Sends TYPE with PAYLOAD to the primary and waits for its reply; the
 * reply payload goes to RESP (may be NULL). Each attempt has TIMEOUT_MS (0:
 * the default); at most 2 * addresses + 2 attempts are made, except that
 * while every mgmtd says "not primary" without naming one (an election is
 * under way) it keeps asking every 100 ms until TIMEOUT_MS. Returns 0, the
 * primary's error status (its text in ERR), or the last failure:
 * -CFS_ENOT_PRIMARY (no mgmtd knows a primary: an election is under way),
 * -CFS_EAUTH / -CFS_EVERSION (refused: not retried), or a transport error
 * (every mgmtd unreachable), or -ECANCELED after mgmtd_conn_cancel. ERR (may be NULL) always gets a
 * one-line reason on failure. Blocking; any thread except an RPC loop thread; several threads may
 * call at once. */
int mgmtd_conn_call(struct mgmtd_conn *c, uint16_t type, const void *payload, uint32_t len,
                    uint32_t timeout_ms, struct buf *resp, char *err, size_t errlen);

/* Makes every current and later mgmtd_conn_call return -ECANCELED at
 * once (shutdown of a user whose threads block in calls). Any thread. */
void mgmtd_conn_cancel(struct mgmtd_conn *c);

/* Copies the last known primary's address into OUT (ROUTE_ADDR_MAX + 1
 * bytes). Any thread. */
void mgmtd_conn_primary(struct mgmtd_conn *c, char *out);

#endif
