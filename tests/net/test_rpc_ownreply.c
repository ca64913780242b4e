/* test_rpc_ownreply.c - blocked callers reading their own replies
 * (rpc_client.c OWN REPLIES, rpc_conn.c CALLER RECEIVE): a thread in
 * rpc_call reads the socket itself while the loop stays out, and hands
 * the replies of other calls it reads to their owners. The hard cases:
 *   - many threads on one connection, blocking and async calls, small
 *     payloads and bulk replies into caller buffers (plain and scattered):
 *     every caller gets exactly its own reply, byte for byte;
 *   - a call times out while another thread receives on the connection,
 *     and its reply arrives later: the late reply is dropped, the
 *     receiving thread still gets its own;
 *   - calls with bulk replies time out all the time while others receive:
 *     no reply byte lands in a buffer after its call returned;
 *   - the connection is cut while a caller receives a bulk reply: every
 *     call returns an error at once, none hangs, and the client reconnects;
 *   - with a pool of connections and idle_conn_first, a lone caller sends
 *     every call on one connection, and a caller whose first connection
 *     has a call in flight sends on another and reads its own reply.
 * (The server killed with kill -9 mid-reply: test_rpc_integ.c.) */
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

#define T_ECHO 50 /* loop thread: payload back, request bulk back as reply bulk */
#define T_SLOW 51 /* worker: sleeps, then a generated bulk (struct slow_req) */
#define T_HOLD 52 /* held until the test releases it */
#define T_CONN 53 /* loop thread: replies with the number of its connection (u32) */
#define NWORKERS 4

static const char secret[] = "ownreply-test-secret-0123456789";

/* The bytes of a generated bulk: a function of SEED and the offset. */
static uint8_t gen_byte(uint32_t seed, uint64_t i)
{
	return (uint8_t)(seed * 2654435761u + i * 40503u + (i >> 9));
}

static void echo_handler(struct rpc_req *req)
{
	uint32_t len;
	const uint8_t *p = rpc_req_payload(req, &len);
	uint64_t blen = 0;
	void *bulk = rpc_req_take_bulk(req, &blen);
	if (bulk)
		rpc_reply_bulk(req, 0, p, len, bulk, blen, free, bulk);
	else
		rpc_reply(req, 0, p, len);
}

/* T_SLOW payload: u32 delay_ms, u32 bulk_len, u32 seed. */
static void slow_now(struct rpc_req *req)
{
	uint32_t len;
	const uint8_t *p = rpc_req_payload(req, &len);
	if (len != 12) {
		rpc_reply(req, -CFS_EPROTO, NULL, 0);
		return;
	}
	uint32_t delay = wire_load_u32(p), blen = wire_load_u32(p + 4), seed = wire_load_u32(p + 8);
	if (delay)
		clock_sleep_ms(delay);
	uint8_t *b = malloc(blen ? blen : 1);
	for (uint32_t i = 0; i < blen; i++)
		b[i] = gen_byte(seed, i);
	rpc_reply_bulk(req, 0, p, len, b, blen, free, b);
}

/* T_CONN: numbers connections in the order of their first T_CONN. */
static uint32_t conn_seq;

static void conn_handler(struct rpc_req *req)
{
	uintptr_t id = (uintptr_t)rpc_req_conn_data(req);
	if (!id) {
		id = ++conn_seq;
		rpc_req_set_conn_data(req, (void *)id, NULL);
	}
	uint8_t out[4];
	wire_store_u32(out, (uint32_t)id);
	rpc_reply(req, 0, out, sizeof(out));
}

static struct rpc_opts opts(void)
{
	return rpc_test_opts("ownreply", secret);
}

static struct rpc_test_srv *srv_start(void)
{
	static const struct rpc_test_route routes[] = {
		{ T_ECHO, RPC_TEST_LOOP, echo_handler },
		{ T_SLOW, RPC_TEST_WORKER, slow_now },
		{ T_HOLD, RPC_TEST_HOLD, NULL },
		{ T_CONN, RPC_TEST_LOOP, conn_handler },
	};
	struct rpc_opts o = opts();
	return rpc_test_srv_start(&o, NWORKERS, routes, 4);
}

