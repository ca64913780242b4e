/* test_chain_table.c - the chain table generator: structure (R distinct
 * nodes per chain, every target in exactly one chain), balance figures
 * within stated bounds for several shapes, determinism, clear errors for
 * impossible shapes, and the `chainfs admin gen-chain-table` command. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "mgmtd/chain_table.h"
#include "mgmtd/routing.h"
#include "testenv.h"

struct shape {
	struct ctab_node nodes[64];
	uint32_t ids[64 * 32];
	struct ctab_params p;
};

static void make_shape(struct shape *s, uint32_t n, const uint32_t *tpn, uint32_t r, uint64_t seed)
{
	uint32_t k = 0;
	for (uint32_t u = 0; u < n; u++) {
		s->nodes[u].node_id = u + 1;
		s->nodes[u].n_targets = tpn[u];
		s->nodes[u].target_ids = &s->ids[k];
		for (uint32_t j = 0; j < tpn[u]; j++)
			s->ids[k++] = route_target_id(u + 1, j + 1);
	}
	s->p = (struct ctab_params){
	    .table_id = 1, .replicas = r, .seed = seed, .n_nodes = n, .nodes = s->nodes};
}

static ctab *gen_even(uint32_t n, uint32_t t, uint32_t r, uint64_t seed)
{
	static struct shape s;
	uint32_t tpn[64];
	for (uint32_t u = 0; u < n; u++)
		tpn[u] = t;
	make_shape(&s, n, tpn, r, seed);
	ctab *tab = NULL;
	char err[256];
	int rc = ctab_generate(&s.p, &tab, err, sizeof(err));
	if (rc)
		fail_msg("%ux%u R=%u: %s", n, t, r, err);
	return tab;
}

/* Every chain: R targets on R distinct nodes, node = target's node; every
 * target of the shape used exactly once. */
static void check_structure(const ctab *t, const struct ctab_node *nodes, uint32_t n)
{
	uint32_t R = ctab_replicas(t), total = 0;
	for (uint32_t u = 0; u < n; u++)
		total += nodes[u].n_targets;
	assert_int_equal(ctab_chains(t) * R, total);
	uint8_t *used = calloc(ROUTE_TARGET_SLOTS * 65, 1);
	for (uint32_t c = 0; c < ctab_chains(t); c++) {
		assert_int_equal(ctab_chain_id(t, c), route_chain_id(1, c + 1));
		const uint32_t *tg = ctab_chain_targets(t, c), *nd = ctab_chain_nodes(t, c);
		for (uint32_t j = 0; j < R; j++) {
			assert_int_equal(route_target_node(tg[j]), nd[j]);
			assert_int_equal(used[tg[j]], 0);
			used[tg[j]] = 1;
			for (uint32_t i = 0; i < j; i++)
				assert_int_not_equal(nd[i], nd[j]);
		}
	}
	for (uint32_t u = 0; u < n; u++)
		for (uint32_t j = 0; j < nodes[u].n_targets; j++)
			assert_int_equal(used[nodes[u].target_ids[j]], 1);
	free(used);
}

/* Generates N x TPN with R replicas for seeds 1..SEEDS and checks the
 * bounds on each; *b gets the figures of seed 1. */
