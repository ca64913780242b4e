/* test_etcd_client.c - the etcd JSON-gateway client against real etcd.
 *
 * One 3-member cluster serves the whole file (started in the group setup):
 * binary keys round-trip, range options, txn compares (range_end MOD
 * included, and the blind spot this backend works around: a deleted key
 * does not fail a range compare), compacted revisions (-CFS_ETOOOLD), the
 * 128-op limit (-CFS_ETOOLARGE, before sending), leases, status/leader,
 * failover when the current member is killed, and fast refusal when a
 * member has lost its quorum. A 1-member cluster with an 8 MiB quota checks
 * that "database space exceeded" is -ENOSPC.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/clock.h"
#include "common/status.h"
#include "etcd_cluster.h"
#include "kv/etcd_client.h"
#include "testenv.h"

static struct etcd_cluster *cl;

static int group_setup(void **state) { return etcd_cluster_group_start(&cl); }

static int group_teardown(void **state) { return etcd_cluster_group_stop(&cl); }

static struct etcdc *client(int op_timeout_ms)
{
	struct etcdc *c = NULL;
	struct etcdc_opts o = { .attempt_timeout_ms = 3000, .op_timeout_ms = op_timeout_ms };
	char err[128];
	assert_int_equal(etcdc_open(etcd_cluster_endpoints(cl), &o, &c, err, sizeof(err)), 0);
	return c;
}

static int64_t put(struct etcdc *c, const void *k, size_t kn, const void *v, size_t vn)
{
	struct etcdc_op op = { .type = ETCDC_OP_PUT, .key = k, .key_len = kn, .val = v,
			       .val_len = vn };
	struct etcdc_txn_res r;
	assert_int_equal(etcdc_txn(c, NULL, 0, &op, 1, NULL, 0, &r), 0);
	assert_true(r.succeeded);
	int64_t rev = r.revision;
	etcdc_txn_res_fini(&r);
	return rev;
}

static void test_open_errors(void **state)
{
	(void)state;
	struct etcdc *c = NULL;
	char err[128] = "";
	assert_int_equal(etcdc_open("", NULL, &c, err, sizeof(err)), -EINVAL);
	assert_int_equal(etcdc_open("127.0.0.1", NULL, &c, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "host:port"));
	assert_int_equal(etcdc_open("127.0.0.1:0", NULL, &c, err, sizeof(err)), -EINVAL);
	assert_int_equal(etcdc_open("https://127.0.0.1:5", NULL, &c, err, sizeof(err)), -EINVAL);
	assert_int_equal(etcdc_open("127.0.0.1:1, http://127.0.0.1:2", NULL, &c, err, sizeof(err)),
			 0);
	assert_int_equal(etcdc_endpoint_count(c), 2);
	assert_string_equal(etcdc_endpoint(c, 1), "127.0.0.1:2");
	etcdc_close(c);
}

static void test_binary_range(void **state)
{
	(void)state;
	struct etcdc *c = client(10000);
	const uint8_t k1[] = { 't', 'b', 0, 0xff, 1 }, k2[] = { 't', 'b', 0, 0xff, 2 },
		      k3[] = { 't', 'b', 1 };
	const uint8_t v1[] = { 0, 1, 2, 0xfe }, end[] = { 't', 'c' };
	int64_t r1 = put(c, k1, sizeof(k1), v1, sizeof(v1));
	put(c, k2, sizeof(k2), "", 0);
	int64_t r3 = put(c, k3, sizeof(k3), "x", 1);
	assert_true(r1 < r3);

	struct etcdc_range_res res;
	struct etcdc_range_req rq = { .key = "tb", .key_len = 2, .end = end, .end_len = 2 };
	assert_int_equal(etcdc_range(c, &rq, &res), 0);
	assert_int_equal(res.n, 3);
	assert_int_equal(res.count, 3);
	assert_true(res.revision >= r3);
	assert_memory_equal(res.kvs[0].key, k1, sizeof(k1));
	assert_int_equal(res.kvs[0].val_len, sizeof(v1));
	assert_memory_equal(res.kvs[0].val, v1, sizeof(v1));
	assert_int_equal(res.kvs[1].val_len, 0);
	assert_int_equal(res.kvs[0].mod_rev, r1);
	etcdc_range_res_fini(&res);

	/* limit + reverse + keys_only */
	rq.limit = 2;
	rq.sort = ETCDC_SORT_DESCEND;
	rq.keys_only = true;
	assert_int_equal(etcdc_range(c, &rq, &res), 0);
	assert_int_equal(res.n, 2);
	assert_true(res.more);
	assert_memory_equal(res.kvs[0].key, k3, sizeof(k3));
	assert_null(res.kvs[0].val);
	etcdc_range_res_fini(&res);

	/* at an older revision only k1 exists */
	struct etcdc_range_req old = { .key = "tb", .key_len = 2, .end = end, .end_len = 2,
				       .revision = r1, .serializable = true };
	assert_int_equal(etcdc_range(c, &old, &res), 0);
	assert_int_equal(res.n, 1);
	etcdc_range_res_fini(&res);
	etcdc_close(c);
}

