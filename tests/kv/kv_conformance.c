/* kv_conformance.c - one conformance suite for every KV backend.
 *
 * Usage: kv_conformance BACKEND   (ctest runs one entry per table row)
 *
 * BACKEND TABLE. `backends[]` below is the one place a backend is added:
 * a row gives its name, whether its engine injects faults, a scale (percent
 * of the default iteration counts, for slow backends), and three hooks:
 *   setup(&priv)     once per run (start servers, make a temp dir);
 *                    returns 0, or 77 to skip the run (capability missing);
 *   url(priv, n, buf, len)  a URL of a fresh, empty key space for test
 *                    number n (a new dir, a new prefix...);
 *   teardown(priv)   stops what setup started (by pid).
 * Every case opens its own engine from url() and closes it.
 *
 * Cases: read-your-writes; range reads (order, limit, reverse,
 * continuation, merging with pending writes); clear_range; snapshot reads
 * add no conflict; point, range-insert (phantom), range-delete and
 * explicit-conflict detection; write skew prevented and a constant sum
 * under concurrent transfers; kv_run (retry count, maybe-committed retried
 * only when idempotent, bound); size limits; atomic add; injected faults
 * really reach kv_run on a faulty engine and never happen on the others.
 *
 * Faults. With a fault-injecting engine every txn can fail spuriously, so
 * cases go through kv_run with idempotency records (the pattern the meta
 * service uses: a marker key written in the same txn makes a retried
 * maybe-committed txn a no-op), and interleaving cases assert only what
 * faults cannot break (never both of two conflicting txns commit). The
 * one case whose claim is "no conflict happens" is skipped under faults.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/status.h"
#include "kv/kv.h"
#include "testenv.h"

#ifdef KVC_HAVE_ETCD_CLUSTER
#include "etcd_cluster.h"
#endif

/* ---- backend table ------------------------------------------------------ */

struct kvc_backend {
	const char *name;
	int faults; /* engine injects faults */
	int scale;  /* percent of default iteration counts */
	int (*setup)(void **priv);
	void (*url)(void *priv, int n, char *buf, size_t len);
	void (*teardown)(void *priv);
};

static int mem_setup(void **priv)
{
	*priv = NULL;
	return 0;
}

static void mem_url(void *priv, int n, char *buf, size_t len)
{
	snprintf(buf, len, "mem://");
}

static void mem_faults_url(void *priv, int n, char *buf, size_t len)
{
	snprintf(buf, len, "mem://?faults=0.05&seed=%d", n + 1);
}

static void nop_teardown(void *priv)
{
}

static int lmdb_setup(void **priv)
{
	*priv = testenv_tmpdir("kvc-lmdb");
	return 0;
}

static void lmdb_url(void *priv, int n, char *buf, size_t len)
{
	snprintf(buf, len, "lmdb://%s/t%d", (char *)priv, n);
}

static void lmdb_nosync_url(void *priv, int n, char *buf, size_t len)
{
	snprintf(buf, len, "lmdb://%s/t%d?sync=none", (char *)priv, n);
}

/* MDB_WRITEMAP applies a group commit without nested txns (kv_lmdb.c);
 * the map is sized down because the file's apparent size is the map's. */
static void lmdb_writemap_url(void *priv, int n, char *buf, size_t len)
{
	snprintf(buf, len, "lmdb://%s/t%d?sync=window&writemap=1&map_size=1g", (char *)priv, n);
}

static void free_teardown(void *priv)
{
	free(priv);
}

#ifdef KVC_HAVE_ETCD_CLUSTER
/* etcd: one real 3-member cluster per run; each case gets its own key
 * prefix (the URL path), so cases never see each other's keys. */
static int etcd_setup(void **priv)
{
	struct etcd_cluster *c = NULL;
	if (!etcd_cluster_available())
		return 77;
	int rc = etcd_cluster_start(NULL, &c);
	*priv = c;
	return rc ? 1 : 0;
}

static void etcd_url(void *priv, int n, char *buf, size_t len)
{
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "kvc-t%d", n);
	etcd_cluster_url(priv, prefix, NULL, buf, (int)len);
}

static void etcd_teardown(void *priv)
{
	etcd_cluster_stop(priv);
}
#endif

static const struct kvc_backend backends[] = {
	{ "mem", 0, 100, mem_setup, mem_url, nop_teardown },
	{ "mem-faults", 1, 100, mem_setup, mem_faults_url, nop_teardown },
	{ "lmdb", 0, 100, lmdb_setup, lmdb_url, free_teardown },
	{ "lmdb-nosync", 0, 100, lmdb_setup, lmdb_nosync_url, free_teardown },
	{ "lmdb-writemap", 0, 100, lmdb_setup, lmdb_writemap_url, free_teardown },
#ifdef KVC_HAVE_ETCD_CLUSTER
	/* ~400 durable txns/s on 2 shared cores: a quarter of the counts */
	{ "etcd", 0, 25, etcd_setup, etcd_url, etcd_teardown },
#endif
};

/* ---- fixture ------------------------------------------------------------ */

static const struct kvc_backend *be;
static void *be_priv;
static int test_no;

struct fx {
	kv_engine *e;
	int faults;
	int scale;
};

static int fx_setup(void **state)
{
	static struct fx f;
	char url[1024], err[256];

	be->url(be_priv, test_no++, url, sizeof(url));
	f.faults = be->faults;
	f.scale = be->scale;
	if (kv_open(url, &f.e, err, sizeof(err))) {
		fprintf(stderr, "kv_open %s: %s\n", url, err);
		return -1;
	}
	*state = &f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;

	kv_close(f->e);
	f->e = NULL;
	return 0;
}

static int scaled(const struct fx *f, int n)
{
	int v = n * f->scale / 100;
	return v > 0 ? v : 1;
}

/* Runs FN with generous retries; idempotent because every body here is
 * (plain overwrites, or guarded by a marker key). */
static int run(const struct fx *f, kv_txn_fn fn, void *arg)
{
	struct kv_run_opts o = { .idempotent = 1, .max_retries = 400, .backoff_max_us = 20000 };

	return kv_run(f->e, &o, fn, arg, NULL);
}

static struct kv_slice K(const char *s)
{
	return kv_str(s);
}

static int64_t le64(struct kv_slice v)
{
	uint64_t x = 0;

	for (size_t i = 0; i < v.n && i < 8; i++)
		x |= (uint64_t)((const uint8_t *)v.p)[i] << (8 * i);
	return (int64_t)x;
}

static void put_le64(uint8_t b[8], int64_t v)
{
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)((uint64_t)v >> (8 * i));
}

static int slice_is(struct kv_slice s, const char *str)
{
	return s.n == strlen(str) && !memcmp(s.p, str, s.n);
}

/* A read whose result is checked: injected faults propagate (kv_run
 * retries them), anything else must equal WANT. */
#define GET(t, k, snap, v, want)                       \
	do {                                           \
		int g_ = kv_get((t), (k), (snap), (v)); \
		if (g_ < 0)                            \
			return g_;                     \
		assert_int_equal(g_, (want));          \
	} while (0)

#define TRY(x)                      \
	do {                        \
		int rc_ = (x);      \
		if (rc_ < 0)        \
			return rc_; \
	} while (0)

/* ---- read-your-writes --------------------------------------------------- */