/* A client with one loop thread and one connection to PORT. */
static struct rpc_client *client_to(uint16_t port, int tcp_only, struct rpc_peer **p)
{
	struct rpc_opts o = opts();
	o.timeout_ms = 10000;
	o.max_backoff_ms = 100;
	o.no_local_socket = tcp_only;
	return rpc_test_client(&o, port, p);
}

static uint64_t by_caller(struct rpc_client *c)
{
	struct rpc_stats st;
	rpc_client_stats(c, &st);
	return st.replies_by_caller;
}

static uint32_t rnd(uint32_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 17;
	*x ^= *x << 5;
	return *x;
}

/* ---- many threads, one connection, small and bulk, sync and async ---- */

#define MIX_THREADS 10
#define MIX_CALLS 300
#define MIX_BULK_MAX (256 * 1024)

struct mixer {
	struct rpc_peer *p;
	int id;
	int bad, errors;
	atomic_int async_issued, async_done, async_bad;
};

struct async_tag {
	struct mixer *m;
	uint8_t want[64];
	uint32_t len;
	uint8_t *bulk;       /* sent, and expected back in resp */
	uint8_t *resp;
	uint64_t blen;
};

static void async_check(void *arg, const struct rpc_result *res)
{
	struct async_tag *t = arg;
	if (res->status || res->payload_len != t->len || memcmp(res->payload, t->want, t->len) ||
	    res->bulk_len != t->blen || (t->blen && memcmp(t->resp, t->bulk, t->blen)))
		atomic_fetch_add(&t->m->async_bad, 1);
	atomic_fetch_add(&t->m->async_done, 1);
	free(t->bulk);
	free(t->resp);
	free(t);
}

static void *mix_main(void *arg)
{
	struct mixer *m = arg;
	struct buf resp = BUF_INIT;
	uint32_t r = 0x9e3779b9u * (uint32_t)(m->id + 1);
	uint8_t *bulk = malloc(MIX_BULK_MAX), *rb = malloc(MIX_BULK_MAX);
	for (int i = 0; i < MIX_CALLS; i++) {
		uint8_t pl[64];
		uint32_t len = rpc_test_payload(pl, m->id, i);
		uint32_t kind = rnd(&r) % 6;
		uint64_t blen = kind >= 2 ? 1 + rnd(&r) % MIX_BULK_MAX : 0;
		for (uint64_t k = 0; k < blen; k++)
			bulk[k] = gen_byte((uint32_t)(m->id * 1000 + i), k);
		if (kind == 5) {
			struct async_tag *t = calloc(1, sizeof(*t));
			t->m = m;
			t->len = len;
			memcpy(t->want, pl, len);
			t->blen = blen;
			t->bulk = malloc(blen);
			t->resp = malloc(blen);
			memcpy(t->bulk, bulk, blen);
			struct rpc_call call = { .type = T_ECHO, .payload = pl, .payload_len = len,
						 .bulk = t->bulk, .bulk_len = blen,
						 .resp_bulk = t->resp, .resp_bulk_cap = blen,
						 .done = async_check, .arg = t };
			atomic_fetch_add(&m->async_issued, 1);
			if (rpc_call_async(m->p, &call)) {
				m->errors++;
				atomic_fetch_sub(&m->async_issued, 1);
				free(t->bulk);
				free(t->resp);
				free(t);
			}
			continue;
		}
		memset(rb, 0, blen);
		struct rpc_call call = { .type = T_ECHO, .payload = pl, .payload_len = len,
					 .bulk = bulk, .bulk_len = blen };
		struct iovec iov[3];
		if (kind == 4 && blen >= 3) {
			/* Scattered over three uneven segments. */
			uint64_t a = blen / 5, b = blen / 2;
			iov[0] = (struct iovec){ rb, a };
			iov[1] = (struct iovec){ rb + a, b };
			iov[2] = (struct iovec){ rb + a + b, blen - a - b };
			call.resp_iov = iov;
			call.resp_niov = 3;
		} else {
			call.resp_bulk = rb;
			call.resp_bulk_cap = MIX_BULK_MAX;
		}
		uint64_t got = 0;
		int rc = rpc_call(m->p, &call, &resp, &got);
		if (rc)
			m->errors++;
		else if (resp.len != len || memcmp(resp.data, pl, len) || got != blen ||
			 memcmp(rb, bulk, blen))
			m->bad++;
	}
	free(bulk);
	free(rb);
	buf_fini(&resp);
	return NULL;
}

