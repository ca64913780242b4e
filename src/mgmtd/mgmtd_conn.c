/* mgmtd_conn.c - redirect-following calls to the primary mgmtd.
 *
 * State: the address list (configured ones first, then ones learned from
 * redirects) and the index of the last address that answered as primary,
 * both under mu. A call never holds mu while it waits for a reply.
 *
 * Calls are rpc_call_async with a completion record shared by the waiting
 * thread and the done callback (two references, freed by whichever lets
 * go last), so mgmtd_conn_cancel can release a waiter at once while the
 * request itself completes later (at the latest in rpc_client_free).
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/status.h"
#include "common/xalloc.h"
#include "mgmtd/mgmtd_conn.h"
#include "net/rpc.h"
#include "net/rpc_proto.h"

#define MAX_ADDRS         (2 * MGMTD_CONN_MAX_ADDRS)
#define ELECTION_PAUSE_MS 100

struct mgmtd_conn {
	struct rpc_client *rpc;
	uint32_t timeout_ms;
	pthread_mutex_t mu;
	pthread_cond_t cv;                         /* a call finished, or cancel */
	bool cancelled;                            /* mu */
	char addrs[MAX_ADDRS][ROUTE_ADDR_MAX + 1]; /* mu */
	size_t n_addrs;                            /* mu */
	size_t primary;                            /* mu: index of the last primary */
};

int mgmtd_conn_new(const struct mgmtd_conn_opts *o, struct mgmtd_conn **out, char *err,
                   size_t errlen)
{
	if (!o->n_addrs || o->n_addrs > MGMTD_CONN_MAX_ADDRS) {
		snprintf(err, errlen, "1..%d mgmtd addresses are needed", MGMTD_CONN_MAX_ADDRS);
		return -EINVAL;
	}
	struct mgmtd_conn *c = xcalloc(1, sizeof(*c));
	struct rpc_opts ro = {.cluster_id = o->cluster_id,
	                      .secret = o->secret,
	                      .secret_len = o->secret_len,
	                      .nthreads = 1,
	                      .max_backoff_ms = o->max_backoff_ms};
	c->timeout_ms = o->timeout_ms ? o->timeout_ms : 3000;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	int rc = rpc_client_new(&ro, &c->rpc);
	if (rc) {
		snprintf(err, errlen, "mgmtd client: %s", cfs_strerror(rc));
		goto fail;
	}
	for (size_t i = 0; i < o->n_addrs; i++) {
		struct rpc_peer *p;
		if (strlen(o->addrs[i]) > ROUTE_ADDR_MAX) {
			snprintf(err, errlen, "mgmtd address too long: %.40s...", o->addrs[i]);
			rc = -EINVAL;
			goto fail;
		}
		rc = rpc_client_peer(c->rpc, o->addrs[i], &p, err, errlen);
		if (rc)
			goto fail;
		snprintf(c->addrs[c->n_addrs++], ROUTE_ADDR_MAX + 1, "%s", o->addrs[i]);
	}
	*out = c;
	return 0;
fail:
	rpc_client_free(c->rpc);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
	return rc;
}

void mgmtd_conn_free(struct mgmtd_conn *c)
{
	if (!c)
		return;
	rpc_client_free(c->rpc);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	free(c);
}

void mgmtd_conn_cancel(struct mgmtd_conn *c)
{
	pthread_mutex_lock(&c->mu);
	c->cancelled = true;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
}

struct acall {
	struct mgmtd_conn *c;
	int refs;        /* c->mu */
	bool done;       /* c->mu */
	int status;      /* c->mu */
	struct buf resp; /* c->mu */
};

static void acall_done(void *arg, const struct rpc_result *res)
{
	struct acall *a = arg;
	struct mgmtd_conn *c = a->c;
	pthread_mutex_lock(&c->mu);
	a->status = res->status;
	if (res->payload_len && buf_append(&a->resp, res->payload, res->payload_len) && !a->status)
		a->status = -ENOMEM;
	a->done = true;
	pthread_cond_broadcast(&c->cv);
	bool last = --a->refs == 0;
	pthread_mutex_unlock(&c->mu);
	if (last) {
		buf_fini(&a->resp);
		free(a);
	}
}

/* rpc_call that returns -ECANCELED as soon as the conn is cancelled. */
static int call_once(struct mgmtd_conn *c, struct rpc_peer *p, const struct rpc_call *call0,
                     struct buf *resp)
{
	struct acall *a = xcalloc(1, sizeof(*a));
	struct rpc_call call = *call0;
	a->c = c;
	a->refs = 2;
	buf_init(&a->resp);
	call.done = acall_done;
	call.arg = a;
	int rc = rpc_call_async(p, &call);
	if (rc) {
		free(a);
		return rc;
	}
	pthread_mutex_lock(&c->mu);
	while (!a->done && !c->cancelled)
		pthread_cond_wait(&c->cv, &c->mu);
	rc = a->done ? a->status : -ECANCELED;
	buf_reset(resp);
	if (a->done && a->resp.len && buf_append(resp, a->resp.data, a->resp.len) && !rc)
		rc = -ENOMEM;
	bool last = --a->refs == 0;
	pthread_mutex_unlock(&c->mu);
	if (last) {
		buf_fini(&a->resp);
		free(a);
	}
	return rc;
}

void mgmtd_conn_primary(struct mgmtd_conn *c, char *out)
{
	pthread_mutex_lock(&c->mu);
	memcpy(out, c->addrs[c->primary], ROUTE_ADDR_MAX + 1);
	pthread_mutex_unlock(&c->mu);
}