static int ryw_body(kv_txn *t, void *arg)
{
	struct kv_slice v;
	struct kv_range r;
	uint8_t eight[8];

	TRY(kv_set(t, K("a"), K("1")));
	TRY(kv_set(t, K("b"), K("2")));
	TRY(kv_set(t, K("b"), K("22")));
	GET(t, K("b"), 0, &v, 1);
	assert_true(slice_is(v, "22"));
	TRY(kv_clear(t, K("a")));
	GET(t, K("a"), 0, &v, 0);
	TRY(kv_set(t, K("empty"), kv_mem(NULL, 0)));
	GET(t, K("empty"), 1, &v, 1);
	assert_int_equal(v.n, 0);
	TRY(kv_atomic_add(t, K("n"), 5));
	TRY(kv_atomic_add(t, K("n"), -2));
	GET(t, K("n"), 0, &v, 1);
	assert_int_equal(le64(v), 3);
	put_le64(eight, 40);
	TRY(kv_set(t, K("m"), kv_mem(eight, 8)));
	TRY(kv_atomic_add(t, K("m"), 2));
	GET(t, K("m"), 0, &v, 1);
	assert_int_equal(le64(v), 42);
	TRY(kv_get_range(t, kv_mem(NULL, 0), kv_mem(NULL, 0), 0, 0, 0, &r));
	assert_int_equal(r.n, 4); /* b empty m n */
	assert_true(slice_is(r.kvs[0].key, "b") && slice_is(r.kvs[0].val, "22"));
	assert_true(slice_is(r.kvs[1].key, "empty"));
	assert_true(slice_is(r.kvs[2].key, "m") && le64(r.kvs[2].val) == 42);
	assert_true(slice_is(r.kvs[3].key, "n") && le64(r.kvs[3].val) == 3);
	return 0;
}

static int ryw_check(kv_txn *t, void *arg)
{
	struct kv_slice v;

	TRY(kv_get(t, K("a"), 1, &v));
	assert_null(v.p);
	GET(t, K("b"), 1, &v, 1);
	assert_true(slice_is(v, "22"));
	GET(t, K("n"), 1, &v, 1);
	assert_int_equal(le64(v), 3);
	/* A pending add on a stored value reads stored + delta. */
	TRY(kv_atomic_add(t, K("n"), 10));
	GET(t, K("n"), 1, &v, 1);
	assert_int_equal(le64(v), 13);
	return 0;
}

static void t_read_your_writes(void **state)
{
	struct fx *f = *state;
	kv_txn *t;
	int64_t ver;

	assert_int_equal(run(f, ryw_body, NULL), 0);
	assert_int_equal(run(f, ryw_check, NULL), 0);
	/* A read-only txn commits with no version; writes are refused. */
	assert_int_equal(kv_begin(f->e, KV_RDONLY, &t), 0);
	assert_int_equal(kv_set(t, K("x"), K("y")), -EROFS);
	assert_int_equal(kv_commit(t, &ver), -EROFS); /* poisoned */
	kv_txn_free(t);
}

/* ---- ranges ------------------------------------------------------------- */

#define NR 100

static void rkey(char *b, int i)
{
	snprintf(b, 16, "r%03d", i);
}

static int fill_body(kv_txn *t, void *arg)
{
	int base = *(int *)arg;
	char k[16], v[16];

	for (int i = base; i < base + 50 && i < NR; i++) {
		rkey(k, i);
		snprintf(v, sizeof(v), "v%d", i);
		TRY(kv_set(t, K(k), K(v)));
	}
	return 0;
}

static void fill(struct fx *f)
{
	for (int base = 0; base < NR; base += 50)
		assert_int_equal(run(f, fill_body, &base), 0);
}

/* Walks [r010, r090) with LIMIT and continuation; checks order. */
static int walk_body(kv_txn *t, void *arg)
{
	int *args = arg, limit = args[0], reverse = args[1], seen = 0, rounds = 0;
	struct kv_slice b = K("r010"), e = K("r090");
	struct kv_range r;
	char k[16];

	for (;;) {
		TRY(kv_get_range(t, b, e, limit, 1, reverse, &r));
		assert_true(r.n <= limit);
		for (int i = 0; i < r.n; i++, seen++) {
			rkey(k, reverse ? 89 - seen : 10 + seen);
			assert_true(slice_is(r.kvs[i].key, k));
		}
		rounds++;
		if (!r.has_more)
			break;
		assert_int_equal(r.n, limit);
		TRY(kv_range_continue(t, &r, reverse, &b, &e));
	}
	assert_int_equal(seen, 80);
	assert_true(rounds >= (80 + limit - 1) / limit);
	return 0;
}

static int range_misc_body(kv_txn *t, void *arg)
{
	struct kv_range r;
	char k[16];

	/* Unbounded both ways, reverse, limit. */
	TRY(kv_get_range(t, kv_mem(NULL, 0), kv_mem(NULL, 0), 3, 1, 1, &r));
	assert_int_equal(r.n, 3);
	assert_true(r.has_more);
	assert_true(slice_is(r.kvs[0].key, "r099") && slice_is(r.kvs[2].key, "r097"));
	TRY(kv_get_range(t, kv_mem(NULL, 0), kv_mem(NULL, 0), 0, 1, 0, &r));
	assert_int_equal(r.n, NR);
	assert_false(r.has_more);
	/* Empty and inverted ranges. */
	TRY(kv_get_range(t, K("r050"), K("r050"), 0, 1, 0, &r));
	assert_int_equal(r.n, 0);
	(void)k;
	return 0;
}

/* Pending writes merged into a limited, continued scan. */
static int range_merge_body(kv_txn *t, void *arg)
{
	struct kv_slice b = K("r000"), e = K("r100");
	struct kv_range r;
	int n = 0, reverse = *(int *)arg;
	char prev[32] = "";

	TRY(kv_clear_range(t, K("r020"), K("r080"))); /* 60 gone */
	TRY(kv_set(t, K("r050"), K("new")));          /* back, after the clear */
	TRY(kv_set(t, K("r050x"), K("new2")));
	TRY(kv_clear(t, K("r001")));
	TRY(kv_atomic_add(t, K("r002"), 1)); /* stored "v2" + 1, as LE */
	for (;;) {
		TRY(kv_get_range(t, b, e, 7, 1, reverse, &r));
		for (int i = 0; i < r.n; i++, n++) {
			char k[32];
			memcpy(k, r.kvs[i].key.p, r.kvs[i].key.n);
			k[r.kvs[i].key.n] = 0;
			if (prev[0])
				assert_true(reverse ? strcmp(prev, k) > 0 : strcmp(prev, k) < 0);
			strcpy(prev, k);
			assert_true(strcmp(k, "r001"));
			assert_true(strcmp(k, "r020") < 0 || strcmp(k, "r080") >= 0 ||
				    !strcmp(k, "r050") || !strcmp(k, "r050x"));
			if (!strcmp(k, "r002"))
				/* each of the two runs commits its add */
				assert_int_equal(le64(r.kvs[i].val),
						 (int64_t)('v' | '2' << 8) + 1 + reverse);
		}
		if (!r.has_more)
			break;
		TRY(kv_range_continue(t, &r, reverse, &b, &e));
	}
	assert_int_equal(n, NR - 60 - 1 + 2);
	return 0;
}

static void t_ranges(void **state)
{
	struct fx *f = *state;
	int args[2], rev;

	fill(f);
	for (int limit = 1; limit <= 81; limit += 16) {
		for (int reverse = 0; reverse < 2; reverse++) {
			args[0] = limit;
			args[1] = reverse;
			assert_int_equal(run(f, walk_body, args), 0);
		}
	}
	assert_int_equal(run(f, range_misc_body, NULL), 0);
	{
		/* An inverted range is an argument error and poisons the txn. */
		kv_txn *t;
		struct kv_range r;
		assert_int_equal(kv_begin(f->e, KV_RDONLY, &t), 0);
		assert_int_equal(kv_get_range(t, K("r060"), K("r050"), 0, 1, 0, &r), -EINVAL);
		assert_int_equal(kv_commit(t, NULL), -EINVAL);
		kv_txn_free(t);
	}
	rev = 0;
	assert_int_equal(run(f, range_merge_body, &rev), 0);
	rev = 1;
	assert_int_equal(run(f, range_merge_body, &rev), 0);
}