static void test_mixed_small_and_bulk(void **state)
{
	struct rpc_test_srv *s = srv_start();
	for (int tcp = 0; tcp < 2; tcp++) {
		struct rpc_peer *p;
		struct rpc_client *cl = client_to(s->port, tcp, &p);
		struct mixer *ms = calloc(MIX_THREADS, sizeof(*ms));
		pthread_t th[MIX_THREADS];
		for (int i = 0; i < MIX_THREADS; i++) {
			ms[i].p = p;
			ms[i].id = i;
			assert_int_equal(pthread_create(&th[i], NULL, mix_main, &ms[i]), 0);
		}
		for (int i = 0; i < MIX_THREADS; i++)
			pthread_join(th[i], NULL);
		uint64_t t0 = clock_mono_ns();
		for (int i = 0; i < MIX_THREADS; i++)
			while (atomic_load(&ms[i].async_done) != atomic_load(&ms[i].async_issued) &&
			       clock_mono_ns() - t0 < 20000000000ull)
				clock_sleep_ms(5);
		for (int i = 0; i < MIX_THREADS; i++) {
			assert_int_equal(ms[i].errors, 0);
			assert_int_equal(ms[i].bad, 0);
			assert_int_equal(atomic_load(&ms[i].async_done), atomic_load(&ms[i].async_issued));
			assert_int_equal(atomic_load(&ms[i].async_bad), 0);
		}
		/* The callers did read replies themselves. */
		assert_true(by_caller(cl) > 0);
		rpc_client_free(cl);
		free(ms);
	}
	struct rpc_stats st;
	rpc_server_stats(s->rpc, &st);
	assert_int_equal(st.accepted, 2); /* one connection per client */
	assert_int_equal(st.bad_input, 0);
	rpc_test_srv_stop(s);
}

/* ---- a call times out while another thread receives ---- */

struct held_call {
	struct rpc_peer *p;
	const char *tag;
	uint32_t timeout_ms;
	int rc;
	struct buf resp;
	uint64_t ms;
};

static void *held_main(void *arg)
{
	struct held_call *h = arg;
	struct rpc_call call = { .type = T_HOLD, .timeout_ms = h->timeout_ms, .payload = h->tag,
				 .payload_len = (uint32_t)strlen(h->tag) };
	uint64_t t0 = clock_mono_ns();
	h->rc = rpc_call(h->p, &call, &h->resp, NULL);
	h->ms = (clock_mono_ns() - t0) / 1000000;
	return NULL;
}

