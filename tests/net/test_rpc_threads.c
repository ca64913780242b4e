/* test_rpc_threads.c - many threads calling on one connection at once, the
 * case where callers write their own requests and worker threads write
 * their own replies (rpc_client.c "DIRECT SEND", rpc_server.c THREADS):
 * every reply reaches the caller that asked, deadlines still fire for
 * requests sent without the loop, and a connection that drops while
 * threads are sending fails every pending call exactly once. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/status.h"
#include "net/rpc.h"
#include "rpc_test_srv.h"
#include "tcp_proxy.h"

#define T_ECHO_WORKER 40 /* echoed by a worker thread */
#define T_ECHO_LOOP 41   /* echoed on the loop thread */
#define T_HOLD 42        /* held until the test releases it */
#define NWORKERS 2

static const char secret[] = "threads-test-secret-0123456789";

static void echo_now(struct rpc_req *req)
{
	uint32_t len;
	const uint8_t *p = rpc_req_payload(req, &len);
	rpc_reply(req, 0, p, len);
}

static struct rpc_opts opts(void)
{
	return rpc_test_opts("threads", secret);
}

static struct rpc_test_srv *srv_start(void)
{
	static const struct rpc_test_route routes[] = {
		{ T_ECHO_WORKER, RPC_TEST_WORKER, echo_now },
		{ T_ECHO_LOOP, RPC_TEST_LOOP, echo_now },
		{ T_HOLD, RPC_TEST_HOLD, NULL },
	};
	struct rpc_opts o = opts();
	return rpc_test_srv_start(&o, NWORKERS, routes, 3);
}

static struct rpc_client *client_to(uint16_t port, uint32_t timeout_ms, struct rpc_peer **p)
{
	struct rpc_opts o = opts();
	o.timeout_ms = timeout_ms;
	o.max_backoff_ms = 100;
	return rpc_test_client(&o, port, p);
}

/* ---- many threads, one connection: replies matched to callers ---- */

#define NTHREADS 12
#define CALLS 1500

struct caller {
	struct rpc_peer *p;
	int id;
	int bad;             /* replies that did not match the request */
	int errors;
	atomic_int async_done, async_bad;
};

struct async_tag {
	struct caller *c;
	uint8_t want[64];
	uint32_t len;
};

static void async_check(void *arg, const struct rpc_result *res)
{
	struct async_tag *t = arg;
	if (res->status || res->payload_len != t->len || memcmp(res->payload, t->want, t->len))
		atomic_fetch_add(&t->c->async_bad, 1);
	atomic_fetch_add(&t->c->async_done, 1);
	free(t);
}

static void *caller_main(void *arg)
{
	struct caller *c = arg;
	struct buf resp = BUF_INIT;
	for (int i = 0; i < CALLS; i++) {
		uint8_t b[64];
		uint32_t len = rpc_test_payload(b, c->id, i);
		uint16_t type = (i + c->id) % 3 ? T_ECHO_WORKER : T_ECHO_LOOP;
		if (i % 5 == 4) {
			struct async_tag *t = malloc(sizeof(*t));
			t->c = c;
			t->len = len;
			memcpy(t->want, b, len);
			struct rpc_call call = { .type = type, .payload = b, .payload_len = len,
						 .done = async_check, .arg = t };
			if (rpc_call_async(c->p, &call)) {
				free(t);
				c->errors++;
				atomic_fetch_add(&c->async_done, 1);
			}
			continue;
		}
		struct rpc_call call = { .type = type, .payload = b, .payload_len = len };
		int rc = rpc_call(c->p, &call, &resp, NULL);
		if (rc)
			c->errors++;
		else if (resp.len != len || memcmp(resp.data, b, len))
			c->bad++;
	}
	buf_fini(&resp);
	return NULL;
}

static int asyncs_done(struct caller *cs)
{
	for (int i = 0; i < NTHREADS; i++)
		if (atomic_load(&cs[i].async_done) != CALLS / 5)
			return 0;
	return 1;
}