static void test_txn_compares(void **state)
{
	(void)state;
	struct etcdc *c = client(10000);
	int64_t r = put(c, "tc/a", 4, "1", 1);
	put(c, "tc/b", 4, "1", 1);
	/* range compare: nothing in [tc/, tc0) modified after r+1 */
	int64_t now = put(c, "tc/c", 4, "1", 1);
	struct etcdc_cmp cmp = { .key = "tc/", .key_len = 3, .end = "tc0", .end_len = 3,
				 .target = ETCDC_CMP_MOD, .result = ETCDC_CMP_LESS, .num = now + 1 };
	struct etcdc_op rd = { .type = ETCDC_OP_RANGE, .key = "tc/", .key_len = 3, .end = "tc0",
			       .end_len = 3 };
	struct etcdc_txn_res res;
	assert_int_equal(etcdc_txn(c, &cmp, 1, &rd, 1, NULL, 0, &res), 0);
	assert_true(res.succeeded);
	assert_int_equal(res.nops, 1);
	assert_int_equal(res.ops[0].type, ETCDC_OP_RANGE);
	assert_int_equal(res.ops[0].range.n, 3);
	etcdc_txn_res_fini(&res);

	/* a delete inside the range is invisible to the range compare ... */
	struct etcdc_op del = { .type = ETCDC_OP_DELETE, .key = "tc/b", .key_len = 4 };
	assert_int_equal(etcdc_txn(c, NULL, 0, &del, 1, NULL, 0, &res), 0);
	assert_int_equal(res.ops[0].deleted, 1);
	etcdc_txn_res_fini(&res);
	assert_int_equal(etcdc_txn(c, &cmp, 1, NULL, 0, NULL, 0, &res), 0);
	assert_true(res.succeeded);
	etcdc_txn_res_fini(&res);
	/* ... but a per-key MOD compare sees it (mod becomes 0) */
	struct etcdc_cmp kc = { .key = "tc/b", .key_len = 4, .target = ETCDC_CMP_MOD,
				.result = ETCDC_CMP_EQUAL, .num = r + 1 };
	assert_int_equal(etcdc_txn(c, &kc, 1, NULL, 0, &rd, 1, &res), 0);
	assert_false(res.succeeded);
	assert_int_equal(res.nops, 1); /* the failure branch ran */
	etcdc_txn_res_fini(&res);
	/* an update inside the range fails it */
	put(c, "tc/a", 4, "2", 1);
	assert_int_equal(etcdc_txn(c, &cmp, 1, NULL, 0, NULL, 0, &res), 0);
	assert_false(res.succeeded);
	etcdc_txn_res_fini(&res);
	/* VALUE compare */
	struct etcdc_cmp vc = { .key = "tc/a", .key_len = 4, .target = ETCDC_CMP_VALUE,
				.result = ETCDC_CMP_EQUAL, .value = "2", .value_len = 1 };
	assert_int_equal(etcdc_txn(c, &vc, 1, NULL, 0, NULL, 0, &res), 0);
	assert_true(res.succeeded);
	etcdc_txn_res_fini(&res);
	etcdc_close(c);
}

static void test_limits_and_errors(void **state)
{
	(void)state;
	struct etcdc *c = client(10000);
	static struct etcdc_op ops[129];
	static char keys[129][8];
	for (int i = 0; i < 129; i++) {
		snprintf(keys[i], sizeof(keys[i]), "tl%03d", i);
		ops[i] = (struct etcdc_op){ .type = ETCDC_OP_PUT, .key = keys[i], .key_len = 5,
					    .val = "v", .val_len = 1 };
	}
	struct etcdc_stats s0, s1;
	etcdc_get_stats(c, &s0);
	assert_int_equal(etcdc_txn(c, NULL, 0, ops, 129, NULL, 0, NULL), -CFS_ETOOLARGE);
	etcdc_get_stats(c, &s1);
	assert_int_equal(s1.requests, s0.requests); /* refused before sending */
	assert_int_equal(etcdc_txn(c, NULL, 0, ops, 128, NULL, 0, NULL), 0);
	/* the same key twice: etcd refuses, nothing applied */
	struct etcdc_op dup[2] = { ops[0], ops[0] };
	assert_int_equal(etcdc_txn(c, NULL, 0, dup, 2, NULL, 0, NULL), -EINVAL);

	/* compaction: reads below it are too old */
	int64_t r = put(c, "tk", 2, "1", 1);
	put(c, "tk", 2, "2", 1);
	int64_t r2 = put(c, "tk", 2, "3", 1);
	assert_int_equal(etcdc_compact(c, r2), 0);
	struct etcdc_range_res res;
	struct etcdc_range_req rq = { .key = "tk", .key_len = 2, .revision = r };
	assert_int_equal(etcdc_range(c, &rq, &res), -CFS_ETOOOLD);
	rq.revision = r2;
	assert_int_equal(etcdc_range(c, &rq, &res), 0);
	assert_int_equal(res.n, 1);
	assert_memory_equal(res.kvs[0].val, "3", 1);
	etcdc_range_res_fini(&res);
	etcdc_close(c);
}