static void test_timeout_while_other_receives(void **state)
{
	struct rpc_test_srv *s = srv_start();
	struct rpc_peer *p;
	struct rpc_client *cl = client_to(s->port, 0, &p);
	struct rpc_call ok = { .type = T_ECHO, .payload = "warm", .payload_len = 4 };
	assert_int_equal(rpc_call(p, &ok, NULL, NULL), 0);

	/* A is alone on the connection: it sends its request itself and
	 * becomes the receiver, waiting in poll(). */
	struct held_call a = { .p = p, .tag = "reader-a", .timeout_ms = 20000, .resp = BUF_INIT };
	struct held_call b = { .p = p, .tag = "timer-b", .timeout_ms = 100, .resp = BUF_INIT };
	pthread_t ta, tb;
	assert_int_equal(pthread_create(&ta, NULL, held_main, &a), 0);
	assert_int_equal(rpc_test_srv_wait_held(s, 1, 10000), 1);
	clock_sleep_ms(20);
	/* B's deadline passes while A receives: B fails on time. */
	assert_int_equal(pthread_create(&tb, NULL, held_main, &b), 0);
	pthread_join(tb, NULL);
	assert_int_equal(b.rc, -CFS_ETIMEDOUT);
	assert_true(b.ms >= 90 && b.ms < 3000);
	/* B's request was sent; the server's loop may read it only after
	 * B's deadline fired (a loaded host). */
	assert_int_equal(rpc_test_srv_wait_held(s, 2, 10000), 2);
	uint64_t before = by_caller(cl);
	/* Both replies now arrive; A reads them: B's is dropped (its caller
	 * is gone), A gets exactly its own. */
	rpc_test_srv_release(s, NULL, 0);
	pthread_join(ta, NULL);
	assert_int_equal(a.rc, 0);
	assert_int_equal(a.resp.len, 8);
	assert_memory_equal(a.resp.data, "reader-a", 8);
	assert_true(by_caller(cl) > before);
	/* The connection is still sound. */
	for (int i = 0; i < 20; i++) {
		struct buf r = BUF_INIT;
		char tag[16];
		snprintf(tag, sizeof(tag), "after-%d", i);
		struct rpc_call c = { .type = T_ECHO, .payload = tag, .payload_len = (uint32_t)strlen(tag) };
		assert_int_equal(rpc_call(p, &c, &r, NULL), 0);
		assert_int_equal(r.len, strlen(tag));
		assert_memory_equal(r.data, tag, r.len);
		buf_fini(&r);
	}
	struct rpc_stats st;
	rpc_server_stats(s->rpc, &st);
	assert_int_equal(st.accepted, 1);
	buf_fini(&a.resp);
	buf_fini(&b.resp);
	rpc_client_free(cl);
	rpc_test_srv_stop(s);
}

/* ---- late bulk replies never land after their call returned ---- */

#define LATE_THREADS 6
#define LATE_CALLS 40
#define LATE_BULK_MAX (512 * 1024)
#define CANARY 0xA5

struct late_caller {
	struct rpc_peer *p;
	int id;
	int ok, timeouts, other, bad;
	uint8_t *kept[LATE_CALLS]; /* buffers of timed-out calls, canary-filled */
	uint64_t kept_len[LATE_CALLS];
};

static void *late_main(void *arg)
{
	struct late_caller *lc = arg;
	uint32_t r = 0x12345u * (uint32_t)(lc->id + 7);
	for (int i = 0; i < LATE_CALLS; i++) {
		uint32_t delay = (uint32_t[]){ 0, 0, 5, 60, 120 }[rnd(&r) % 5];
		uint32_t blen = 1 + rnd(&r) % LATE_BULK_MAX;
		uint32_t seed = (uint32_t)(lc->id * 100000 + i);
		uint8_t pl[12];
		wire_store_u32(pl, delay);
		wire_store_u32(pl + 4, blen);
		wire_store_u32(pl + 8, seed);
		uint8_t *buf = malloc(blen);
		memset(buf, 0, blen);
		/* 40 ms: the 60 and 120 ms ones always time out (their bulk
		 * arrives late), the 5 ms ones now and then in mid-bulk. The
		 * undelayed ones get a deadline no host misses: with 40 ms, a
		 * CI-like load (ASan, ~19) timed out all 240 calls once, and
		 * no call succeeding says nothing about the code. */
		uint32_t tmo = delay ? 40 : 20000;
		struct rpc_call call = { .type = T_SLOW, .timeout_ms = tmo, .payload = pl,
					 .payload_len = 12, .resp_bulk = buf, .resp_bulk_cap = blen };
		uint64_t got = 0;
		int rc = rpc_call(lc->p, &call, NULL, &got);
		if (!rc) {
			lc->ok++;
			int same = got == blen;
			for (uint32_t k = 0; same && k < blen; k++)
				same = buf[k] == gen_byte(seed, k);
			lc->bad += !same;
			free(buf);
		} else if (rc == -CFS_ETIMEDOUT) {
			lc->timeouts++;
			memset(buf, CANARY, blen);
			lc->kept[i] = buf;
			lc->kept_len[i] = blen;
		} else {
			lc->other++;
			free(buf);
		}
	}
	return NULL;
}

