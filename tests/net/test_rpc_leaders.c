/* test_rpc_leaders.c - blocked callers taking turns reading one
 * connection (rpc_client.c LEADERS, CFS_RPC_LEADERS=1): a caller about to
 * sleep reads the socket when nobody else does, completes other callers'
 * requests and async ones, and when its own reply came passes the
 * receive side to another blocked caller or back to the loop. The cases:
 *   - many threads race blocking calls and async calls whose replies come
 *     back out of order (worker delays): every call completes exactly
 *     once with its own reply, and the receive side did pass between
 *     callers (a reply arriving while it passes must not stall: the test
 *     would hang or time out);
 *   - the connection is cut while callers wait and read: every blocking
 *     and async call completes exactly once with an error, none hangs,
 *     and the client reconnects;
 *   - held calls time out while other callers read: each times out once,
 *     the others succeed;
 *   - a wrong secret: every call fails the handshake exactly once.
 * test_rpc_ownreply runs again with the switch on, too (CMakeLists.txt). */
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
#include "common/log.h"
#include "common/status.h"
#include "common/wire.h"
#include "net/rpc.h"
#include "rpc_test_srv.h"
#include "tcp_proxy.h"

#define T_ECHO 60 /* loop thread: payload back */
#define T_SLOW 61 /* worker: sleeps payload[0] ms, then payload back */
#define T_HOLD 62 /* held until the test releases it */
#define NWORKERS 4

static const char secret[] = "leaders-test-secret-0123456789ab";

static void echo_handler(struct rpc_req *req)
{
	uint32_t len;
	const uint8_t *p = rpc_req_payload(req, &len);
	rpc_reply(req, 0, p, len);
}

static void slow_handler(struct rpc_req *req)
{
	uint32_t len;
	const uint8_t *p = rpc_req_payload(req, &len);
	if (len && p[0])
		clock_sleep_ms(p[0] % 4);
	rpc_reply(req, 0, p, len);
}

static struct rpc_opts opts(void)
{
	return rpc_test_opts("leaders", secret);
}

static struct rpc_test_srv *srv_start(void)
{
	static const struct rpc_test_route routes[] = {
		{ T_ECHO, RPC_TEST_LOOP, echo_handler },
		{ T_SLOW, RPC_TEST_WORKER, slow_handler },
		{ T_HOLD, RPC_TEST_HOLD, NULL },
	};
	struct rpc_opts o = opts();
	return rpc_test_srv_start(&o, NWORKERS, routes, 3);
}

static struct rpc_client *client_to(uint16_t port, const char *sec, struct rpc_peer **p)
{
	struct rpc_opts o = opts();
	o.timeout_ms = 10000;
	o.max_backoff_ms = 100;
	o.no_local_socket = 1; /* the proxy is TCP; and one transport throughout */
	if (sec) {
		o.secret = (const uint8_t *)sec;
		o.secret_len = strlen(sec);
	}
	return rpc_test_client(&o, port, p);
}

static struct rpc_stats cli_stats(struct rpc_client *c)
{
	struct rpc_stats st;
	rpc_client_stats(c, &st);
	return st;
}

/* ---- racing callers ---- */

#define RACE_THREADS 12
#define RACE_CALLS 400

struct racer {
	struct rpc_peer *p;
	int id;
	int ncalls;
	uint32_t timeout_ms;
	int stop_on_err;
	int ok, bad, errors;
	int first_err;
	atomic_int async_issued, async_done, async_bad, async_err;
};

struct tag {
	struct racer *r;
	uint8_t want[32];
	uint32_t len;
	atomic_int calls; /* done() runs: must end at 1 */
};

static void async_done(void *arg, const struct rpc_result *res)
{
	struct tag *t = arg;
	if (atomic_fetch_add(&t->calls, 1) != 0)
		atomic_fetch_add(&t->r->async_bad, 1); /* a second completion */
	if (res->status)
		atomic_fetch_add(&t->r->async_err, 1);
	else if (res->payload_len != t->len || memcmp(res->payload, t->want, t->len))
		atomic_fetch_add(&t->r->async_bad, 1);
	atomic_fetch_add(&t->r->async_done, 1);
	/* Not freed: a second done() would then be a use after free that
	 * ASan names; the test frees the tags at the end. */
}

struct tag_list {
	pthread_mutex_t mu;
	struct tag **v;
	size_t n, cap;
};
static struct tag_list tags = { PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0 };

static struct tag *tag_new(struct racer *r)
{
	struct tag *t = calloc(1, sizeof(*t));
	t->r = r;
	pthread_mutex_lock(&tags.mu);
	if (tags.n == tags.cap) {
		tags.cap = tags.cap ? tags.cap * 2 : 256;
		tags.v = realloc(tags.v, tags.cap * sizeof(*tags.v));
	}
	tags.v[tags.n++] = t;
	pthread_mutex_unlock(&tags.mu);
	return t;
}

static void tags_free(void)
{
	for (size_t i = 0; i < tags.n; i++) {
		assert_true(atomic_load(&tags.v[i]->calls) <= 1);
		free(tags.v[i]);
	}
	free(tags.v);
	tags.v = NULL;
	tags.n = tags.cap = 0;
}

