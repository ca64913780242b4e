/* test_mgmtd_store.c - mgmtd's KV persistence and primary election.
 *
 * Runs on mem:// engines: plain, and with injected faults (conflicts,
 * too-old reads, maybe-committed commits) so every store operation goes
 * through kv_run's retries. Covers: the lease codec; election (take,
 * extend, refuse while valid, take over after expiry with a new term);
 * that a deposed primary's commit is refused; a diff -> commit -> load
 * round trip large enough to span several txns; corrupt values and a
 * foreign cluster id refused at load.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/status.h"
#include "kv/kv.h"
#include "mgmtd/mgmtd_store.h"
#include "testenv.h"

static kv_engine *open_mem(const char *url)
{
	kv_engine *e = NULL;
	char err[256];
	assert_int_equal(kv_open(url, &e, err, sizeof(err)), 0);
	return e;
}

static void test_lease_codec(void **state)
{
	struct mgmtd_lease l = {0x1122334455667788ull, 7, 123456789, "127.0.0.1:9000"}, d;
	struct buf b = BUF_INIT;
	assert_int_equal(mgmtd_lease_encode(&l, &b), 0);
	assert_int_equal(mgmtd_lease_decode(b.data, b.len, &d), 0);
	assert_int_equal(d.holder, l.holder);
	assert_int_equal(d.term, 7);
	assert_int_equal(d.expiry_ms, 123456789);
	assert_string_equal(d.addr, "127.0.0.1:9000");
	for (size_t i = 0; i < b.len; i++) { /* every flip but the minor's is caught */
		if (i == 6 || i == 7)
			continue;
		b.data[i] ^= 0x40;
		assert_int_not_equal(mgmtd_lease_decode(b.data, b.len, &d), 0);
		b.data[i] ^= 0x40;
	}
	for (size_t n = 0; n < b.len; n++)
		assert_int_not_equal(mgmtd_lease_decode(b.data, n, &d), 0);
	buf_fini(&b);
}

static void election(const char *url)
{
	kv_engine *e = open_mem(url);
	struct mgmtd_lease l;
	/* A takes the empty lease. */
	assert_int_equal(mgmtd_store_elect(e, 1, "a:1", 1000, 10000, &l), 1);
	assert_int_equal(l.term, 1);
	/* B sees A's valid lease and learns its address. */
	assert_int_equal(mgmtd_store_elect(e, 2, "b:2", 1000, 10500, &l), 0);
	assert_int_equal(l.holder, 1);
	assert_string_equal(l.addr, "a:1");
	/* A extends, keeping its term. */
	assert_int_equal(mgmtd_store_elect(e, 1, "a:1", 1000, 10900, &l), 1);
	assert_int_equal(l.term, 1);
	assert_int_equal(l.expiry_ms, 11900);
	assert_int_equal(mgmtd_store_elect(e, 2, "b:2", 1000, 11899, &l), 0);
	/* A is silent past its expiry: B takes over with a new term. */
	assert_int_equal(mgmtd_store_elect(e, 2, "b:2", 1000, 11900, &l), 1);
	assert_int_equal(l.term, 2);

	/* The deposed primary cannot write; the new one can. */
	struct mgmtd_state s0, s1;
	mgmtd_state_init(&s0);
	mgmtd_state_init(&s1);
	s1.initialised = true;
	s1.ri.version = 5;
	struct mgmtd_batch *b = mgmtd_batch_new();
	assert_int_equal(mgmtd_batch_diff(b, &s0, &s1, "c1"), 0);
	assert_true(mgmtd_batch_len(b) >= 2);
	assert_int_equal(mgmtd_store_commit(e, 1, 1, 11950, b), -CFS_ENOT_PRIMARY);
	/* Right holder, stale term (it lost and regained the lease): refused. */
	assert_int_equal(mgmtd_store_commit(e, 2, 1, 11950, b), -CFS_ENOT_PRIMARY);
	/* Right holder and term, but the lease ran out: refused. */
	assert_int_equal(mgmtd_store_commit(e, 2, 2, 12900, b), -CFS_ENOT_PRIMARY);
	assert_int_equal(mgmtd_store_commit(e, 2, 2, 11950, b), 0);
	mgmtd_batch_free(b);

	/* Release hands the lease over at once. */
	assert_int_equal(mgmtd_store_release(e, 1), 0); /* not A's: no effect */
	assert_int_equal(mgmtd_store_elect(e, 1, "a:1", 1000, 12000, &l), 0);
	assert_int_equal(mgmtd_store_release(e, 2), 0);
	assert_int_equal(mgmtd_store_elect(e, 1, "a:1", 1000, 12000, &l), 1);
	assert_int_equal(l.term, 3);

	struct mgmtd_state got;
	char err[256];
	assert_int_equal(mgmtd_store_load(e, "c1", &got, err, sizeof(err)), 0);
	assert_true(got.initialised);
	assert_int_equal(got.ri.version, 5);
	mgmtd_state_fini(&got);
	mgmtd_state_fini(&s0);
	mgmtd_state_fini(&s1);
	kv_close(e);
}