static void test_late_bulk_after_timeout(void **state)
{
	struct rpc_test_srv *s = srv_start();
	struct rpc_peer *p;
	struct rpc_client *cl = client_to(s->port, 0, &p);
	struct late_caller *lc = calloc(LATE_THREADS, sizeof(*lc));
	pthread_t th[LATE_THREADS];
	for (int i = 0; i < LATE_THREADS; i++) {
		lc[i].p = p;
		lc[i].id = i;
		assert_int_equal(pthread_create(&th[i], NULL, late_main, &lc[i]), 0);
	}
	for (int i = 0; i < LATE_THREADS; i++)
		pthread_join(th[i], NULL);
	/* Let every late reply arrive (and be dropped), with calls still
	 * going so that a caller is receiving meanwhile. */
	for (int i = 0; i < 40; i++) {
		struct rpc_call ok = { .type = T_ECHO, .payload = "tick", .payload_len = 4 };
		assert_int_equal(rpc_call(p, &ok, NULL, NULL), 0);
		clock_sleep_ms(10);
	}
	int timeouts = 0, oks = 0;
	for (int i = 0; i < LATE_THREADS; i++) {
		assert_int_equal(lc[i].other, 0);
		assert_int_equal(lc[i].bad, 0);
		timeouts += lc[i].timeouts;
		oks += lc[i].ok;
		for (int k = 0; k < LATE_CALLS; k++) {
			if (!lc[i].kept[k])
				continue;
			for (uint64_t j = 0; j < lc[i].kept_len[k]; j++)
				if (lc[i].kept[k][j] != CANARY)
					fail_msg("thread %d call %d: byte %llu written after the call "
						 "timed out", i, k, (unsigned long long)j);
			free(lc[i].kept[k]);
		}
	}
	/* Both outcomes happened: the undelayed calls succeed (20 s), the
	 * 60 and 120 ms ones time out (40 ms). */
	assert_true(timeouts > 0);
	assert_true(oks > 0);
	struct rpc_stats st;
	rpc_server_stats(s->rpc, &st);
	assert_int_equal(st.accepted, 1);
	rpc_client_free(cl);
	rpc_test_srv_stop(s);
	free(lc);
}

/* ---- the connection is cut while a caller receives a bulk ---- */

#define CUT_THREADS 3

struct cutter {
	struct rpc_peer *p;
	int id;
	atomic_int stop;
	int ok, bad;
	int first_err;
	uint64_t err_at;  /* monotonic ns of the first error */
};

static void *cut_main(void *arg)
{
	struct cutter *c = arg;
	/* Thread 0 streams 4 MiB replies, alone on the connection most of
	 * the time, so it receives them itself; the others make small calls
	 * whose replies it reads for them. */
	uint32_t blen = c->id ? 0 : 4u << 20;
	uint8_t *buf = malloc(blen ? blen : 1);
	for (int i = 0; !atomic_load(&c->stop); i++) {
		uint32_t seed = (uint32_t)(c->id * 1000000 + i);
		uint8_t pl[12];
		wire_store_u32(pl, 0);
		wire_store_u32(pl + 4, blen);
		wire_store_u32(pl + 8, seed);
		struct rpc_call call = { .type = T_SLOW, .timeout_ms = 20000, .payload = pl,
					 .payload_len = 12, .resp_bulk = buf, .resp_bulk_cap = blen };
		uint64_t got = 0;
		int rc = rpc_call(c->p, &call, NULL, &got);
		if (c->id)
			clock_sleep_ms(2);
		if (rc) {
			if (!c->first_err) {
				c->first_err = rc;
				c->err_at = clock_mono_ns();
			}
			break;
		}
		int same = got == blen;
		for (uint32_t k = 0; same && k < blen; k += 4093)
			same = buf[k] == gen_byte(seed, k);
		c->ok++;
		c->bad += !same;
	}
	free(buf);
	return NULL;
}

