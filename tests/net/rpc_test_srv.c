/* rpc_test_srv.c - see rpc_test_srv.h. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/clock.h"
#include "common/status.h"
#include "rpc_test_srv.h"

#define QCAP 8192
#define HOLD_MAX 4096
#define MAX_WORKERS 16
#define MAX_ROUTES 8

struct route_arg {
	struct rpc_test_srv *s;
	const struct rpc_test_route *r;
};

struct rpc_test_srv_priv {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct {
		struct rpc_req *req;
		void (*fn)(struct rpc_req *req);
	} q[QCAP];
	int qh, qn, stop;
	int nworkers;
	pthread_t w[MAX_WORKERS];
	struct rpc_req *held[HOLD_MAX];
	int nheld;
	struct rpc_test_route routes[MAX_ROUTES];
	struct route_arg args[MAX_ROUTES];
};

static void route_handler(struct rpc_req *req, void *arg)
{
	struct route_arg *a = arg;
	struct rpc_test_srv_priv *p = a->s->priv;
	switch (a->r->where) {
	case RPC_TEST_LOOP:
		a->r->fn(req);
		return;
	case RPC_TEST_WORKER:
		pthread_mutex_lock(&p->mu);
		if (p->qn < QCAP) {
			int i = (p->qh + p->qn++) % QCAP;
			p->q[i].req = req;
			p->q[i].fn = a->r->fn;
			req = NULL;
			pthread_cond_signal(&p->cv);
		}
		break;
	case RPC_TEST_HOLD:
		pthread_mutex_lock(&p->mu);
		if (p->nheld < HOLD_MAX) {
			p->held[p->nheld++] = req;
			req = NULL;
		}
		break;
	}
	pthread_mutex_unlock(&p->mu);
	if (req)
		rpc_reply(req, -CFS_EUNAVAIL, NULL, 0);
}

static void *worker_main(void *arg)
{
	struct rpc_test_srv_priv *p = arg;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->qn && !p->stop)
			pthread_cond_wait(&p->cv, &p->mu);
		if (!p->qn)
			break;
		struct rpc_req *r = p->q[p->qh].req;
		void (*fn)(struct rpc_req *) = p->q[p->qh].fn;
		p->qh = (p->qh + 1) % QCAP;
		p->qn--;
		pthread_mutex_unlock(&p->mu);
		fn(r);
		pthread_mutex_lock(&p->mu);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

struct rpc_test_srv *rpc_test_srv_start(const struct rpc_opts *o, int nworkers,
                                        const struct rpc_test_route *routes, int nroutes)
{
	assert_true(nworkers >= 0 && nworkers <= MAX_WORKERS);
	assert_true(nroutes > 0 && nroutes <= MAX_ROUTES);
	struct rpc_test_srv *s = calloc(1, sizeof(*s));
	struct rpc_test_srv_priv *p = calloc(1, sizeof(*p));
	assert_non_null(s);
	assert_non_null(p);
	s->priv = p;
	char err[128];
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	assert_int_equal(rpc_server_new(o, &s->rpc), 0);
	for (int i = 0; i < nroutes; i++) {
		p->routes[i] = routes[i];
		p->args[i] = (struct route_arg){ .s = s, .r = &p->routes[i] };
		struct rpc_handler h = { .fn = route_handler, .arg = &p->args[i] };
		assert_int_equal(rpc_server_handle(s->rpc, routes[i].type, &h), 0);
	}
	p->nworkers = nworkers;
	for (int i = 0; i < nworkers; i++)
		assert_int_equal(pthread_create(&p->w[i], NULL, worker_main, p), 0);
	assert_int_equal(rpc_server_start(s->rpc, "127.0.0.1:0", err, sizeof(err)), 0);
	s->port = rpc_server_port(s->rpc);
	return s;
}

int rpc_test_srv_held(struct rpc_test_srv *s)
{
	pthread_mutex_lock(&s->priv->mu);
	int n = s->priv->nheld;
	pthread_mutex_unlock(&s->priv->mu);
	return n;
}

int rpc_test_srv_wait_held(struct rpc_test_srv *s, int n, int timeout_ms)
{
	uint64_t until = clock_mono_ms() + (uint64_t)timeout_ms;
	int held;
	while ((held = rpc_test_srv_held(s)) < n && clock_mono_ms() < until)
		clock_sleep_ms(1);
	return held;
}

void rpc_test_srv_release(struct rpc_test_srv *s, const void *reply, uint32_t len)
{
	struct rpc_test_srv_priv *p = s->priv;
	pthread_mutex_lock(&p->mu);
	int n = p->nheld;
	p->nheld = 0;
	struct rpc_req **h = malloc((size_t)(n ? n : 1) * sizeof(*h));
	assert_non_null(h);
	memcpy(h, p->held, (size_t)n * sizeof(*h));
	pthread_mutex_unlock(&p->mu);
	/* replied outside the lock: a reply may run a send on this thread */
	for (int i = 0; i < n; i++) {
		if (reply) {
			rpc_reply(h[i], 0, reply, len);
		} else {
			uint32_t plen;
			const uint8_t *pl = rpc_req_payload(h[i], &plen);
			rpc_reply(h[i], 0, pl, plen);
		}
	}
	free(h);
}

void rpc_test_srv_stop(struct rpc_test_srv *s)
{
	struct rpc_test_srv_priv *p = s->priv;
	rpc_test_srv_release(s, NULL, 0);
	pthread_mutex_lock(&p->mu);
	p->stop = 1;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->nworkers; i++)
		pthread_join(p->w[i], NULL);
	rpc_server_free(s->rpc);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->cv);
	free(p);
	free(s);
}

struct rpc_client *rpc_test_client(const struct rpc_opts *o, uint16_t port, struct rpc_peer **p)
{
	struct rpc_client *c;
	char addr[64], err[128];
	assert_int_equal(rpc_client_new(o, &c), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	assert_int_equal(rpc_client_peer(c, addr, p, err, sizeof(err)), 0);
	return c;
}

struct rpc_opts rpc_test_opts(const char *cluster_id, const char *secret)
{
	struct rpc_opts o = { .cluster_id = cluster_id, .secret = (const uint8_t *)secret,
			      .secret_len = strlen(secret), .nthreads = 1 };
	return o;
}

uint32_t rpc_test_payload(uint8_t *b, int id, int i)
{
	uint32_t len = 8 + (uint32_t)((id * 7 + i * 13) % 56);
	for (uint32_t k = 0; k < len; k++)
		b[k] = (uint8_t)(id * 131 + i * 17 + k);
	b[0] = (uint8_t)id;
	b[1] = (uint8_t)i;
	b[2] = (uint8_t)(i >> 8);
	return len;
}

int rpc_test_call_retry(struct rpc_peer *p, const struct rpc_call *call, struct buf *resp,
                        int tries)
{
	int rc = -1;
	for (int i = 0; i < tries && rc; i++) {
		rc = rpc_call(p, call, resp, NULL);
		if (rc)
			clock_sleep_ms(20);
	}
	return rc;
}