static void test_election(void **state)
{
	election("mem://");
}
static void test_election_faults(void **state)
{
	for (int seed = 1; seed <= 5; seed++) {
		char url[64];
		snprintf(url, sizeof(url), "mem://?faults=0.2&seed=%d", seed);
		election(url);
	}
}

/* A state with NODES storage nodes of 4 targets each, chains of 3, one
 * table and two targets set offline by an operator. */
static void build_state(struct mgmtd_state *s, uint32_t nodes)
{
	mgmtd_state_init(s);
	s->initialised = true;
	s->ri.version = 42;
	for (uint32_t n = 1; n <= nodes; n++) {
		struct route_node nd = {.id = n,
		                        .type = ROUTE_NODE_STORAGE,
		                        .state = n % 5 ? ROUTE_NODE_ACTIVE : ROUTE_NODE_FAILED};
		snprintf(nd.addr, sizeof(nd.addr), "127.0.0.1:%u", 9000 + n);
		assert_int_equal(route_info_add_node(&s->ri, &nd), 0);
		for (uint32_t k = 1; k <= 4; k++) {
			struct route_target t = {.id = route_target_id(n, k),
			                         .node_id = n,
			                         .local_state = CHAIN_LS_UPTODATE,
			                         .pub_state = CHAIN_PS_OFFLINE,
			                         .capacity = 1u << 30,
			                         .used = n * k};
			assert_int_equal(route_info_add_target(&s->ri, &t), 0);
		}
	}
	/* Chains: target k of nodes (3i+1, 3i+2, 3i+3). */
	uint32_t idx = 0, ids[1024];
	for (uint32_t g = 0; g + 3 <= nodes; g += 3) {
		for (uint32_t k = 1; k <= 4; k++) {
			idx++;
			struct route_chain c = {
			    .id = route_chain_id(1, idx), .version = idx, .n = 3};
			for (uint32_t m = 0; m < 3; m++) {
				uint32_t tid = route_target_id(g + m + 1, k);
				c.m[m] = (struct route_chain_member){
				    tid, m == 2 ? CHAIN_PS_SYNCING : CHAIN_PS_SERVING};
				struct route_target *t =
				    (struct route_target *)route_find_target(&s->ri, tid);
				t->chain_id = c.id;
				t->pub_state = c.m[m].state;
			}
			assert_int_equal(route_info_add_chain(&s->ri, &c), 0);
			ids[idx - 1] = c.id;
		}
	}
	assert_int_equal(route_info_add_table(&s->ri, 1, 1, ids, idx), 0);
	mgmtd_state_set_admin_off(s, route_target_id(1, 1), true);
	mgmtd_state_set_admin_off(s, route_target_id(2, 3), true);
	char err[200];
	assert_int_equal(route_info_check(&s->ri, err, sizeof(err)), 0);
}

static void assert_same(const struct mgmtd_state *a, const struct mgmtd_state *b)
{
	struct buf x = BUF_INIT, y = BUF_INIT;
	assert_int_equal(route_info_encode(&a->ri, &x), 0);
	assert_int_equal(route_info_encode(&b->ri, &y), 0);
	assert_int_equal(x.len, y.len);
	assert_memory_equal(x.data, y.data, x.len);
	assert_int_equal(a->initialised, b->initialised);
	assert_int_equal(a->n_admin_off, b->n_admin_off);
	for (size_t i = 0; i < a->n_admin_off; i++)
		assert_int_equal(a->admin_off[i], b->admin_off[i]);
	buf_fini(&x);
	buf_fini(&y);
}

static void roundtrip(const char *url)
{
	kv_engine *e = open_mem(url);
	struct mgmtd_lease l;
	struct mgmtd_state empty, s, got, s2;
	char err[256];
	assert_int_equal(mgmtd_store_elect(e, 9, "x:1", 60000, 0, &l), 1);

	mgmtd_state_init(&empty);
	build_state(&s, 30); /* 30 nodes + 120 targets + 40 chains: several txns */
	struct mgmtd_batch *b = mgmtd_batch_new();
	assert_int_equal(mgmtd_batch_diff(b, &empty, &s, "c1"), 0);
	assert_true(mgmtd_batch_len(b) > 2 * MGMTD_BATCH_PER_TXN);
	assert_int_equal(mgmtd_store_commit(e, 9, l.term, 0, b), 0);
	mgmtd_batch_free(b);
	assert_int_equal(mgmtd_store_load(e, "c1", &got, err, sizeof(err)), 0);
	assert_same(&s, &got);

	/* A small change writes only what changed, plus the version. */
	mgmtd_state_copy(&s2, &s);
	s2.ri.nodes[0].state = ROUTE_NODE_FAILED;
	s2.ri.version++;
	mgmtd_state_set_admin_off(&s2, route_target_id(1, 1), false);
	b = mgmtd_batch_new();
	assert_int_equal(mgmtd_batch_diff(b, &s, &s2, "c1"), 0);
	assert_int_equal(mgmtd_batch_len(b), 3); /* node, admin clear, version */
	assert_int_equal(mgmtd_store_commit(e, 9, l.term, 0, b), 0);
	mgmtd_batch_free(b);
	mgmtd_state_fini(&got);
	assert_int_equal(mgmtd_store_load(e, "c1", &got, err, sizeof(err)), 0);
	assert_same(&s2, &got);
	/* Nothing changed: nothing to write. */
	b = mgmtd_batch_new();
	assert_int_equal(mgmtd_batch_diff(b, &s2, &got, "c1"), 0);
	assert_int_equal(mgmtd_batch_len(b), 0);
	mgmtd_batch_free(b);

	/* Another cluster id is refused. */
	struct mgmtd_state other;
	assert_int_equal(mgmtd_store_load(e, "c2", &other, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "c1"));

	mgmtd_state_fini(&got);
	mgmtd_state_fini(&s2);
	mgmtd_state_fini(&s);
	mgmtd_state_fini(&empty);
	kv_close(e);
}