static void test_leases(void **state)
{
	(void)state;
	struct etcdc *c = client(10000);
	int64_t id = 0, ttl = 0;
	assert_int_equal(etcdc_lease_grant(c, 30, 0, &id, &ttl), 0);
	assert_true(id > 0);
	assert_int_equal(ttl, 30);
	struct etcdc_op op = { .type = ETCDC_OP_PUT, .key = "tlease", .key_len = 6, .val = "p",
			       .val_len = 1, .lease = id };
	assert_int_equal(etcdc_txn(c, NULL, 0, &op, 1, NULL, 0, NULL), 0);
	assert_int_equal(etcdc_lease_keepalive(c, id, &ttl), 0);
	assert_true(ttl > 0 && ttl <= 30);
	assert_int_equal(etcdc_lease_ttl(c, id, &ttl), 0);
	assert_true(ttl > 0 && ttl <= 30);
	struct etcdc_range_res res;
	struct etcdc_range_req rq = { .key = "tlease", .key_len = 6 };
	assert_int_equal(etcdc_range(c, &rq, &res), 0);
	assert_int_equal(res.n, 1);
	assert_int_equal(res.kvs[0].lease, id);
	etcdc_range_res_fini(&res);
	/* explicit id: a second grant of it is refused */
	assert_int_equal(etcdc_lease_grant(c, 30, id, NULL, NULL), -EEXIST);
	assert_int_equal(etcdc_lease_revoke(c, id), 0);
	assert_int_equal(etcdc_range(c, &rq, &res), 0);
	assert_int_equal(res.n, 0); /* the key went with its lease */
	etcdc_range_res_fini(&res);
	assert_int_equal(etcdc_lease_keepalive(c, id, &ttl), -ENOENT);
	assert_int_equal(etcdc_lease_ttl(c, id, &ttl), -ENOENT);
	assert_int_equal(etcdc_lease_revoke(c, id), -ENOENT);
	/* a short lease expires by itself */
	assert_int_equal(etcdc_lease_grant(c, 1, 0, &id, &ttl), 0);
	uint64_t deadline = clock_mono_ms() + 8000;
	int rc;
	while ((rc = etcdc_lease_ttl(c, id, &ttl)) == 0 && clock_mono_ms() < deadline)
		clock_sleep_ms(100);
	assert_int_equal(rc, -ENOENT);
	etcdc_close(c);
}

/* Kills the member the client talks to (the leader, so an election runs
 * too); reads fail over at once and a write commits through the others.
 * Then kills a second member: the last one has no quorum and refuses
 * quickly ("no leader"), so calls end -CFS_EUNAVAIL within the op timeout. */