static void test_many_threads_one_conn(void **state)
{
	struct rpc_test_srv *s = srv_start();
	struct rpc_peer *p;
	struct rpc_client *cl = client_to(s->port, 10000, &p);
	struct caller cs[NTHREADS];
	pthread_t th[NTHREADS];
	memset(cs, 0, sizeof(cs));
	for (int i = 0; i < NTHREADS; i++) {
		cs[i].p = p;
		cs[i].id = i;
		assert_int_equal(pthread_create(&th[i], NULL, caller_main, &cs[i]), 0);
	}
	for (int i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	uint64_t t0 = clock_mono_ns();
	while (!asyncs_done(cs) && clock_mono_ns() - t0 < 10000000000ull)
		clock_sleep_ms(5);
	for (int i = 0; i < NTHREADS; i++) {
		assert_int_equal(cs[i].errors, 0);
		assert_int_equal(cs[i].bad, 0);
		assert_int_equal(atomic_load(&cs[i].async_done), CALLS / 5);
		assert_int_equal(atomic_load(&cs[i].async_bad), 0);
	}
	/* One connection carried it all. */
	struct rpc_stats st;
	rpc_server_stats(s->rpc, &st);
	assert_int_equal(st.accepted, 1);
	assert_int_equal(st.bad_input, 0);
	rpc_client_free(cl);
	rpc_test_srv_stop(s);
}

/* ---- deadlines of requests sent by the callers themselves ---- */

struct tmo_caller {
	struct rpc_peer *p;
	int timeouts, other;
	uint64_t worst_ns;
};

static void *tmo_main(void *arg)
{
	struct tmo_caller *t = arg;
	for (int i = 0; i < 20; i++) {
		struct rpc_call ok = { .type = T_ECHO_WORKER, .payload = "x", .payload_len = 1 };
		if (rpc_call(t->p, &ok, NULL, NULL))
			t->other++;
		struct rpc_call call = { .type = T_HOLD, .timeout_ms = 50 };
		uint64_t t0 = clock_mono_ns();
		int rc = rpc_call(t->p, &call, NULL, NULL);
		uint64_t dt = clock_mono_ns() - t0;
		if (rc == -CFS_ETIMEDOUT)
			t->timeouts++;
		else
			t->other++;
		if (dt > t->worst_ns)
			t->worst_ns = dt;
	}
	return NULL;
}

static void test_deadlines_of_direct_sends(void **state)
{
	struct rpc_test_srv *s = srv_start();
	struct rpc_peer *p;
	struct rpc_client *cl = client_to(s->port, 10000, &p);
	struct tmo_caller ts[6];
	pthread_t th[6];
	memset(ts, 0, sizeof(ts));
	for (int i = 0; i < 6; i++) {
		ts[i].p = p;
		assert_int_equal(pthread_create(&th[i], NULL, tmo_main, &ts[i]), 0);
	}
	for (int i = 0; i < 6; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(ts[i].other, 0);
		assert_int_equal(ts[i].timeouts, 20);
		/* 50 ms deadline, armed by a sweep at most 10 ms late; generous
		 * slack for a loaded machine. */
		assert_true(ts[i].worst_ns < 2000000000ull);
	}
	/* Every request reached the server, none was lost with its timeout.
	 * The last ones may be read by the server's loop after their 50 ms
	 * deadlines fired (a loaded host): waited for, not counted at once. */
	assert_int_equal(rpc_test_srv_wait_held(s, 6 * 20, 10000), 6 * 20);
	/* The late replies are dropped; the connection still works. */
	rpc_test_srv_release(s, "late", 4);
	struct rpc_call ok = { .type = T_ECHO_LOOP, .payload = "y", .payload_len = 1 };
	assert_int_equal(rpc_call(p, &ok, NULL, NULL), 0);
	struct rpc_stats st;
	rpc_server_stats(s->rpc, &st);
	assert_int_equal(st.accepted, 1);
	rpc_client_free(cl);
	rpc_test_srv_stop(s);
}

/* ---- the connection drops while threads are sending ---- */

#define CUT_THREADS 8
#define CUT_CALLS 200

struct cut_call {
	atomic_int done;
	int status;
};

struct cut_caller {
	struct rpc_peer *p;
	struct cut_call calls[CUT_CALLS];
	int issued;
};

static void cut_done(void *arg, const struct rpc_result *res)
{
	struct cut_call *k = arg;
	k->status = res->status;
	atomic_fetch_add(&k->done, 1);
}

static void *cut_main(void *arg)
{
	struct cut_caller *c = arg;
	for (int i = 0; i < CUT_CALLS; i++) {
		struct rpc_call call = { .type = T_HOLD, .timeout_ms = 20000, .payload = "h",
					 .payload_len = 1, .done = cut_done, .arg = &c->calls[i] };
		if (!rpc_call_async(c->p, &call))
			c->issued++;
		else
			atomic_fetch_add(&c->calls[i].done, 1);
		if (i % 16 == 15)
			clock_sleep_ms(1);
	}
	return NULL;
}

static int all_cut_done(struct cut_caller *cs)
{
	for (int t = 0; t < CUT_THREADS; t++)
		for (int i = 0; i < CUT_CALLS; i++)
			if (!atomic_load(&cs[t].calls[i].done))
				return 0;
	return 1;
}

static void test_close_while_sending(void **state)
{
	struct rpc_test_srv *s = srv_start();
	struct tcp_proxy *px = tcp_proxy_start(s->port);
	assert_non_null(px);
	struct rpc_peer *p;
	struct rpc_client *cl = client_to(tcp_proxy_port(px), 20000, &p);
	struct rpc_call ok = { .type = T_ECHO_WORKER, .payload = "z", .payload_len = 1 };
	assert_int_equal(rpc_call(p, &ok, NULL, NULL), 0);

	struct cut_caller *cs = calloc(CUT_THREADS, sizeof(*cs));
	pthread_t th[CUT_THREADS];
	for (int i = 0; i < CUT_THREADS; i++) {
		cs[i].p = p;
		assert_int_equal(pthread_create(&th[i], NULL, cut_main, &cs[i]), 0);
	}
	/* Cut once the server holds some of them, while the rest are still
	 * being sent. */
	assert_true(rpc_test_srv_wait_held(s, 100, 10000) >= 100);
	tcp_proxy_cut(px, true);
	for (int i = 0; i < CUT_THREADS; i++)
		pthread_join(th[i], NULL);
	uint64_t t0 = clock_mono_ns();
	while (!all_cut_done(cs) && clock_mono_ns() - t0 < 15000000000ull)
		clock_sleep_ms(5);
	/* Every call completed exactly once, none with success (the server
	 * never answered before the cut), the held ones with -CFS_ECLOSED. */
	int closed = 0;
	for (int t = 0; t < CUT_THREADS; t++) {
		assert_int_equal(cs[t].issued, CUT_CALLS);
		for (int i = 0; i < CUT_CALLS; i++) {
			assert_int_equal(atomic_load(&cs[t].calls[i].done), 1);
			assert_int_not_equal(cs[t].calls[i].status, 0);
			closed += cs[t].calls[i].status == -CFS_ECLOSED;
		}
	}
	assert_true(closed >= 100);
	/* Late replies to the dead connection are dropped on the server. */
	rpc_test_srv_release(s, "late", 4);
	clock_sleep_ms(50);
	for (int t = 0; t < CUT_THREADS; t++)
		for (int i = 0; i < CUT_CALLS; i++)
			assert_int_equal(atomic_load(&cs[t].calls[i].done), 1);
	/* After the cut heals, the client reconnects. */
	tcp_proxy_cut(px, false);
	assert_int_equal(rpc_test_call_retry(p, &ok, NULL, 50), 0);
	rpc_client_free(cl);
	tcp_proxy_free(px);
	rpc_test_srv_stop(s);
	free(cs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_many_threads_one_conn),
		cmocka_unit_test(test_deadlines_of_direct_sends),
		cmocka_unit_test(test_close_while_sending),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