static void test_cut_mid_bulk(void **state)
{
	struct rpc_test_srv *s = srv_start();
	struct tcp_proxy *px = tcp_proxy_start(s->port);
	assert_non_null(px);
	struct rpc_peer *p;
	/* TCP only: the proxy is a TCP relay. */
	struct rpc_client *cl = client_to(tcp_proxy_port(px), 1, &p);
	struct cutter cs[CUT_THREADS];
	pthread_t th[CUT_THREADS];
	memset(cs, 0, sizeof(cs));
	for (int i = 0; i < CUT_THREADS; i++) {
		cs[i].p = p;
		cs[i].id = i;
		assert_int_equal(pthread_create(&th[i], NULL, cut_main, &cs[i]), 0);
	}
	/* 4 MiB replies stream back to back: a cut likely lands inside one. */
	uint64_t t0 = clock_mono_ns();
	while (by_caller(cl) < 8 && clock_mono_ns() - t0 < 10000000000ull)
		clock_sleep_ms(5);
	assert_true(by_caller(cl) >= 8);
	uint64_t cut_at = clock_mono_ns();
	tcp_proxy_cut(px, true);
	/* Thread 0 runs until its call fails: the cut reaches it whether it
	 * was receiving or between two calls. */
	for (int i = 1; i < CUT_THREADS; i++)
		atomic_store(&cs[i].stop, 1);
	for (int i = 0; i < CUT_THREADS; i++)
		pthread_join(th[i], NULL);
	/* Every thread that was in a call got an error promptly (a thread
	 * between calls may have seen its stop flag first). */
	for (int i = 0; i < CUT_THREADS; i++) {
		assert_int_equal(cs[i].bad, 0);
		if (cs[i].first_err) {
			assert_true(cs[i].first_err == -CFS_ECLOSED || cs[i].first_err == -ECONNREFUSED ||
				    cs[i].first_err == -ECONNRESET);
			assert_true((cs[i].err_at - cut_at) / 1000000 < 3000);
		}
	}
	assert_int_not_equal(cs[0].first_err, 0);
	assert_true((clock_mono_ns() - cut_at) / 1000000 < 5000);
	tcp_proxy_cut(px, false);
	struct rpc_call ok = { .type = T_ECHO, .payload = "back", .payload_len = 4 };
	assert_int_equal(rpc_test_call_retry(p, &ok, NULL, 100), 0);
	rpc_client_free(cl);
	tcp_proxy_free(px);
	rpc_test_srv_stop(s);
}

/* ---- a pool of connections, idle_conn_first ---- */

#define POOL 4