/* Index of ADDR in the list, adding it when there is room; -1 if not. */
static int addr_index(struct mgmtd_conn *c, const char *addr, size_t len)
{
	for (size_t i = 0; i < c->n_addrs; i++)
		if (strlen(c->addrs[i]) == len && !memcmp(c->addrs[i], addr, len))
			return (int)i;
	if (c->n_addrs == MAX_ADDRS || len == 0 || len > ROUTE_ADDR_MAX)
		return -1;
	memcpy(c->addrs[c->n_addrs], addr, len);
	c->addrs[c->n_addrs][len] = 0;
	return (int)c->n_addrs++;
}

static bool transport_error(int rc)
{
	switch (rc) {
	case -CFS_ETIMEDOUT:
	case -CFS_ECLOSED:
	case -CFS_EUNAVAIL:
	case -ECONNREFUSED:
	case -ECONNRESET:
	case -ECONNABORTED:
	case -EHOSTUNREACH:
	case -ENETUNREACH:
	case -EPIPE:
	case -ETIMEDOUT:
	case -ENOTCONN:
	case -CFS_ECHECKSUM:
		return true;
	}
	return false;
}

static void error_text(const struct buf *resp, char *err, size_t errlen, const char *addr, int rc)
{
	struct rpc_error e = {0};
	if (resp->len && !rpc_error_decode(resp->data, resp->len, &e) && e.text_len)
		snprintf(err, errlen, "mgmtd %s: %.*s", addr, (int)e.text_len,
		         (const char *)e.text);
	else if (transport_error(rc))
		snprintf(err, errlen, "cannot reach mgmtd %s: %s", addr, cfs_strerror(rc));
	else
		snprintf(err, errlen, "mgmtd %s: %s", addr, cfs_strerror(rc));
}

/* Every mgmtd said "not primary" and none knew one: an election is under
 * way. Waits a little (less if cancelled) and returns true to try again,
 * false once DEADLINE has passed. */
static bool wait_election(struct mgmtd_conn *c, uint64_t deadline)
{
	uint64_t now = clock_mono_ms();
	if (now + ELECTION_PAUSE_MS >= deadline)
		return false;
	struct timespec ts = clock_after_ms(CLOCK_REALTIME, ELECTION_PAUSE_MS);
	pthread_mutex_lock(&c->mu);
	if (!c->cancelled)
		pthread_cond_timedwait(&c->cv, &c->mu, &ts);
	bool go = !c->cancelled;
	pthread_mutex_unlock(&c->mu);
	return go;
}

int mgmtd_conn_call(struct mgmtd_conn *c, uint16_t type, const void *payload, uint32_t len,
                    uint32_t timeout_ms, struct buf *resp, char *err, size_t errlen)
{
	struct buf own = BUF_INIT;
	char dummy[8];
	if (!resp)
		resp = &own;
	if (!err) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	struct rpc_call call = {.type = type,
	                        .payload = payload,
	                        .payload_len = len,
	                        .timeout_ms = timeout_ms ? timeout_ms : c->timeout_ms};
	pthread_mutex_lock(&c->mu);
	size_t idx = c->primary, tries = 2 * c->n_addrs + 2;
	pthread_mutex_unlock(&c->mu);
	int rc = -CFS_EUNAVAIL;
	size_t rotated = 0; /* addresses tried in a row without a redirect */
	uint64_t deadline = clock_mono_ms() + call.timeout_ms;
	snprintf(err, errlen, "no mgmtd answered");
	for (size_t a = 0; a < tries; a++) {
		char addr[ROUTE_ADDR_MAX + 1];
		struct rpc_peer *p;
		pthread_mutex_lock(&c->mu);
		memcpy(addr, c->addrs[idx], sizeof(addr));
		size_t n = c->n_addrs;
		pthread_mutex_unlock(&c->mu);
		pthread_mutex_lock(&c->mu);
		bool cancelled = c->cancelled;
		pthread_mutex_unlock(&c->mu);
		if (cancelled) {
			snprintf(err, errlen, "mgmtd client is shutting down");
			rc = -ECANCELED;
			break;
		}
		rc = rpc_client_peer(c->rpc, addr, &p, err, errlen);
		if (!rc)
			rc = call_once(c, p, &call, resp);
		if (rc == -ECANCELED) {
			snprintf(err, errlen, "mgmtd client is shutting down");
			break;
		}
		if (rc == 0 || !(rc == -CFS_ENOT_PRIMARY || transport_error(rc))) {
			if (rc)
				error_text(resp, err, errlen, addr, rc);
			if (rc != -CFS_EAUTH && rc != -CFS_EVERSION && rc != -EINVAL) {
				pthread_mutex_lock(&c->mu);
				c->primary = idx;
				pthread_mutex_unlock(&c->mu);
			}
			break;
		}
		error_text(resp, err, errlen, addr, rc);
		int next = -1;
		if (rc == -CFS_ENOT_PRIMARY) {
			struct rpc_error e = {0};
			if (resp->len && !rpc_error_decode(resp->data, resp->len, &e) &&
			    e.text_len) {
				pthread_mutex_lock(&c->mu);
				next = addr_index(c, (const char *)e.text, e.text_len);
				pthread_mutex_unlock(&c->mu);
				if (next == (int)idx)
					next = -1; /* it names itself but refuses: stale */
			}
			if (next < 0)
				snprintf(err, errlen,
				         "mgmtd %s: not primary, and no primary is known "
				         "(election under way?)",
				         addr);
		}
		if (next >= 0) {
			idx = (size_t)next;
			rotated = 0;
		} else {
			idx = (idx + 1) % n;
			if (++rotated >= n &&
			    (rc != -CFS_ENOT_PRIMARY || !wait_election(c, deadline)))
				break; /* every address failed once */
			if (rotated >= n) {
				rotated = 0;
				a = 0;
			}
		}
	}
	buf_fini(&own);
	return rc;
}