static uint32_t fill(uint8_t *b, int id, int i)
{
	uint32_t len = 8 + (uint32_t)((id * 5 + i * 3) % 24);
	for (uint32_t k = 0; k < len; k++)
		b[k] = (uint8_t)(id * 131 + i * 17 + k);
	b[1] = (uint8_t)id;
	b[2] = (uint8_t)i;
	b[3] = (uint8_t)(i >> 8);
	return len;
}

/* Blocking calls (loop-answered and worker-answered, so replies pass each
 * other) with an async call every third; type T_HOLD when the racer's
 * timeout is set. */
static void *race_main(void *arg)
{
	struct racer *r = arg;
	struct buf resp = BUF_INIT;
	for (int i = 0; i < r->ncalls; i++) {
		uint8_t pl[32];
		uint32_t len = fill(pl, r->id, i);
		uint16_t type = r->timeout_ms ? T_HOLD : (i + r->id) % 2 ? T_SLOW : T_ECHO;
		if (i % 3 == 2 && !r->timeout_ms) {
			struct tag *t = tag_new(r);
			t->len = len;
			memcpy(t->want, pl, len);
			struct rpc_call call = { .type = type, .payload = pl, .payload_len = len,
						 .done = async_done, .arg = t };
			atomic_fetch_add(&r->async_issued, 1);
			if (rpc_call_async(r->p, &call)) {
				atomic_fetch_sub(&r->async_issued, 1);
				r->errors++;
			}
			continue;
		}
		struct rpc_call call = { .type = type, .payload = pl, .payload_len = len,
					 .timeout_ms = r->timeout_ms };
		int rc = rpc_call(r->p, &call, &resp, NULL);
		if (rc) {
			if (!r->first_err)
				r->first_err = rc;
			r->errors++;
			if (r->stop_on_err)
				break;
		} else if (resp.len != len || memcmp(resp.data, pl, len)) {
			r->bad++;
		} else {
			r->ok++;
		}
	}
	buf_fini(&resp);
	return NULL;
}

/* Waits (bounded) until every racer's async calls completed. */
static void wait_async(struct racer *rs, int n)
{
	uint64_t t0 = clock_mono_ns();
	for (int i = 0; i < n; i++)
		while (atomic_load(&rs[i].async_done) != atomic_load(&rs[i].async_issued) &&
		       clock_mono_ns() - t0 < 20000000000ull)
			clock_sleep_ms(5);
}

/* N racers on P: the even ones make EVEN_CALLS calls, the odd ones
 * ODD_CALLS held calls of ODD_TIMEOUT_MS each (0: the same calls as the
 * even ones). */
static void racers_init(struct racer *rs, int n, struct rpc_peer *p, int even_calls, int odd_calls,
                        int odd_timeout_ms)
{
	memset(rs, 0, (size_t)n * sizeof(*rs));
	for (int i = 0; i < n; i++) {
		rs[i].p = p;
		rs[i].id = i;
		rs[i].ncalls = i % 2 ? odd_calls : even_calls;
		rs[i].timeout_ms = i % 2 ? odd_timeout_ms : 0;
	}
}

static void run_racers(struct racer *rs, int n, pthread_t *th)
{
	for (int i = 0; i < n; i++)
		assert_int_equal(pthread_create(&th[i], NULL, race_main, &rs[i]), 0);
}

/* Joins the racers' threads and waits for their async calls. */
static void join_racers(struct racer *rs, int n, pthread_t *th)
{
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	wait_async(rs, n);
}

static void test_race(void **state)
{
	struct rpc_test_srv *s = srv_start();
	struct rpc_peer *p;
	struct rpc_client *cl = client_to(s->port, NULL, &p);
	struct racer rs[RACE_THREADS];
	pthread_t th[RACE_THREADS];
	racers_init(rs, RACE_THREADS, p, RACE_CALLS, RACE_CALLS, 0);
	run_racers(rs, RACE_THREADS, th);
	join_racers(rs, RACE_THREADS, th);
	/* A late second completion would show up here. */
	clock_sleep_ms(50);
	for (int i = 0; i < RACE_THREADS; i++) {
		assert_int_equal(rs[i].errors, 0);
		assert_int_equal(rs[i].bad, 0);
		assert_int_equal(atomic_load(&rs[i].async_done), atomic_load(&rs[i].async_issued));
		assert_int_equal(atomic_load(&rs[i].async_bad), 0);
		assert_int_equal(atomic_load(&rs[i].async_err), 0);
	}
	struct rpc_stats st = cli_stats(cl);
	assert_true(st.replies_by_caller > 0);
	assert_true(st.rx_passes > 0);
	rpc_client_free(cl);
	tags_free();
	rpc_server_stats(s->rpc, &st);
	assert_int_equal(st.accepted, 1);
	assert_int_equal(st.bad_input, 0);
	rpc_test_srv_stop(s);
}

/* ---- the connection is cut while callers wait and read ---- */