/* ---- clear_range -------------------------------------------------------- */

static int clear_body(kv_txn *t, void *arg)
{
	TRY(kv_clear_range(t, K("r010"), K("r020")));
	TRY(kv_clear_range(t, K("r095"), kv_mem(NULL, 0)));
	return 0;
}

static int clear_check(kv_txn *t, void *arg)
{
	struct kv_range r;
	struct kv_slice v;

	TRY(kv_get_range(t, kv_mem(NULL, 0), kv_mem(NULL, 0), 0, 1, 0, &r));
	assert_int_equal(r.n, NR - 10 - 5);
	GET(t, K("r009"), 0, &v, 1);
	GET(t, K("r010"), 0, &v, 0);
	GET(t, K("r019"), 0, &v, 0);
	GET(t, K("r020"), 0, &v, 1);
	GET(t, K("r094"), 0, &v, 1);
	GET(t, K("r099"), 0, &v, 0);
	return 0;
}

static void t_clear_range(void **state)
{
	struct fx *f = *state;

	fill(f);
	assert_int_equal(run(f, clear_body, NULL), 0);
	assert_int_equal(run(f, clear_check, NULL), 0);
}

/* ---- conflicts ---------------------------------------------------------- */

static int set_body(kv_txn *t, void *arg)
{
	const char **kv = arg;

	return kv_set(t, K(kv[0]), K(kv[1]));
}

static void put(struct fx *f, const char *k, const char *v)
{
	const char *kv[2] = { k, v };

	assert_int_equal(run(f, set_body, kv), 0);
}

/* One commit of T2 writing K=V. */
static int commit_set(struct fx *f, const char *k, const char *v)
{
	kv_txn *t;
	int rc;

	assert_int_equal(kv_begin(f->e, 0, &t), 0);
	rc = kv_set(t, K(k), K(v));
	if (!rc)
		rc = kv_commit(t, NULL);
	kv_txn_free(t);
	return rc;
}

static int commit_clear(struct fx *f, const char *k)
{
	kv_txn *t;
	int rc;

	assert_int_equal(kv_begin(f->e, 0, &t), 0);
	rc = kv_clear(t, K(k));
	if (!rc)
		rc = kv_commit(t, NULL);
	kv_txn_free(t);
	return rc;
}

/* T1 reads K (snapshot or not), T2 overwrites K, T1 writes elsewhere and
 * commits: returns T1's commit result (and T2's in *rc2). */
static int read_then_commit(struct fx *f, int snapshot, int *rc2)
{
	struct kv_slice v;
	kv_txn *t;
	int rc;

	assert_int_equal(kv_begin(f->e, 0, &t), 0);
	rc = kv_get(t, K("k"), snapshot, &v);
	if (rc >= 0) {
		static int gen;
		char val[32];
		/* Each overwrite is a new value: validation compares values. */
		snprintf(val, sizeof(val), "changed-%d", ++gen);
		*rc2 = commit_set(f, "k", val);
		rc = kv_set(t, K("other"), K("x"));
	}
	if (!rc)
		rc = kv_commit(t, NULL);
	kv_txn_free(t);
	return rc;
}

static void t_snapshot_no_conflict(void **state)
{
	struct fx *f = *state;
	int rc2;

	if (f->faults)
		skip(); /* claims "no conflict": injected ones would break it */
	put(f, "k", "v0");
	assert_int_equal(read_then_commit(f, 1, &rc2), 0);
	assert_int_equal(rc2, 0);
	assert_int_equal(read_then_commit(f, 0, &rc2), -CFS_ECONFLICT);
	assert_int_equal(rc2, 0);
}

static void t_point_conflict(void **state)
{
	struct fx *f = *state;
	int rc1, rc2;

	put(f, "k", "v0");
	for (int i = 0; i < 5; i++) {
		rc1 = read_then_commit(f, 0, &rc2);
		if (!f->faults) {
			assert_int_equal(rc2, 0);
			assert_int_equal(rc1, -CFS_ECONFLICT);
		}
		assert_false(rc1 == 0 && rc2 == 0);
	}
	/* A read of an absent key conflicts with its creation. */
	{
		struct kv_slice v;
		kv_txn *t;
		assert_int_equal(kv_begin(f->e, 0, &t), 0);
		rc1 = kv_get(t, K("absent"), 0, &v);
		rc2 = commit_set(f, "absent", "now");
		if (rc1 >= 0)
			rc1 = kv_set(t, K("z"), K("z"));
		if (!rc1)
			rc1 = kv_commit(t, NULL);
		kv_txn_free(t);
		if (!f->faults)
			assert_int_equal(rc1, -CFS_ECONFLICT);
		assert_false(rc1 == 0 && rc2 == 0);
	}
}

/* Two txns each check "dir/" is empty (range, limit 1) and insert into it. */
static void t_phantom_insert(void **state)
{
	struct fx *f = *state;
	kv_txn *t1, *t2;
	struct kv_range r1, r2;
	int rc1, rc2, both = 0;

	for (int round = 0; round < 5; round++) {
		char k1[32], k2[32];
		snprintf(k1, sizeof(k1), "dir%d/a", round);
		snprintf(k2, sizeof(k2), "dir%d/b", round);
		char b[16], e[16];
		snprintf(b, sizeof(b), "dir%d/", round);
		snprintf(e, sizeof(e), "dir%d0", round); /* '0' follows '/' */
		assert_int_equal(kv_begin(f->e, 0, &t1), 0);
		assert_int_equal(kv_begin(f->e, 0, &t2), 0);
		rc1 = kv_get_range(t1, K(b), K(e), 1, 0, 0, &r1);
		rc2 = kv_get_range(t2, K(b), K(e), 1, 0, 0, &r2);
		if (!rc1)
			assert_int_equal(r1.n, 0);
		if (!rc2)
			assert_int_equal(r2.n, 0);
		if (!rc1)
			rc1 = kv_set(t1, K(k1), K("1"));
		if (!rc2)
			rc2 = kv_set(t2, K(k2), K("2"));
		if (!rc1)
			rc1 = kv_commit(t1, NULL);
		if (!rc2)
			rc2 = kv_commit(t2, NULL);
		kv_txn_free(t1);
		kv_txn_free(t2);
		if (!f->faults) {
			assert_int_equal(rc1, 0);
			assert_int_equal(rc2, -CFS_ECONFLICT);
		}
		both += rc1 == 0 && rc2 == 0;
	}
	assert_int_equal(both, 0);
}