static void check_even(uint32_t n, uint32_t tpn, uint32_t r, uint32_t max_pair_spread,
                       struct ctab_balance *b)
{
	const uint64_t seeds = 12;
	struct shape s;
	uint32_t t[64];
	for (uint32_t u = 0; u < n; u++)
		t[u] = tpn;
	for (uint64_t seed = seeds; seed >= 1; seed--) {
		make_shape(&s, n, t, r, seed);
		ctab *tab = NULL;
		char err[256];
		assert_int_equal(ctab_generate(&s.p, &tab, err, sizeof(err)), 0);
		check_structure(tab, s.nodes, n);
		ctab_get_balance(tab, b);
		ctab_free(tab);
		assert_int_equal(b->chains_per_target_min, 1);
		assert_int_equal(b->chains_per_target_max, 1);
		assert_int_equal(b->chains_per_node_min, tpn);
		assert_int_equal(b->chains_per_node_max, tpn);
		/* Heads: within one of the mean. */
		assert_true(b->heads_per_node_min >= (uint32_t)floor(b->heads_ideal));
		assert_true(b->heads_per_node_max <= (uint32_t)ceil(b->heads_ideal));
		if (r == 1)
			continue;
		if (b->pair_max - b->pair_min > max_pair_spread)
			fail_msg("%ux%u R=%u seed %llu: pairs share %u..%u chains", n, tpn, r,
			         (unsigned long long)seed, b->pair_min, b->pair_max);
		assert_true(b->pair_min <= (uint32_t)floor(b->pair_ideal));
		assert_true(b->pair_max >= (uint32_t)ceil(b->pair_ideal));
		/* A failed node's load reaches as many nodes as possible. */
		assert_int_equal(b->peers_min, b->peers_ideal);
	}
}

static void test_6x5_r3(void **state)
{
	(void)state;
	struct ctab_balance b;
	check_even(6, 5, 3, 0, &b);
	/* A 2-(6,3,2) design: every node pair shares exactly 2 chains, so a
	 * failed node's reads split 1/5 to each of the other five. */
	assert_int_equal(b.chains, 10);
	assert_int_equal(b.pair_min, 2);
	assert_int_equal(b.pair_max, 2);
	assert_int_equal(b.peers_min, 5);
	assert_true(fabs(b.share_max - 0.2) < 1e-9 && fabs(b.share_min - 0.2) < 1e-9);
}

static void test_small_shapes(void **state)
{
	(void)state;
	struct ctab_balance b;
	check_even(3, 2, 3, 0, &b); /* chainfs up: 2 chains over all 3 nodes */
	assert_int_equal(b.chains, 2);
	assert_int_equal(b.pair_min, 2);
	assert_true(fabs(b.share_max - 0.5) < 1e-9);
	check_even(4, 4, 2, 1, &b); /* lambda 4/3: pairs share 1 or 2 chains */
	assert_int_equal(b.chains, 8);
	assert_int_equal(b.heads_per_node_min, 2);
	assert_int_equal(b.heads_per_node_max, 2);
	assert_true(b.share_max <= 0.5 + 1e-9);
	check_even(8, 7, 4, 0, &b); /* a 2-(8,4,3) design exists */
	assert_int_equal(b.pair_min, 3);
	check_even(12, 6, 3, 1, &b);
	check_even(15, 10, 3, 1, &b);
	check_even(20, 6, 2, 1, &b); /* lambda < 1: all peers distinct */
	assert_int_equal(b.pair_max, 1);
	assert_true(fabs(b.share_max - 1.0 / 6) < 1e-9);
	check_even(5, 3, 1, 0, &b); /* R = 1: chains of one target */
	assert_int_equal(b.chains, 15);
	assert_int_equal(b.pair_max, 0);
	assert_int_equal(b.peers_max, 0);
}

static void test_uneven(void **state)
{
	(void)state;
	struct shape s;
	const uint32_t tpn[5] = {3, 3, 2, 2, 2};
	make_shape(&s, 5, tpn, 2, 7);
	ctab *t = NULL;
	char err[256];
	assert_int_equal(ctab_generate(&s.p, &t, err, sizeof(err)), 0);
	check_structure(t, s.nodes, 5);
	ctab_free(t);
}

static void test_deterministic(void **state)
{
	(void)state;
	ctab *a = gen_even(12, 6, 3, 42), *b = gen_even(12, 6, 3, 42), *c = gen_even(12, 6, 3, 43);
	bool differ = false;
	for (uint32_t i = 0; i < ctab_chains(a); i++) {
		assert_memory_equal(ctab_chain_targets(a, i), ctab_chain_targets(b, i), 3 * 4);
		differ |= memcmp(ctab_chain_targets(a, i), ctab_chain_targets(c, i), 3 * 4) != 0;
	}
	assert_true(differ);
	ctab_free(a);
	ctab_free(b);
	ctab_free(c);
}