static void test_failover(void **state)
{
	(void)state;
	int leader = etcd_cluster_leader(cl, 10000);
	assert_true(leader >= 0);
	struct etcdc *c = NULL;
	char eps[256];
	struct etcdc_opts o = { .attempt_timeout_ms = 3000, .op_timeout_ms = 10000 };
	/* list the leader first so it is the current member */
	snprintf(eps, sizeof(eps), "%s,%s,%s", etcd_cluster_endpoint(cl, leader),
		 etcd_cluster_endpoint(cl, (leader + 1) % 3),
		 etcd_cluster_endpoint(cl, (leader + 2) % 3));
	assert_int_equal(etcdc_open(eps, &o, &c, NULL, 0), 0);
	int64_t rev = put(c, "tf", 2, "1", 1);
	struct etcdc_status st;
	assert_int_equal(etcdc_status(c, 0, &st), 0);
	assert_int_equal(st.leader, st.member_id);

	assert_int_equal(etcd_cluster_kill(cl, leader), 0);
	struct etcdc_range_res res;
	struct etcdc_range_req rq = { .key = "tf", .key_len = 2 };
	uint64_t t0 = clock_mono_ms();
	assert_int_equal(etcdc_range(c, &rq, &res), 0);
	assert_int_equal(res.n, 1);
	etcdc_range_res_fini(&res);
	assert_true(put(c, "tf", 2, "2", 1) > rev);
	print_message("failover read+write took %llu ms\n",
		      (unsigned long long)(clock_mono_ms() - t0));
	struct etcdc_stats s;
	etcdc_get_stats(c, &s);
	assert_true(s.failovers >= 1);
	assert_int_equal(etcdc_status(c, 0, &st), -CFS_EUNAVAIL);

	int l2 = etcd_cluster_leader(cl, 10000);
	print_message("leader %d -> %d\n", leader, l2);
	assert_true(l2 >= 0 && l2 != leader);
	int other = 3 - leader - l2;
	assert_int_equal(etcd_cluster_kill(cl, l2), 0);
	struct etcdc *c1 = NULL;
	struct etcdc_opts o1 = { .attempt_timeout_ms = 3000, .op_timeout_ms = 1500 };
	assert_int_equal(etcdc_open(etcd_cluster_endpoint(cl, other), &o1, &c1, NULL, 0), 0);
	/* The survivor needs an election timeout to notice it lost quorum;
	 * until then it takes a write and the write hangs (-CFS_EMAYBE: a
	 * fixed 2.5 s wait was too short at load 40). Wait until it refuses
	 * (its status, sent with "hasleader", too) or reports no leader. */
	uint64_t tw = clock_mono_ms();
	for (int src; (src = etcdc_status(c1, 0, &st)) != -CFS_EUNAVAIL;) {
		assert_true(src == 0);
		if (st.leader == 0)
			break;
		assert_true(clock_mono_ms() - tw < 30000);
		clock_sleep_ms(100);
	}
	t0 = clock_mono_ms();
	assert_int_equal(etcdc_range(c1, &rq, &res), -CFS_EUNAVAIL);
	/* a write that never left is not "maybe" */
	struct etcdc_op op = { .type = ETCDC_OP_PUT, .key = "tf", .key_len = 2, .val = "3",
			       .val_len = 1 };
	assert_int_equal(etcdc_txn(c1, NULL, 0, &op, 1, NULL, 0, NULL), -CFS_EUNAVAIL);
	assert_true(clock_mono_ms() - t0 < 6000);
	etcdc_close(c1);

	/* bring both back; the cluster heals and the data is there */
	assert_int_equal(etcd_cluster_restart(cl, leader), 0);
	assert_int_equal(etcd_cluster_restart(cl, l2), 0);
	assert_true(etcd_cluster_leader(cl, 20000) >= 0);
	assert_int_equal(etcdc_range(c, &rq, &res), 0);
	assert_int_equal(res.n, 1);
	assert_memory_equal(res.kvs[0].val, "2", 1);
	etcdc_range_res_fini(&res);
	etcdc_close(c);
}

static void test_quota(void **state)
{
	(void)state;
	struct etcd_cluster *q = NULL;
	struct etcd_cluster_opts o = { .members = 1, .quota_bytes = 8 << 20 };
	assert_int_equal(etcd_cluster_start(&o, &q), 0);
	struct etcdc *c = NULL;
	assert_int_equal(etcdc_open(etcd_cluster_endpoints(q), NULL, &c, NULL, 0), 0);
	static char big[1 << 20];
	memset(big, 'q', sizeof(big));
	int rc = 0, i;
	for (i = 0; i < 40 && rc == 0; i++) {
		char k[16];
		snprintf(k, sizeof(k), "q%d", i);
		struct etcdc_op op = { .type = ETCDC_OP_PUT, .key = k, .key_len = strlen(k),
				       .val = big, .val_len = sizeof(big) };
		rc = etcdc_txn(c, NULL, 0, &op, 1, NULL, 0, NULL);
	}
	assert_int_equal(rc, -ENOSPC);
	assert_true(i > 2);
	/* reads still work while the alarm is raised */
	struct etcdc_range_res res;
	struct etcdc_range_req rq = { .key = "q0", .key_len = 2, .keys_only = true };
	assert_int_equal(etcdc_range(c, &rq, &res), 0);
	assert_int_equal(res.n, 1);
	etcdc_range_res_fini(&res);
	etcdc_close(c);
	etcd_cluster_stop(q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_open_errors),
		cmocka_unit_test(test_binary_range),
		cmocka_unit_test(test_txn_compares),
		cmocka_unit_test(test_limits_and_errors),
		cmocka_unit_test(test_leases),
		cmocka_unit_test(test_quota),
		cmocka_unit_test(test_failover),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