/* A key deleted (or updated) inside a range T1 read makes T1 conflict. */
static void t_range_delete_update(void **state)
{
	struct fx *f = *state;
	int bad = 0;

	for (int mode = 0; mode < 4; mode++) {
		char k[3][16];
		kv_txn *t;
		struct kv_range r;
		int rc1, rc2;

		for (int i = 0; i < 3; i++) {
			snprintf(k[i], sizeof(k[i]), "g%d/%d", mode, i);
			put(f, k[i], "v");
		}
		char b[16], e[16];
		snprintf(b, sizeof(b), "g%d/", mode);
		snprintf(e, sizeof(e), "g%d0", mode);
		assert_int_equal(kv_begin(f->e, 0, &t), 0);
		if (mode < 2) /* a read range */
			rc1 = kv_get_range(t, K(b), K(e), 0, 0, mode, &r);
		else          /* an explicit conflict range */
			rc1 = kv_add_read_conflict_range(t, K(b), K(e));
		rc2 = mode == 3 ? commit_set(f, k[1], "updated") : commit_clear(f, k[1]);
		if (!rc1)
			rc1 = kv_set(t, K("elsewhere"), K("x"));
		if (!rc1)
			rc1 = kv_commit(t, NULL);
		kv_txn_free(t);
		if (!f->faults) {
			assert_int_equal(rc2, 0);
			assert_int_equal(rc1, -CFS_ECONFLICT);
		}
		bad += rc1 == 0 && rc2 == 0;
	}
	assert_int_equal(bad, 0);
	/* A write outside the range read does not conflict. */
	if (!f->faults) {
		kv_txn *t;
		struct kv_range r;
		assert_int_equal(kv_begin(f->e, 0, &t), 0);
		assert_int_equal(kv_get_range(t, K("g0/"), K("g00"), 0, 0, 0, &r), 0);
		assert_int_equal(commit_set(f, "g1/9", "outside"), 0);
		assert_int_equal(kv_set(t, K("elsewhere"), K("y")), 0);
		assert_int_equal(kv_commit(t, NULL), 0);
		kv_txn_free(t);
	}
}

static void t_explicit_key_conflict(void **state)
{
	struct fx *f = *state;
	kv_txn *t;
	int rc1, rc2;

	put(f, "ck", "1");
	assert_int_equal(kv_begin(f->e, 0, &t), 0);
	rc1 = kv_add_read_conflict(t, K("ck"));
	rc2 = commit_set(f, "ck", "2");
	if (!rc1)
		rc1 = kv_set(t, K("o"), K("o"));
	if (!rc1)
		rc1 = kv_commit(t, NULL);
	kv_txn_free(t);
	if (!f->faults) {
		assert_int_equal(rc2, 0);
		assert_int_equal(rc1, -CFS_ECONFLICT);
	}
	assert_false(rc1 == 0 && rc2 == 0);
}

/* ---- concurrent transfers and write skew --------------------------------- */

#define NACCT 10
#define NTHR 8

struct xfer {
	struct fx *f;
	int thread, i;   /* idempotency marker identity */
	int from, to;
	int64_t amount;
	int skew;        /* write-skew mode: withdraw only if x + y >= amount */
};

static void acct_key(char *b, int i)
{
	snprintf(b, 16, "acct%02d", i);
}

static int xfer_body(kv_txn *t, void *arg)
{
	struct xfer *x = arg;
	char ka[16], kb[16], mk[32];
	struct kv_slice va, vb, m;
	uint8_t buf[8];
	int rc;

	/* The marker makes a retried maybe-committed txn a no-op. */
	snprintf(mk, sizeof(mk), "idem/%d/%d", x->thread, x->i);
	TRY(rc = kv_get(t, K(mk), 0, &m));
	if (rc)
		return 0;
	acct_key(ka, x->from);
	acct_key(kb, x->to);
	TRY(kv_get(t, K(ka), 0, &va));
	TRY(kv_get(t, K(kb), 0, &vb));
	if (x->skew) {
		/* Constraint: balance(from) + balance(to) >= 0. Each txn only
		 * writes FROM; without serializability two of them could each
		 * see enough and together overdraw (write skew). */
		if (le64(va) + le64(vb) < x->amount)
			return kv_set(t, K(mk), K("skip"));
		put_le64(buf, le64(va) - x->amount);
		TRY(kv_set(t, K(ka), kv_mem(buf, 8)));
	} else {
		put_le64(buf, le64(va) - x->amount);
		TRY(kv_set(t, K(ka), kv_mem(buf, 8)));
		put_le64(buf, le64(vb) + x->amount);
		TRY(kv_set(t, K(kb), kv_mem(buf, 8)));
	}
	return kv_set(t, K(mk), K("done"));
}

static int sum_body(kv_txn *t, void *arg)
{
	struct kv_range r;
	int64_t *sum = arg;

	TRY(kv_get_range(t, K("acct"), K("acct~"), 0, 1, 0, &r));
	*sum = 0;
	for (int i = 0; i < r.n; i++)
		*sum += le64(r.kvs[i].val);
	return r.n == NACCT ? 0 : -EIO;
}

struct xthr {
	struct fx *f;
	int id, n, skew, failed;
	int64_t bad_sum;
};

static void *xfer_thread(void *arg)
{
	struct xthr *th = arg;
	uint64_t rng = 0x1234567u + (uint64_t)th->id * 7919u;

	for (int i = 0; i < th->n; i++) {
		struct xfer x = { .f = th->f, .thread = th->id, .i = i, .skew = th->skew };
		rng = rng * 6364136223846793005ull + 1442695040888963407ull;
		x.from = (int)((rng >> 33) % NACCT);
		x.to = (x.from + 1 + (int)((rng >> 45) % (NACCT - 1))) % NACCT;
		if (th->skew)
			x.to = x.from ^ 1; /* pairs (0,1), (2,3)... */
		x.amount = 1 + (int64_t)((rng >> 20) % 50);
		if (run(th->f, xfer_body, &x))
			th->failed++;
		if (!th->skew && i % 10 == 0) {
			struct kv_run_opts o = { .flags = KV_RDONLY, .max_retries = 400 };
			int64_t sum = 0;
			if (kv_run(th->f->e, &o, sum_body, &sum, NULL) || sum != NACCT * 1000)
				th->bad_sum = sum ? sum : -1;
		}
	}
	return NULL;
}

static int init_accts(kv_txn *t, void *arg)
{
	int64_t each = *(int64_t *)arg;
	uint8_t buf[8];
	char k[16];

	put_le64(buf, each);
	for (int i = 0; i < NACCT; i++) {
		acct_key(k, i);
		TRY(kv_set(t, K(k), kv_mem(buf, 8)));
	}
	return 0;
}

static void transfers(struct fx *f, int skew)
{
	pthread_t tid[NTHR];
	struct xthr th[NTHR];
	int64_t each = skew ? 100 : 1000, sum = 0;
	struct kv_run_opts ro = { .flags = KV_RDONLY, .max_retries = 400 };

	assert_int_equal(run(f, init_accts, &each), 0);
	for (int i = 0; i < NTHR; i++) {
		th[i] = (struct xthr){ .f = f, .id = i + (skew ? 100 : 0), .n = scaled(f, 60),
				       .skew = skew };
		assert_int_equal(pthread_create(&tid[i], NULL, xfer_thread, &th[i]), 0);
	}
	for (int i = 0; i < NTHR; i++) {
		pthread_join(tid[i], NULL);
		assert_int_equal(th[i].failed, 0);
		assert_int_equal(th[i].bad_sum, 0);
	}
	if (!skew) {
		assert_int_equal(kv_run(f->e, &ro, sum_body, &sum, NULL), 0);
		assert_int_equal(sum, NACCT * 1000);
		return;
	}
	/* Write skew: every pair's balance stayed >= 0. */
	for (int p = 0; p < NACCT; p += 2) {
		struct kv_range r;
		kv_txn *t;
		char b[16], e[16];
		acct_key(b, p);
		acct_key(e, p + 2);
		assert_int_equal(kv_begin(f->e, KV_RDONLY, &t), 0);
		int rc;
		while ((rc = kv_get_range(t, K(b), K(e), 0, 1, 0, &r)) == -CFS_ECONFLICT ||
		       rc == -CFS_ETOOOLD) {
			kv_txn_free(t);
			assert_int_equal(kv_begin(f->e, KV_RDONLY, &t), 0);
		}
		assert_int_equal(rc, 0);
		assert_int_equal(r.n, 2);
		assert_true(le64(r.kvs[0].val) + le64(r.kvs[1].val) >= 0);
		kv_txn_free(t);
	}
}

