/* test_etcd_fault.c - the etcd backend keeps committing through member
 * failures and loses nothing it acknowledged.
 *
 * A 3-member cluster; 4 threads run a stream of idempotent txns through
 * kv_run (idempotent = 1, so -CFS_EMAYBE is retried). Each txn, for thread
 * w and sequence s: if marker m/w/s exists, do nothing (an earlier attempt
 * that reported "maybe" did apply); else read counter c/w, write c/w + 1,
 * the marker and an insert i/w/s. While the stream runs the test kill -9s
 * the leader, waits for commits to continue through the two survivors,
 * restarts it, then does the same to a follower, and finally kill -9s all
 * three members and restarts them (a full-cluster crash).
 *
 * Then, for every thread: each acknowledged s has its marker and insert;
 * the counter equals the number of markers and of inserts (so no increment
 * was applied twice, maybe-committed retries included). Everything is
 * bounded by counts and deadlines; members are stopped by pid.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/clock.h"
#include "common/status.h"
#include "etcd_cluster.h"
#include "kv/kv.h"
#include "testenv.h"

#define NW 4
#define MAXSEQ 4000

struct worker {
	kv_engine *e;
	int id;
	pthread_t tid;
	uint8_t acked[MAXSEQ]; /* acked[s] = 1 when kv_run returned 0 */
	int nacked, failed;
	_Atomic int redo;      /* attempts that found their own marker */
	int last_err;
};

static _Atomic int stop_flag;
static _Atomic int total_acked;

struct body_arg {
	struct worker *w;
	int seq;
};

static int64_t le64(struct kv_slice v)
{
	uint64_t x = 0;
	for (size_t i = 0; i < v.n && i < 8; i++)
		x |= (uint64_t)((const uint8_t *)v.p)[i] << (8 * i);
	return (int64_t)x;
}

static int body(kv_txn *t, void *arg)
{
	struct body_arg *a = arg;
	char mk[32], ck[16], ik[32];
	uint8_t v8[8];
	struct kv_slice v;
	snprintf(mk, sizeof(mk), "m/%d/%06d", a->w->id, a->seq);
	snprintf(ck, sizeof(ck), "c/%d", a->w->id);
	snprintf(ik, sizeof(ik), "i/%d/%06d", a->w->id, a->seq);
	int rc = kv_get(t, kv_str(mk), 0, &v);
	if (rc < 0)
		return rc;
	if (rc == 1) {
		atomic_fetch_add(&a->w->redo, 1);
		return 0;
	}
	rc = kv_get(t, kv_str(ck), 0, &v);
	if (rc < 0)
		return rc;
	int64_t n = rc ? le64(v) : 0;
	n++;
	for (int i = 0; i < 8; i++)
		v8[i] = (uint8_t)((uint64_t)n >> (8 * i));
	kv_set(t, kv_str(ck), kv_mem(v8, 8));
	kv_set(t, kv_str(mk), kv_str("1"));
	return kv_set(t, kv_str(ik), kv_str("payload"));
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct kv_run_opts o = { .idempotent = 1, .max_retries = 60, .backoff_min_us = 1000,
				 .backoff_max_us = 200000 };
	for (int s = 0; s < MAXSEQ && !atomic_load(&stop_flag); s++) {
		struct body_arg a = { w, s };
		int rc = kv_run(w->e, &o, body, &a, NULL);
		if (rc == 0) {
			w->acked[s] = 1;
			w->nacked++;
			atomic_fetch_add(&total_acked, 1);
		} else {
			w->failed++;
			w->last_err = rc;
		}
	}
	return NULL;
}

/* Waits until N more txns are acknowledged; returns ms taken or -1. */
static int64_t wait_progress(int n, int timeout_ms)
{
	uint64_t t0 = clock_mono_ms();
	int start = atomic_load(&total_acked);
	while (atomic_load(&total_acked) < start + n) {
		if (clock_mono_ms() - t0 > (uint64_t)timeout_ms)
			return -1;
		clock_sleep_ms(10);
	}
	return (int64_t)(clock_mono_ms() - t0);
}

static int count_range(kv_txn *t, const char *b, const char *e)
{
	struct kv_slice bs = kv_str(b), es = kv_str(e);
	int n = 0;
	for (;;) {
		struct kv_range r;
		assert_int_equal(kv_get_range(t, bs, es, 1000, 1, 0, &r), 0);
		n += r.n;
		if (!r.has_more)
			return n;
		assert_int_equal(kv_range_continue(t, &r, 0, &bs, &es), 0);
	}
}