static void test_roundtrip(void **state)
{
	roundtrip("mem://");
}
static void test_roundtrip_faults(void **state)
{
	for (int seed = 1; seed <= 3; seed++) {
		char url[64];
		snprintf(url, sizeof(url), "mem://?faults=0.15&seed=%d", seed);
		roundtrip(url);
	}
}

/* A primary that dies while writing a new chain table leaves its chains
 * and targets but not the table record (written after them): the loaded
 * state has no trace of the half-made table; written again, it is whole. */
static void test_partial_table(void **state)
{
	kv_engine *e = open_mem("mem://");
	struct mgmtd_lease l;
	struct mgmtd_state empty, s, half, got;
	char err[256];
	assert_int_equal(mgmtd_store_elect(e, 9, "x:1", 60000, 0, &l), 1);
	mgmtd_state_init(&empty);
	build_state(&s, 30);
	mgmtd_state_copy(&half, &s);
	for (size_t i = 0; i < half.ri.n_tables; i++)
		route_table_fini(&half.ri.tables[i]);
	half.ri.n_tables = 0;
	struct mgmtd_batch *b = mgmtd_batch_new();
	assert_int_equal(mgmtd_batch_diff(b, &empty, &half, "c1"), 0);
	assert_int_equal(mgmtd_store_commit(e, 9, l.term, 0, b), 0);
	mgmtd_batch_free(b);
	assert_int_equal(mgmtd_store_load(e, "c1", &got, err, sizeof(err)), 0);
	assert_int_equal(got.ri.n_tables, 0);
	assert_int_equal(got.ri.n_chains, 0);
	assert_int_equal(got.ri.n_targets, s.ri.n_targets);
	for (size_t i = 0; i < got.ri.n_targets; i++)
		assert_int_equal(got.ri.targets[i].chain_id, 0);
	b = mgmtd_batch_new();
	assert_int_equal(mgmtd_batch_diff(b, &got, &s, "c1"), 0);
	assert_int_equal(mgmtd_store_commit(e, 9, l.term, 0, b), 0);
	mgmtd_batch_free(b);
	mgmtd_state_fini(&got);
	assert_int_equal(mgmtd_store_load(e, "c1", &got, err, sizeof(err)), 0);
	assert_same(&s, &got);
	mgmtd_state_fini(&got);
	mgmtd_state_fini(&half);
	mgmtd_state_fini(&s);
	mgmtd_state_fini(&empty);
	kv_close(e);
}

static int put_raw(kv_txn *t, void *arg)
{
	const char **kv = arg;
	return kv_set(t, kv_mem(kv[0], strlen(kv[0]) + 4), kv_str(kv[1]));
}

static void test_corrupt_refused(void **state)
{
	kv_engine *e = open_mem("mem://");
	struct mgmtd_lease l;
	struct mgmtd_state empty, s, got;
	char err[256];
	assert_int_equal(mgmtd_store_elect(e, 9, "x:1", 60000, 0, &l), 1);
	mgmtd_state_init(&empty);
	build_state(&s, 3);
	struct mgmtd_batch *b = mgmtd_batch_new();
	assert_int_equal(mgmtd_batch_diff(b, &empty, &s, "c1"), 0);
	assert_int_equal(mgmtd_store_commit(e, 9, l.term, 0, b), 0);
	mgmtd_batch_free(b);
	/* Overwrite node 2's record with junk (key "MGMT/node/" + be32 2). */
	char key[32] = "MGMT/node/";
	key[10] = 0, key[11] = 0, key[12] = 0, key[13] = 2;
	const char *kv[2] = {key, "not a record"};
	assert_int_equal(kv_run(e, NULL, put_raw, (void *)kv, NULL), 0);
	assert_int_equal(mgmtd_store_load(e, "c1", &got, err, sizeof(err)), -CFS_ECORRUPT);
	assert_non_null(strstr(err, "node"));
	mgmtd_state_fini(&s);
	mgmtd_state_fini(&empty);
	kv_close(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lease_codec),      cmocka_unit_test(test_election),
	    cmocka_unit_test(test_election_faults),  cmocka_unit_test(test_roundtrip),
	    cmocka_unit_test(test_roundtrip_faults), cmocka_unit_test(test_corrupt_refused),
	    cmocka_unit_test(test_partial_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