static void expect_error(uint32_t n, const uint32_t *tpn, uint32_t r, const char *needle)
{
	struct shape s;
	make_shape(&s, n, tpn, r, 1);
	ctab *t = (ctab *)&s; /* must be reset to NULL on failure */
	char err[256];
	assert_int_equal(ctab_generate(&s.p, &t, err, sizeof(err)), -EINVAL);
	assert_null(t);
	if (!strstr(err, needle))
		fail_msg("error '%s' lacks '%s'", err, needle);
}

static void test_errors(void **state)
{
	(void)state;
	const uint32_t five[8] = {5, 5, 5, 5, 5, 5, 5, 5}, zero[4] = {0};
	const uint32_t lop[4] = {5, 1, 1, 1};
	expect_error(2, five, 3, "distinct nodes");
	expect_error(4, zero, 2, "no targets");
	expect_error(4, five, 0, "replicas must be");
	expect_error(4, five, 17, "replicas must be");
	expect_error(4, five, 3, "multiple of the replica count");
	expect_error(4, lop, 2, "would share a chain");
	expect_error(0, five, 1, "no nodes");

	struct shape s;
	make_shape(&s, 3, five, 3, 1);
	s.ids[3] = s.ids[0];
	ctab *t = NULL;
	char err[256];
	assert_int_equal(ctab_generate(&s.p, &t, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "appears twice"));
	make_shape(&s, 3, five, 3, 1);
	s.nodes[2].node_id = 1;
	assert_int_equal(ctab_generate(&s.p, &t, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "node id 1 appears twice"));
	make_shape(&s, 3, five, 3, 1);
	s.p.table_id = 0;
	assert_int_equal(ctab_generate(&s.p, &t, err, sizeof(err)), -EINVAL);
}

static int run_cli(const char *args, char *out, size_t cap)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "'%s' admin gen-chain-table %s 2>&1", testenv_chainfs(), args);
	FILE *f = popen(cmd, "r");
	assert_non_null(f);
	size_t n = fread(out, 1, cap - 1, f);
	out[n] = 0;
	int st = pclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void **state)
{
	(void)state;
	static char out[65536], again[65536];
	assert_int_equal(
	    run_cli("--nodes 6 --targets-per-node 5 --replicas 3 --per-node", out, sizeof(out)), 0);
	assert_non_null(strstr(out, "\n1000001 "));
	assert_non_null(strstr(out, "chains shared by two nodes: 2..2"));
	assert_non_null(strstr(out, "node 6 fails: 5 peer nodes, share 0.2000..0.2000"));
	assert_int_equal(
	    run_cli("--nodes 6 --targets-per-node 5 --replicas 3 --per-node", again, sizeof(again)),
	    0);
	assert_string_equal(out, again);
	assert_int_equal(
	    run_cli("--nodes 3 --targets-per-node 2 --replicas 3 --per-target", out, sizeof(out)),
	    0);
	assert_non_null(strstr(out, "target 1001 fails: reads move to "));
	assert_non_null(strstr(out, "target 3002 fails: reads move to "));
	assert_int_equal(run_cli("--nodes 2 --targets-per-node 5 --replicas 3", out, sizeof(out)),
	                 1);
	assert_non_null(strstr(out, "distinct nodes"));
	assert_int_equal(run_cli("--nodes 6 --targets-per-node x --replicas 3", out, sizeof(out)),
	                 2);
	assert_int_equal(run_cli("--nodes 6", out, sizeof(out)), 2);
	assert_non_null(strstr(out, "required"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_6x5_r3), cmocka_unit_test(test_small_shapes),
	    cmocka_unit_test(test_uneven), cmocka_unit_test(test_deterministic),
	    cmocka_unit_test(test_errors), cmocka_unit_test(test_cli),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