static void verify(kv_engine *e, struct worker *ws)
{
	for (int w = 0; w < NW; w++) {
		kv_txn *t;
		char b[16], end[16], ck[16];
		struct kv_slice v;
		assert_int_equal(kv_begin(e, KV_RDONLY, &t), 0);
		snprintf(ck, sizeof(ck), "c/%d", w);
		int rc = kv_get(t, kv_str(ck), 1, &v);
		assert_int_equal(rc, 1);
		int64_t counter = le64(v);
		snprintf(b, sizeof(b), "m/%d/", w);
		snprintf(end, sizeof(end), "m/%d0", w);
		int markers = count_range(t, b, end);
		snprintf(b, sizeof(b), "i/%d/", w);
		snprintf(end, sizeof(end), "i/%d0", w);
		int inserts = count_range(t, b, end);
		print_message("worker %d: acked %d, failed %d (last %s), maybe-applied retries %d, "
			      "counter %" PRId64 ", markers %d, inserts %d\n",
			      w, ws[w].nacked, ws[w].failed,
			      ws[w].failed ? cfs_strerror(ws[w].last_err) : "-",
			      atomic_load(&ws[w].redo), counter, markers, inserts);
		assert_int_equal(counter, markers);
		assert_int_equal(inserts, markers);
		assert_true(markers >= ws[w].nacked);
		assert_true(markers <= ws[w].nacked + ws[w].failed);
		for (int s = 0; s < MAXSEQ; s++) {
			if (!ws[w].acked[s])
				continue;
			char mk[32];
			snprintf(mk, sizeof(mk), "m/%d/%06d", w, s);
			assert_int_equal(kv_get(t, kv_str(mk), 1, &v), 1);
		}
		kv_txn_free(t);
	}
}

static void test_kill_members_during_stream(void **state)
{
	(void)state;
	struct etcd_cluster *cl = NULL;
	assert_int_equal(etcd_cluster_start(NULL, &cl), 0);
	char url[512], err[256];
	/* The leader goes first in the endpoint list, so the client talks to
	 * it when it dies: requests in flight then end "maybe committed". */
	int leader = etcd_cluster_leader(cl, 10000);
	assert_true(leader >= 0);
	snprintf(url, sizeof(url), "etcd://%s,%s,%s/fault?timeout_ms=3000&op_timeout_ms=20000",
		 etcd_cluster_endpoint(cl, leader), etcd_cluster_endpoint(cl, (leader + 1) % 3),
		 etcd_cluster_endpoint(cl, (leader + 2) % 3));
	kv_engine *e = NULL;
	assert_int_equal(kv_open(url, &e, err, sizeof(err)), 0);

	static struct worker ws[NW];
	for (int i = 0; i < NW; i++) {
		ws[i].e = e;
		ws[i].id = i;
		assert_int_equal(pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]), 0);
	}
	assert_true(wait_progress(30, 20000) >= 0);

	/* the leader */
	assert_int_equal(etcd_cluster_leader(cl, 10000), leader);
	assert_int_equal(etcd_cluster_kill(cl, leader), 0);
	int64_t ms = wait_progress(40, 30000);
	print_message("leader m%d killed: 40 more commits after %" PRId64 " ms\n", leader, ms);
	assert_true(ms >= 0);
	assert_int_equal(etcd_cluster_restart(cl, leader), 0);
	assert_true(etcd_cluster_leader(cl, 20000) >= 0);
	assert_true(wait_progress(20, 20000) >= 0);

	/* a follower */
	int l2 = etcd_cluster_leader(cl, 10000);
	assert_true(l2 >= 0);
	/* a member that has not been killed yet, if the new leader allows */
	int follower = l2 != leader ? 3 - l2 - leader : (l2 + 1) % 3;
	assert_int_equal(etcd_cluster_kill(cl, follower), 0);
	ms = wait_progress(40, 30000);
	print_message("follower m%d killed: 40 more commits after %" PRId64 " ms\n", follower, ms);
	assert_true(ms >= 0);
	assert_int_equal(etcd_cluster_restart(cl, follower), 0);
	assert_true(etcd_cluster_leader(cl, 20000) >= 0);
	assert_true(wait_progress(20, 20000) >= 0);

	atomic_store(&stop_flag, 1);
	for (int i = 0; i < NW; i++)
		pthread_join(ws[i].tid, NULL);

	/* a full-cluster crash: acknowledged commits were fsynced */
	for (int i = 0; i < 3; i++)
		assert_int_equal(etcd_cluster_kill(cl, i), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(etcd_cluster_restart(cl, i), 0);
	assert_true(etcd_cluster_leader(cl, 30000) >= 0);

	verify(e, ws);
	int total = 0;
	for (int i = 0; i < NW; i++)
		total += ws[i].nacked;
	assert_true(total >= 150);
	kv_close(e);
	etcd_cluster_stop(cl);
}

int main(void)
{
	etcd_cluster_require();
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kill_members_during_stream),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