static void t_transfers_keep_sum(void **state)
{
	transfers(*state, 0);
}

static void t_write_skew_prevented(void **state)
{
	transfers(*state, 1);
}

/* ---- kv_run ------------------------------------------------------------- */

struct scripted {
	int calls;
	int fail_times;
	int code;
};

static int scripted_body(kv_txn *t, void *arg)
{
	struct scripted *s = arg;

	s->calls++;
	if (s->calls <= s->fail_times)
		return s->code;
	return kv_set(t, K("run"), K("ok"));
}

static void t_retry_helper(void **state)
{
	struct fx *f = *state;
	struct kv_run_stats st;
	struct kv_run_opts o = { .max_retries = 400, .backoff_min_us = 10, .backoff_max_us = 1000 };
	struct scripted s;

	/* Conflicts are retried and counted. */
	s = (struct scripted){ 0, 3, -CFS_ECONFLICT };
	assert_int_equal(kv_run(f->e, &o, scripted_body, &s, &st), 0);
	assert_true(st.retries >= 3); /* injected faults may add more */
	assert_int_equal(st.retries, s.calls - 1);
	if (!f->faults)
		assert_int_equal(st.retries, 3);
	assert_true(st.version > 0);
	/* Maybe-committed: returned at once unless idempotent. */
	s = (struct scripted){ 0, 1, -CFS_EMAYBE };
	o.idempotent = 0;
	assert_int_equal(kv_run(f->e, &o, scripted_body, &s, &st), -CFS_EMAYBE);
	assert_int_equal(s.calls, 1);
	assert_int_equal(st.retries, 0);
	s = (struct scripted){ 0, 1, -CFS_EMAYBE };
	o.idempotent = 1;
	assert_int_equal(kv_run(f->e, &o, scripted_body, &s, &st), 0);
	assert_true(st.retries >= 1);
	/* Too-old and unavailable are retried; other errors are not. */
	s = (struct scripted){ 0, 2, -CFS_ETOOOLD };
	assert_int_equal(kv_run(f->e, &o, scripted_body, &s, &st), 0);
	assert_true(s.calls >= 3);
	s = (struct scripted){ 0, 1, -CFS_EUNAVAIL };
	assert_int_equal(kv_run(f->e, &o, scripted_body, &s, &st), 0);
	s = (struct scripted){ 0, 1000, -EIO };
	assert_int_equal(kv_run(f->e, &o, scripted_body, &s, &st), -EIO);
	assert_int_equal(s.calls, 1);
	s = (struct scripted){ 0, 1000, -CFS_ETOOLARGE };
	assert_int_equal(kv_run(f->e, &o, scripted_body, &s, &st), -CFS_ETOOLARGE);
	assert_int_equal(s.calls, 1);
	/* The bound holds. */
	o.max_retries = 4;
	s = (struct scripted){ 0, 1000, -CFS_ECONFLICT };
	assert_int_equal(kv_run(f->e, &o, scripted_body, &s, &st), -CFS_ECONFLICT);
	assert_int_equal(s.calls, 5);
	assert_int_equal(st.retries, 4);
	assert_int_equal(kv_is_retryable(-CFS_EMAYBE, 0), 0);
	assert_int_equal(kv_is_retryable(-CFS_EMAYBE, 1), 1);
}

/* A real conflict through kv_run: another txn commits in between, once. */
struct racer {
	struct fx *f;
	int calls;
};

static int racer_body(kv_txn *t, void *arg)
{
	struct racer *r = arg;
	struct kv_slice v;

	r->calls++;
	TRY(kv_get(t, K("race"), 0, &v));
	if (r->calls == 1 && commit_set(r->f, "race", "other") != 0)
		return -CFS_ECONFLICT; /* a fault hit the interloper: same effect */
	return kv_set(t, K("race"), K("mine"));
}

static void t_retry_real_conflict(void **state)
{
	struct fx *f = *state;
	struct racer r = { f, 0 };
	struct kv_run_stats st;
	struct kv_run_opts o = { .idempotent = 1, .max_retries = 400 };

	assert_int_equal(kv_run(f->e, &o, racer_body, &r, &st), 0);
	assert_true(st.retries >= 1);
	assert_int_equal(st.retries, r.calls - 1);
}

/* ---- limits ------------------------------------------------------------- */

static int many_writes(kv_txn *t, void *arg)
{
	int n = *(int *)arg;
	char k[16];

	for (int i = 0; i < n; i++) {
		snprintf(k, sizeof(k), "w%03d", i);
		int rc = i % 4 == 3 ? kv_atomic_add(t, K(k), 1) : kv_set(t, K(k), K("v"));
		if (i < KV_MAX_WRITES) {
			TRY(rc);
		} else {
			assert_int_equal(rc, -CFS_ETOOLARGE);
		}
	}
	return 0;
}

static int many_reads(kv_txn *t, void *arg)
{
	int n = *(int *)arg;
	struct kv_slice v;
	char k[16];

	for (int i = 0; i < n; i++) {
		snprintf(k, sizeof(k), "w%03d", i);
		int rc = kv_get(t, K(k), 0, &v);
		if (i < KV_MAX_READ_CONFLICTS) {
			TRY(rc);
		} else {
			assert_int_equal(rc, -CFS_ETOOLARGE);
		}
	}
	snprintf(k, sizeof(k), "after-reads-%d", n);
	return kv_set(t, K(k), K("x"));
}

static int big_value(kv_txn *t, void *arg)
{
	size_t n = *(size_t *)arg;
	char *b = calloc(1, n + 1);
	int rc;

	assert_non_null(b);
	rc = kv_set(t, K("big"), kv_mem(b, n));
	free(b);
	return rc;
}

/* Eleven values of KV_MAX_VALUE pass KV_MAX_TXN_BYTES at the eleventh. */
static int many_bytes(kv_txn *t, void *arg)
{
	char *b = calloc(1, KV_MAX_VALUE);
	char k[16];
	int rc = 0;

	assert_non_null(b);
	for (int i = 0; i < 11 && !rc; i++) {
		snprintf(k, sizeof(k), "mb%02d", i);
		rc = kv_set(t, K(k), kv_mem(b, KV_MAX_VALUE));
		if (i < 10)
			assert_int_equal(rc, 0);
	}
	free(b);
	assert_int_equal(rc, -CFS_ETOOLARGE);
	return 0; /* commit reports the poison */
}

static int snapshot_reads_unlimited(kv_txn *t, void *arg)
{
	struct kv_slice v;
	char k[16];

	for (int i = 0; i < 2 * KV_MAX_READ_CONFLICTS; i++) {
		snprintf(k, sizeof(k), "w%03d", i);
		TRY(kv_get(t, K(k), 1, &v));
	}
	return kv_set(t, K("snap-ok"), K("x"));
}