static struct rpc_client *pool_client(uint16_t port, int idle_first, struct rpc_peer **p)
{
	struct rpc_opts o = opts();
	struct rpc_client *c;
	char addr[64], err[128];
	o.timeout_ms = 10000;
	o.conns_per_peer = POOL;
	o.idle_conn_first = idle_first;
	assert_int_equal(rpc_client_new(&o, &c), 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	assert_int_equal(rpc_client_peer(c, addr, p, err, sizeof(err)), 0);
	return c;
}

/* The server's number of the connection a T_CONN call went on. */
static uint32_t conn_of_call(struct rpc_peer *p)
{
	struct buf r = BUF_INIT;
	struct rpc_call c = { .type = T_CONN };
	assert_int_equal(rpc_call(p, &c, &r, NULL), 0);
	assert_int_equal(r.len, 4);
	uint32_t id = wire_load_u32(r.data);
	buf_fini(&r);
	return id;
}

/* Calls one after another until every connection of the pool is up and
 * may take direct sends (the round robin of the posted path visits each). */
static void pool_warm(struct rpc_peer *p)
{
	for (int i = 0; i < 8 * POOL; i++)
		(void)conn_of_call(p);
}

/* Makes N calls in a row; returns the connection most of them went on
 * and stores how many did in *TOP (and the mask of all used in *MASK).
 *
 * Why "most" and not "all": a call looks for an idle connection with a
 * trylock on its slot, and skips the slot when the loop thread holds that
 * lock for a moment (freeing the previous call's entry, a sweep tick) or
 * has not yet returned the entry to the table; the call then takes the
 * round-robin connection as the option's contract allows. Under ASan on
 * a loaded CI host a run of 40 calls met that window. Round robin
 * alone puts N / POOL calls on each connection, so a floor of 3/4 of N
 * on one still fails when the option does nothing. */
static uint32_t conns_of_calls(struct rpc_peer *p, int n, int *top, uint32_t *mask)
{
	int count[32] = { 0 };
	uint32_t best = 0;
	*mask = 0;
	for (int i = 0; i < n; i++) {
		uint32_t id = conn_of_call(p);
		assert_true(id >= 1 && id <= 31);
		*mask |= 1u << id;
		if (++count[id] > count[best])
			best = id;
	}
	*top = count[best];
	return best;
}

static int bits(uint32_t m)
{
	return __builtin_popcount(m);
}

static void test_idle_conn_first_lone_caller(void **state)
{
	struct rpc_test_srv *s = srv_start();
	struct rpc_peer *p;
	/* without it, the round robin spreads the calls */
	struct rpc_client *cl = pool_client(s->port, 0, &p);
	pool_warm(p);
	int top;
	uint32_t mask;
	(void)conns_of_calls(p, 40, &top, &mask);
	assert_true(bits(mask) > 1);
	assert_true(top < 30);
	rpc_client_free(cl);
	/* with it, a lone caller stays on the first connection, reading its
	 * own replies */
	cl = pool_client(s->port, 1, &p);
	pool_warm(p);
	uint64_t own0 = by_caller(cl);
	(void)conns_of_calls(p, 40, &top, &mask);
	assert_true(top >= 30);
	assert_true(by_caller(cl) - own0 >= 20);
	rpc_client_free(cl);
	rpc_test_srv_stop(s);
}

struct holder {
	struct rpc_peer *p;
	int rc;
	struct buf r;
};

static void *hold_main(void *arg)
{
	struct holder *h = arg;
	struct rpc_call c = { .type = T_HOLD, .payload = "held", .payload_len = 4 };
	h->rc = rpc_call(h->p, &c, &h->r, NULL);
	return NULL;
}

static void test_idle_conn_first_busy_conn(void **state)
{
	struct rpc_test_srv *s = srv_start();
	struct rpc_peer *p;
	struct rpc_client *cl = pool_client(s->port, 1, &p);
	pool_warm(p);
	int top;
	uint32_t mask;
	uint32_t first = conns_of_calls(p, 1, &top, &mask);
	/* a call held on the first connection */
	struct holder h = { .p = p, .r = BUF_INIT };
	pthread_t th;
	assert_int_equal(pthread_create(&th, NULL, hold_main, &h), 0);
	assert_int_equal(rpc_test_srv_wait_held(s, 1, 10000), 1);
	/* this thread's calls meanwhile: one other connection, own replies */
	uint64_t own0 = by_caller(cl);
	uint32_t other = conns_of_calls(p, 40, &top, &mask);
	assert_true(top >= 30);
	assert_int_not_equal(other, first);
	/* own replies: the loop may hold a connection's receive side at the
	 * first call (it read there last), not more */
	assert_true(by_caller(cl) - own0 >= 20);
	rpc_test_srv_release(s, NULL, 0);
	pthread_join(th, NULL);
	assert_int_equal(h.rc, 0);
	assert_int_equal(h.r.len, 4);
	assert_memory_equal(h.r.data, "held", 4);
	buf_fini(&h.r);
	/* the first connection is idle again: back to it */
	assert_int_equal(conns_of_calls(p, 20, &top, &mask), first);
	assert_true(top >= 15);
	rpc_client_free(cl);
	rpc_test_srv_stop(s);
}

int main(void)
{
	log_set_level(LOG_LVL_ERR);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mixed_small_and_bulk),
		cmocka_unit_test(test_timeout_while_other_receives),
		cmocka_unit_test(test_late_bulk_after_timeout),
		cmocka_unit_test(test_cut_mid_bulk),
		cmocka_unit_test(test_idle_conn_first_lone_caller),
		cmocka_unit_test(test_idle_conn_first_busy_conn),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