static void test_cut(void **state)
{
	struct rpc_test_srv *s = srv_start();
	struct tcp_proxy *px = tcp_proxy_start(s->port);
	assert_non_null(px);
	struct rpc_peer *p;
	struct rpc_client *cl = client_to(tcp_proxy_port(px), NULL, &p);
	struct buf resp = BUF_INIT;
	struct rpc_call hello = { .type = T_ECHO, .payload = "hi", .payload_len = 2 };
	assert_int_equal(rpc_call(p, &hello, &resp, NULL), 0);

	/* Half the callers are held (they wait, one of them reads), the
	 * other half loop on echo calls until the cut fails them. */
	struct racer rs[RACE_THREADS];
	pthread_t th[RACE_THREADS];
	racers_init(rs, RACE_THREADS, p, 100000, 1, 20000);
	for (int i = 0; i < RACE_THREADS; i++)
		rs[i].stop_on_err = 1;
	run_racers(rs, RACE_THREADS, th);
	assert_int_equal(rpc_test_srv_wait_held(s, RACE_THREADS / 2, 10000), RACE_THREADS / 2);
	uint64_t cut_at = clock_mono_ns();
	tcp_proxy_cut(px, true);
	for (int i = 0; i < RACE_THREADS; i++)
		pthread_join(th[i], NULL);
	/* Well before any call's deadline: the cut failed them. */
	assert_true((clock_mono_ns() - cut_at) / 1000000 < 8000);
	wait_async(rs, RACE_THREADS);
	clock_sleep_ms(50);
	for (int i = 0; i < RACE_THREADS; i++) {
		assert_int_equal(rs[i].bad, 0);
		assert_true(rs[i].errors >= 1);
		assert_int_not_equal(rs[i].first_err, -CFS_ETIMEDOUT);
		assert_int_equal(atomic_load(&rs[i].async_done), atomic_load(&rs[i].async_issued));
		assert_int_equal(atomic_load(&rs[i].async_bad), 0);
	}
	rpc_test_srv_release(s, NULL, 0);
	tcp_proxy_cut(px, false);
	assert_int_equal(rpc_test_call_retry(p, &hello, &resp, 200), 0);
	buf_fini(&resp);
	rpc_client_free(cl);
	tags_free();
	tcp_proxy_free(px);
	rpc_test_srv_stop(s);
}

/* ---- held calls time out while others read ---- */

static void test_timeouts(void **state)
{
	struct rpc_test_srv *s = srv_start();
	struct rpc_peer *p;
	struct rpc_client *cl = client_to(s->port, NULL, &p);
	struct racer rs[8];
	pthread_t th[8];
	/* Held callers time out one call after another; the others keep
	 * replies flowing meanwhile. */
	racers_init(rs, 8, p, 300, 4, 150);
	run_racers(rs, 8, th);
	join_racers(rs, 8, th);
	for (int i = 0; i < 8; i++) {
		if (i % 2) {
			assert_int_equal(rs[i].errors, 4);
			assert_int_equal(rs[i].first_err, -CFS_ETIMEDOUT);
		} else {
			assert_int_equal(rs[i].errors, 0);
			assert_int_equal(rs[i].bad, 0);
		}
		assert_int_equal(atomic_load(&rs[i].async_done), atomic_load(&rs[i].async_issued));
		assert_int_equal(atomic_load(&rs[i].async_bad), 0);
	}
	/* The held requests are answered late: the replies are dropped. */
	rpc_test_srv_release(s, NULL, 0);
	struct rpc_call hello = { .type = T_ECHO, .payload = "hi", .payload_len = 2 };
	assert_int_equal(rpc_call(p, &hello, NULL, NULL), 0);
	rpc_client_free(cl);
	tags_free();
	struct rpc_stats st;
	rpc_server_stats(s->rpc, &st);
	assert_int_equal(st.accepted, 1);
	rpc_test_srv_stop(s);
}

/* ---- a wrong secret ---- */

static void test_auth_failure(void **state)
{
	struct rpc_test_srv *s = srv_start();
	struct rpc_peer *p;
	struct rpc_client *cl = client_to(s->port, "not-the-right-secret-0123456789", &p);
	struct racer rs[8];
	pthread_t th[8];
	racers_init(rs, 8, p, 20, 20, 0);
	run_racers(rs, 8, th);
	join_racers(rs, 8, th);
	clock_sleep_ms(50);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(rs[i].ok, 0);
		assert_int_equal(rs[i].errors + atomic_load(&rs[i].async_err), 20);
		assert_int_equal(atomic_load(&rs[i].async_done), atomic_load(&rs[i].async_issued));
		assert_int_equal(atomic_load(&rs[i].async_bad), 0);
	}
	rpc_client_free(cl);
	tags_free();
	rpc_test_srv_stop(s);
}

int main(void)
{
	log_set_level(LOG_LVL_ERR);
	setenv("CFS_RPC_LEADERS", "1", 1);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_race),
		cmocka_unit_test(test_cut),
		cmocka_unit_test(test_timeouts),
		cmocka_unit_test(test_auth_failure),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