static void t_limits(void **state)
{
	struct fx *f = *state;
	struct kv_run_opts o = { .idempotent = 1, .max_retries = 400 };
	int n = KV_MAX_WRITES;
	size_t vn = KV_MAX_VALUE;
	char longkey[KV_MAX_KEY + 2];
	kv_txn *t;

	assert_int_equal(kv_run(f->e, &o, many_writes, &n, NULL), 0);
	n = KV_MAX_WRITES + 1;
	assert_int_equal(kv_run(f->e, &o, many_writes, &n, NULL), -CFS_ETOOLARGE);
	n = KV_MAX_READ_CONFLICTS;
	assert_int_equal(kv_run(f->e, &o, many_reads, &n, NULL), 0);
	n = KV_MAX_READ_CONFLICTS + 1;
	assert_int_equal(kv_run(f->e, &o, many_reads, &n, NULL), -CFS_ETOOLARGE);
	assert_int_equal(kv_run(f->e, &o, snapshot_reads_unlimited, NULL, NULL), 0);
	assert_int_equal(kv_run(f->e, &o, big_value, &vn, NULL), 0);
	vn = KV_MAX_VALUE + 1;
	assert_int_equal(kv_run(f->e, &o, big_value, &vn, NULL), -CFS_ETOOLARGE);
	assert_int_equal(kv_run(f->e, &o, many_bytes, NULL, NULL), -CFS_ETOOLARGE);
	/* Keys: empty and over-long ones are refused; the txn is poisoned. */
	memset(longkey, 'k', sizeof(longkey));
	assert_int_equal(kv_begin(f->e, 0, &t), 0);
	assert_int_equal(kv_set(t, kv_mem(longkey, KV_MAX_KEY), K("v")), 0);
	assert_int_equal(kv_set(t, kv_mem(longkey, KV_MAX_KEY + 1), K("v")), -EINVAL);
	assert_int_equal(kv_set(t, K("fine"), K("v")), -EINVAL);
	assert_int_equal(kv_commit(t, NULL), -EINVAL);
	kv_txn_free(t);
	assert_int_equal(kv_begin(f->e, 0, &t), 0);
	assert_int_equal(kv_clear(t, kv_mem("", 0)), -EINVAL);
	kv_txn_free(t);
	/* A non-snapshot range counts 1 + pairs examined. */
	assert_int_equal(kv_begin(f->e, 0, &t), 0);
	{
		struct kv_range r;
		int rc = kv_get_range(t, K("w"), K("x"), 0, 0, 0, &r); /* 64 pairs + 1 */
		if (!f->faults)
			assert_int_equal(rc, -CFS_ETOOLARGE);
		else
			assert_true(rc == -CFS_ETOOLARGE || rc == -CFS_ECONFLICT || rc == -CFS_ETOOOLD);
	}
	kv_txn_free(t);
	/* Nothing of the failed txns was applied. */
	assert_int_equal(kv_begin(f->e, KV_RDONLY, &t), 0);
	{
		struct kv_slice v;
		int rc = kv_get(t, K("after-reads-65"), 0, &v);
		assert_true(rc == 0 || (f->faults && rc < 0));
		kv_txn_free(t);
	}
}

/* ---- atomic add --------------------------------------------------------- */

/* A thread that runs BODY N times, each in a txn of its own with {ID, i}
 * as its argument, and counts the runs that failed. */
struct body_thread {
	const struct fx *f;
	kv_txn_fn body;
	int id, n, failed;
};

static void *body_thread_main(void *arg)
{
	struct body_thread *bt = arg;

	for (int i = 0; i < bt->n; i++) {
		int a[2] = { bt->id, i };
		if (run(bt->f, bt->body, a))
			bt->failed++;
	}
	return NULL;
}

/* Runs BODY N times in each of 4 threads at once; none of the runs fails. */
static void run_4_threads(const struct fx *f, kv_txn_fn body, int n)
{
	pthread_t tid[4];
	struct body_thread bt[4];

	for (int i = 0; i < 4; i++) {
		bt[i] = (struct body_thread){ f, body, i, n, 0 };
		assert_int_equal(pthread_create(&tid[i], NULL, body_thread_main, &bt[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(tid[i], NULL);
		assert_int_equal(bt[i].failed, 0);
	}
}

/* Reads the N 8-byte counters KEYS (each must be there) into OUT. */
static int read_i64s(kv_txn *t, const char *const *keys, int n, int64_t *out)
{
	struct kv_slice v;

	for (int i = 0; i < n; i++) {
		TRY(kv_get(t, K(keys[i]), 1, &v));
		assert_int_equal(v.n, 8);
		out[i] = le64(v);
	}
	return 0;
}

static int add_body(kv_txn *t, void *arg)
{
	int *a = arg; /* id, i */
	char mk[32];
	struct kv_slice m;
	int rc;

	snprintf(mk, sizeof(mk), "addidem/%d/%d", a[0], a[1]);
	TRY(rc = kv_get(t, K(mk), 0, &m));
	if (rc)
		return 0;
	TRY(kv_atomic_add(t, K("counter"), 3));
	TRY(kv_atomic_add(t, K("counter2"), -1));
	return kv_set(t, K(mk), K("1"));
}

static int add_shapes(kv_txn *t, void *arg)
{
	TRY(kv_set(t, K("short"), kv_mem("\x05\x00", 2)));
	TRY(kv_set(t, K("long"), kv_mem("\x01\x00\x00\x00\x00\x00\x00\x00\xff\xff", 10)));
	return 0;
}

/* Adds are not idempotent by themselves and run() retries maybe-committed
 * outcomes, so a marker written in the same txn makes a retry of an
 * attempt that did apply a no-op (found as a flaky 7 != 6 on mem-faults). */
static int add_shapes2(kv_txn *t, void *arg)
{
	struct kv_slice done;
	int rc = kv_get(t, K("shapes2-done"), 0, &done);
	if (rc < 0)
		return rc;
	if (rc == 1)
		return 0;
	TRY(kv_set(t, K("shapes2-done"), kv_mem("1", 1)));
	TRY(kv_atomic_add(t, K("short"), 1));
	TRY(kv_atomic_add(t, K("long"), 1));
	TRY(kv_atomic_add(t, K("wrap"), INT64_MAX));
	TRY(kv_atomic_add(t, K("wrap"), 2));
	return 0;
}

static int add_read(kv_txn *t, void *arg)
{
	static const char *const keys[] = { "counter", "counter2", "short", "long", "wrap" };
	return read_i64s(t, keys, 5, arg);
}

static void t_atomic_add(void **state)
{
	struct fx *f = *state;
	int64_t got[5];
	int n = scaled(f, 40);
	struct kv_run_opts ro = { .flags = KV_RDONLY, .max_retries = 400 };

	run_4_threads(f, add_body, n);
	assert_int_equal(run(f, add_shapes, NULL), 0);
	assert_int_equal(run(f, add_shapes2, NULL), 0);
	assert_int_equal(kv_run(f->e, &ro, add_read, got, NULL), 0);
	assert_int_equal(got[0], 3 * 4 * n);
	assert_int_equal(got[1], -4 * n);
	assert_int_equal(got[2], 6);
	assert_int_equal(got[3], 2);
	assert_int_equal(got[4], INT64_MIN + 1);
}

/* kv_atomic_max: concurrent maxes keep the largest; shapes; no conflict on
 * lmdb and mem (the property directory times rely on). */
static int max_body(kv_txn *t, void *arg)
{
	int *a = arg; /* id, i */
	char mk[32];
	struct kv_slice m;
	int rc;

	snprintf(mk, sizeof(mk), "maxidem/%d/%d", a[0], a[1]);
	TRY(rc = kv_get(t, K(mk), 0, &m));
	if (rc)
		return 0;
	/* Every thread's values interleave; the largest is (n - 1) * 1000 + 3. */
	TRY(kv_atomic_max(t, K("tmax"), (int64_t)a[1] * 1000 + a[0]));
	TRY(kv_atomic_max(t, K("tneg"), -(int64_t)a[1] - 5));
	return kv_set(t, K(mk), K("1"));
}

static int max_shapes(kv_txn *t, void *arg)
{
	struct kv_slice v;
	TRY(kv_atomic_max(t, K("tmax"), 7)); /* smaller: no change */
	TRY(kv_get(t, K("tmax"), 1, &v));    /* read-your-writes merges the max */
	*(int64_t *)arg = le64(v);
	TRY(kv_set(t, K("mset"), kv_mem("\x09\x00\x00\x00\x00\x00\x00\x00", 8)));
	TRY(kv_atomic_max(t, K("mset"), 4)); /* folds into the set: stays 9 */
	TRY(kv_atomic_max(t, K("mset"), 3));
	return 0;
}

static int max_read(kv_txn *t, void *arg)
{
	static const char *const keys[] = { "tmax", "tneg", "mset" };
	return read_i64s(t, keys, 3, arg);
}

static void t_atomic_max(void **state)
{
	struct fx *f = *state;
	int64_t got[3], seen = 0;
	int n = scaled(f, 30);
	struct kv_run_opts ro = { .flags = KV_RDONLY, .max_retries = 400 };

	run_4_threads(f, max_body, n);
	assert_int_equal(run(f, max_shapes, &seen), 0);
	assert_int_equal(kv_run(f->e, &ro, max_read, got, NULL), 0);
	assert_int_equal(got[0], (int64_t)(n - 1) * 1000 + 3);
	assert_int_equal(seen, got[0]);
	assert_int_equal(got[1], -5);
	assert_int_equal(got[2], 9);

	/* add and max on one key in one txn: refused. */
	kv_txn *t;
	assert_int_equal(kv_begin(f->e, 0, &t), 0);
	assert_int_equal(kv_atomic_add(t, K("mix"), 1), 0);
	assert_int_equal(kv_atomic_max(t, K("mix"), 1), -EINVAL);
	kv_txn_free(t);

	/* Two txns raising one key both commit where maxes add no conflict. */
	if (!f->faults && strncmp(be->name, "etcd", 4)) {
		kv_txn *a, *b;
		assert_int_equal(kv_begin(f->e, 0, &a), 0);
		assert_int_equal(kv_begin(f->e, 0, &b), 0);
		struct kv_slice v;
		assert_int_equal(kv_get(a, K("other-a"), 0, &v), 0);
		assert_int_equal(kv_get(b, K("other-b"), 0, &v), 0);
		assert_int_equal(kv_atomic_max(a, K("tmax"), INT64_MAX - 1), 0);
		assert_int_equal(kv_atomic_max(b, K("tmax"), INT64_MAX - 2), 0);
		assert_int_equal(kv_commit(a, NULL), 0);
		assert_int_equal(kv_commit(b, NULL), 0);
		kv_txn_free(a);
		kv_txn_free(b);
		assert_int_equal(kv_run(f->e, &ro, max_read, got, NULL), 0);
		assert_int_equal(got[0], INT64_MAX - 1);
	}
}

/* ---- fault injection is real (and absent when off) ---------------------- */

static int counter_body(kv_txn *t, void *arg)
{
	char k[32];

	snprintf(k, sizeof(k), "fx/%d", (*(int *)arg)++ % 50);
	return kv_set(t, K(k), K("v"));
}

static void t_faults_exercised(void **state)
{
	struct fx *f = *state;
	struct kv_run_opts o = { .max_retries = 400, .backoff_min_us = 1, .backoff_max_us = 50 };
	struct kv_run_stats st;
	int retries = 0, maybe = 0, calls = 0, rc;

	for (int i = 0; i < 300; i++) {
		o.idempotent = 1;
		assert_int_equal(kv_run(f->e, &o, counter_body, &calls, &st), 0);
		retries += st.retries;
		o.idempotent = 0;
		rc = kv_run(f->e, &o, counter_body, &calls, &st);
		if (rc == -CFS_EMAYBE)
			maybe++;
		else
			assert_int_equal(rc, 0);
	}
	print_message("%s: 600 txns, %d retries, %d maybe-committed returned\n", be->name, retries,
		      maybe);
	if (f->faults) {
		assert_true(retries > 0);
		assert_true(maybe > 0);
	} else {
		/* One thread, no contention: nothing to retry. */
		assert_int_equal(retries, 0);
		assert_int_equal(maybe, 0);
	}
}

/* ---- versions ----------------------------------------------------------- */

static void t_versions(void **state)
{
	struct fx *f = *state;
	kv_txn *t;
	int64_t v1 = 0, v2 = 0, cv = 0;

	if (f->faults)
		skip(); /* single commits, no retry */
	assert_int_equal(kv_begin(f->e, KV_RDONLY, &t), 0);
	assert_int_equal(kv_read_version(t, &v1), 0);
	assert_int_equal(kv_commit(t, &cv), 0);
	assert_int_equal(cv, -1);
	kv_txn_free(t);
	assert_int_equal(kv_begin(f->e, 0, &t), 0);
	assert_int_equal(kv_set(t, K("ver"), K("1")), 0);
	assert_int_equal(kv_commit(t, &cv), 0);
	assert_true(cv > v1);
	assert_int_equal(kv_get(t, K("ver"), 0, &(struct kv_slice){ 0 }), -EINVAL);
	kv_txn_free(t);
	assert_int_equal(kv_begin(f->e, KV_RDONLY, &t), 0);
	assert_int_equal(kv_read_version(t, &v2), 0);
	assert_true(v2 >= cv);
	kv_txn_free(t);
	/* A read-write txn without writes commits with no I/O. */
	assert_int_equal(kv_begin(f->e, 0, &t), 0);
	assert_int_equal(kv_get(t, K("ver"), 0, &(struct kv_slice){ 0 }), 1);
	assert_int_equal(kv_commit(t, &cv), 0);
	assert_int_equal(cv, -1);
	kv_txn_free(t);
}

/* ---- multi-key reads ----------------------------------------------------- */

#define GM_KEYS 150 /* over etcd's 128 ops per txn: the backend splits */

static void gm_key(char *b, size_t n, int i) { snprintf(b, n, "gm/%03d", i); }

/* Stores gm/000..GM_KEYS-1 (every third absent, gm/001 empty), in txns of
 * 50 writes. ARG: the first index of this txn's slice. */
static int gm_fill_body(kv_txn *t, void *arg)
{
	int from = *(int *)arg;
	for (int i = from; i < from + 50 && i < GM_KEYS; i++) {
		char k[16], v[64];
		gm_key(k, sizeof(k), i);
		if (i % 3 == 2)
			continue;
		snprintf(v, sizeof(v), "value-%d-%.*s", i, i % 40, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
		TRY(kv_set(t, K(k), i == 1 ? kv_mem(NULL, 0) : K(v)));
	}
	return 0;
}

/* kv_get_multi over N keys of T against kv_get of each (the oracle). */
static int gm_compare(kv_txn *t, int n, const struct kv_slice *keys, int snapshot)
{
	struct kv_slice *vals = calloc((size_t)n, sizeof(*vals)), v;
	int *found = calloc((size_t)n, sizeof(int));
	assert_non_null(vals);
	assert_non_null(found);
	int rc = kv_get_multi(t, n, keys, snapshot, vals, found);
	for (int i = 0; !rc && i < n; i++) {
		int g = kv_get(t, keys[i], snapshot, &v);
		if (g < 0) {
			rc = g;
			break;
		}
		assert_int_equal(found[i], g);
		assert_int_equal(vals[i].n, v.n);
		if (g)
			assert_memory_equal(vals[i].p ? vals[i].p : "", v.p ? v.p : "", v.n);
		else
			assert_null(vals[i].p);
	}
	free(vals);
	free(found);
	return rc;
}

/* Keys: every stored and absent one, some twice, in a mixed order. */
static int gm_keys(char (*names)[16], struct kv_slice *keys)
{
	int n = 0;
	for (int i = 0; i < GM_KEYS + 10; i++) {
		gm_key(names[n], 16, (i * 37) % (GM_KEYS + 10));
		keys[n] = K(names[n]);
		n++;
	}
	for (int i = 0; i < 20; i++) {
		gm_key(names[n], 16, i * 5);
		keys[n] = K(names[n]);
		n++;
	}
	return n;
}

static int gm_ro_body(kv_txn *t, void *arg)
{
	(void)arg;
	static char names[GM_KEYS + 40][16];
	struct kv_slice keys[GM_KEYS + 40];
	int n = gm_keys(names, keys);
	return gm_compare(t, n, keys, 1);
}

/* Own writes answer part of a batch: set, clear, atomic add over a stored
 * and an absent key, a cleared range. */
static int gm_rw_body(kv_txn *t, void *arg)
{
	(void)arg;
	static char names[GM_KEYS + 40][16];
	struct kv_slice keys[GM_KEYS + 40];
	TRY(kv_set(t, K("gm/000"), K("mine")));
	TRY(kv_clear(t, K("gm/003")));
	TRY(kv_set(t, K("gm/002"), K("was absent")));
	TRY(kv_atomic_add(t, K("gm/004"), 7));
	TRY(kv_atomic_add(t, K("gm/005"), 9));
	TRY(kv_clear_range(t, K("gm/010"), K("gm/020")));
	TRY(kv_set(t, K("gm/012"), K("after the clear")));
	int n = gm_keys(names, keys);
	TRY(gm_compare(t, n, keys, 1));
	/* Non-snapshot: up to the conflict limit. */
	TRY(gm_compare(t, 30, keys, 0)); /* 30 + the oracle's 30 conflicts */
	return 0;
}

static void t_get_multi(void **state)
{
	struct fx *f = *state;
	for (int from = 0; from < GM_KEYS; from += 50)
		assert_int_equal(run(f, gm_fill_body, &from), 0);
	struct kv_run_opts ro = { .flags = KV_RDONLY, .max_retries = 400 };
	assert_int_equal(kv_run(f->e, &ro, gm_ro_body, NULL, NULL), 0);
	/* The body's writes never commit: it aborts after comparing. */
	kv_txn *t;
	int rc;
	for (int tries = 0;; tries++) {
		assert_int_equal(kv_begin(f->e, 0, &t), 0);
		rc = gm_rw_body(t, NULL);
		kv_txn_free(t);
		if (!rc || !f->faults || tries > 400)
			break;
	}
	assert_int_equal(rc, 0);
	/* Empty batch; a bad key poisons the txn. */
	assert_int_equal(kv_begin(f->e, KV_RDONLY, &t), 0);
	assert_int_equal(kv_get_multi(t, 0, NULL, 1, NULL, NULL), 0);
	struct kv_slice bad[2] = { K("gm/000"), kv_mem(NULL, 0) }, v2[2];
	int fd2[2];
	assert_int_equal(kv_get_multi(t, 2, bad, 1, v2, fd2), -EINVAL);
	assert_int_equal(kv_get(t, K("gm/000"), 1, &v2[0]), -EINVAL);
	kv_txn_free(t);
	/* Conflict limit: 65 non-snapshot keys in a read-write txn. */
	{
		static char names[GM_KEYS + 40][16];
		struct kv_slice keys[GM_KEYS + 40], vals[GM_KEYS + 40];
		int found[GM_KEYS + 40];
		gm_keys(names, keys);
		assert_int_equal(kv_begin(f->e, 0, &t), 0);
		rc = kv_get_multi(t, KV_MAX_READ_CONFLICTS + 1, keys, 0, vals, found);
		assert_true(rc == -CFS_ETOOLARGE || (f->faults && rc < 0));
		kv_txn_free(t);
	}
	if (f->faults)
		return;
	/* A multi-key read records a conflict on every key it read. */
	{
		struct kv_slice keys[3] = { K("gm/030"), K("gm/031"), K("gm/032") }, vals[3];
		int found[3];
		assert_int_equal(kv_begin(f->e, 0, &t), 0);
		assert_int_equal(kv_get_multi(t, 3, keys, 0, vals, found), 0);
		assert_int_equal(found[0] + found[1] + found[2], 2); /* gm/032 absent */
		assert_int_equal(commit_set(f, "gm/032", "created"), 0);
		assert_int_equal(kv_set(t, K("gm/zz"), K("z")), 0);
		assert_int_equal(kv_commit(t, NULL), -CFS_ECONFLICT);
		kv_txn_free(t);
		/* ... and none with the snapshot flag. */
		assert_int_equal(kv_begin(f->e, 0, &t), 0);
		assert_int_equal(kv_get_multi(t, 3, keys, 1, vals, found), 0);
		assert_int_equal(found[2], 1);
		assert_true(slice_is(vals[2], "created"));
		assert_int_equal(commit_set(f, "gm/031", "changed"), 0);
		assert_int_equal(kv_set(t, K("gm/zz"), K("z")), 0);
		assert_int_equal(kv_commit(t, NULL), 0);
		kv_txn_free(t);
		/* The read version holds for a multi-key read after a point read. */
		assert_int_equal(kv_begin(f->e, KV_RDONLY, &t), 0);
		assert_int_equal(kv_get(t, K("gm/000"), 1, &vals[0]), 1);
		assert_int_equal(commit_set(f, "gm/030", "later"), 0);
		assert_int_equal(commit_clear(f, "gm/031"), 0);
		assert_int_equal(kv_get_multi(t, 3, keys, 1, vals, found), 0);
		assert_int_equal(found[0] + found[1] + found[2], 3);
		assert_false(slice_is(vals[0], "later"));
		assert_true(slice_is(vals[1], "changed"));
		kv_txn_free(t);
	}
}

/* ---- main --------------------------------------------------------------- */

#define T(fn) cmocka_unit_test_setup_teardown(fn, fx_setup, fx_teardown)

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		T(t_read_your_writes),
		T(t_ranges),
		T(t_clear_range),
		T(t_snapshot_no_conflict),
		T(t_point_conflict),
		T(t_phantom_insert),
		T(t_range_delete_update),
		T(t_explicit_key_conflict),
		T(t_transfers_keep_sum),
		T(t_write_skew_prevented),
		T(t_retry_helper),
		T(t_retry_real_conflict),
		T(t_limits),
		T(t_atomic_add),
		T(t_atomic_max),
		T(t_faults_exercised),
		T(t_versions),
		T(t_get_multi),
	};
	int rc;

	if (argc != 2) {
		fprintf(stderr, "usage: %s BACKEND\n", argv[0]);
		return 2;
	}
	for (size_t i = 0; i < sizeof(backends) / sizeof(backends[0]); i++)
		if (!strcmp(backends[i].name, argv[1]))
			be = &backends[i];
	if (!be) {
		fprintf(stderr, "%s: no backend '%s' in the table\n", argv[0], argv[1]);
		return 1;
	}
	rc = be->setup(&be_priv);
	if (rc == 77)
		return 77;
	if (rc) {
		fprintf(stderr, "%s: setup of %s failed: %d\n", argv[0], be->name, rc);
		return 1;
	}
	rc = _cmocka_run_group_tests(be->name, tests, sizeof(tests) / sizeof(tests[0]), NULL, NULL);
	be->teardown(be_priv);
	testenv_cleanup();
	return rc ? 1 : 0;
}
