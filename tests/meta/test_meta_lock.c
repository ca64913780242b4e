/* test_meta_lock.c - the lock table (meta_lock.h): range semantics on the
 * pure table, then the KV operations (set, test, release, prune of dead
 * clients, mutual exclusion between threads of different clients) on each
 * KV URL of the run (meta_fixture.h). Built a second time with
 * META_LOCK_TEST_ETCD, it starts a real one-member etcd (tests/kv
 * etcd_cluster) and runs the KV group there (exit 77 without etcd).
 * The kernel itself is the oracle for range semantics in
 * tests/integ/test_integ_locks.c; here the cases are the ones fs/locks.c
 * documents (split, merge, upgrade, flock conversion). */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "common/buf.h"
#include "common/status.h"
#include "meta/meta_lock.h"
#include "meta_fixture.h"

static struct fx F;
static meta_ctx *M;

static struct meta_lock LK(uint64_t client, uint64_t owner, int kind, int type, uint64_t s,
			   uint64_t e)
{
	struct meta_lock l = { client, owner, 100 + (uint32_t)owner, (uint8_t)kind, (uint8_t)type,
			       s, e };
	return l;
}
#define PX(c, o, t, s, e) LK(c, o, META_LOCK_POSIX, t, s, e)
#define FL(c, o, t) LK(c, o, META_LOCK_FLOCK, t, 0, META_LOCK_EOF)
#define RD META_LOCK_RD
#define WR META_LOCK_WR
#define UN META_LOCK_UN
#define EOFR META_LOCK_EOF

static void expect(const struct meta_lock_table *t, size_t i, uint64_t owner, int type,
		   uint64_t s, uint64_t e)
{
	assert_true(i < t->n);
	assert_int_equal(t->v[i].owner, owner);
	assert_int_equal(t->v[i].type, type);
	assert_int_equal(t->v[i].start, s);
	assert_int_equal(t->v[i].end, e);
}

static int apply(struct meta_lock_table *t, struct meta_lock l)
{
	return meta_lock_table_apply(t, &l, NULL);
}

/* ---- pure table ---- */

static void test_posix_split_merge(void **state)
{
	struct meta_lock_table t = { 0 };
	assert_int_equal(apply(&t, PX(1, 1, WR, 0, 99)), 0);
	/* Unlock the middle: two pieces. */
	assert_int_equal(apply(&t, PX(1, 1, UN, 40, 59)), 0);
	assert_int_equal(t.n, 2);
	expect(&t, 0, 1, WR, 0, 39);
	expect(&t, 1, 1, WR, 60, 99);
	/* A read lock over the hole and part of both: split + downgrade. */
	assert_int_equal(apply(&t, PX(1, 1, RD, 30, 69)), 0);
	assert_int_equal(t.n, 3);
	expect(&t, 0, 1, WR, 0, 29);
	expect(&t, 1, 1, RD, 30, 69);
	expect(&t, 2, 1, WR, 70, 99);
	/* Upgrade the middle: everything merges back into one. */
	assert_int_equal(apply(&t, PX(1, 1, WR, 30, 69)), 0);
	assert_int_equal(t.n, 1);
	expect(&t, 0, 1, WR, 0, 99);
	/* Adjacent same-type ranges merge, to EOF too. */
	assert_int_equal(apply(&t, PX(1, 1, WR, 100, EOFR)), 0);
	assert_int_equal(t.n, 1);
	expect(&t, 0, 1, WR, 0, EOFR);
	/* Unlock from 10 to EOF leaves [0, 9]. */
	assert_int_equal(apply(&t, PX(1, 1, UN, 10, EOFR)), 0);
	assert_int_equal(t.n, 1);
	expect(&t, 0, 1, WR, 0, 9);
	assert_int_equal(apply(&t, PX(1, 1, UN, 0, EOFR)), 0);
	assert_int_equal(t.n, 0);
	meta_lock_table_free(&t);
}

static void test_posix_conflicts(void **state)
{
	struct meta_lock_table t = { 0 };
	struct meta_lock c;
	assert_int_equal(apply(&t, PX(1, 1, RD, 0, 9)), 0);
	assert_int_equal(apply(&t, PX(2, 7, RD, 5, 14)), 0); /* readers share */
	assert_int_equal(meta_lock_table_apply(&t, &(struct meta_lock){ 3, 1, 0, META_LOCK_POSIX,
							WR, 8, 8 }, &c), -EAGAIN);
	/* The first conflicting lock in table order (holders by first lock). */
	assert_int_equal(c.client, 1);
	assert_int_equal(c.start, 0);
	assert_int_equal(c.end, 9);
	struct meta_lock q = PX(3, 1, WR, 10, 20);
	assert_int_equal(meta_lock_table_test(&t, &q, &c), 1);
	assert_int_equal(c.client, 2);
	assert_int_equal(c.pid, 107);
	/* Same owner on another client is another holder. */
	q = PX(2, 1, WR, 15, 20);
	assert_int_equal(meta_lock_table_test(&t, &q, NULL), 0);
	/* A holder upgrading within its own lock while another reads: conflict. */
	assert_int_equal(apply(&t, PX(1, 1, WR, 0, 9)), -EAGAIN);
	assert_int_equal(apply(&t, PX(1, 1, WR, 0, 4)), 0);
	assert_int_equal(t.n, 3);
	/* flock locks never meet POSIX ones. */
	assert_int_equal(apply(&t, FL(9, 9, WR)), 0);
	assert_int_equal(meta_lock_table_drop(&t, 1, 1, 0, META_LOCK_KIND_BIT(META_LOCK_POSIX)), 2);
	assert_int_equal(meta_lock_table_drop(&t, 9, 0, 1, META_LOCK_ALL_KINDS), 1);
	assert_int_equal(t.n, 1);
	meta_lock_table_free(&t);
}

static void test_flock(void **state)
{
	struct meta_lock_table t = { 0 };
	assert_int_equal(apply(&t, FL(1, 1, RD)), 0);
	assert_int_equal(apply(&t, FL(2, 2, RD)), 0);
	assert_int_equal(apply(&t, FL(1, 1, RD)), 0); /* same again: no-op */
	assert_int_equal(t.n, 2);
	/* Upgrade against another reader fails and loses the old lock, as
	 * Linux's flock_lock_inode does. */
	assert_int_equal(apply(&t, FL(1, 1, WR)), -EAGAIN);
	assert_int_equal(t.n, 1);
	assert_int_equal(t.v[0].owner, 2);
	assert_int_equal(apply(&t, FL(2, 2, WR)), 0);
	assert_int_equal(t.n, 1);
	assert_int_equal(t.v[0].type, WR);
	assert_int_equal(apply(&t, FL(2, 2, UN)), 0);
	assert_int_equal(t.n, 0);
	/* Bad requests. */
	struct meta_lock bad = PX(1, 1, WR, 9, 3);
	assert_int_equal(meta_lock_table_apply(&t, &bad, NULL), -EINVAL);
	bad = LK(1, 1, 7, WR, 0, 1);
	assert_int_equal(meta_lock_table_apply(&t, &bad, NULL), -EINVAL);
	meta_lock_table_free(&t);
}

static void test_codec(void **state)
{
	struct meta_lock_table t = { 0 }, u = { 0 };
	struct buf b = BUF_INIT;
	assert_int_equal(apply(&t, PX(1, 1, WR, 0, 9)), 0);
	assert_int_equal(apply(&t, PX(1, 1, RD, 20, 29)), 0);
	assert_int_equal(apply(&t, FL(2, 5, RD)), 0);
	assert_int_equal(meta_lock_encode(&t, &b), 0);
	assert_int_equal(meta_lock_decode(b.data, b.len, &u), 0);
	assert_int_equal(u.n, 3);
	for (size_t i = 0; i < 3; i++) { /* field by field: the struct has padding */
		assert_int_equal(u.v[i].client, t.v[i].client);
		assert_int_equal(u.v[i].owner, t.v[i].owner);
		assert_int_equal(u.v[i].pid, t.v[i].pid);
		assert_int_equal(u.v[i].kind, t.v[i].kind);
		assert_int_equal(u.v[i].type, t.v[i].type);
		assert_int_equal(u.v[i].start, t.v[i].start);
		assert_int_equal(u.v[i].end, t.v[i].end);
	}
	/* Every single-byte corruption and every truncation is refused. */
	for (size_t i = 0; i < b.len; i++) {
		b.data[i] ^= 0x20;
		assert_int_equal(meta_lock_decode(b.data, b.len, &u), -CFS_ECORRUPT);
		b.data[i] ^= 0x20;
		assert_int_equal(meta_lock_decode(b.data, i, &u), -CFS_ECORRUPT);
	}
	meta_lock_table_free(&t);
	meta_lock_table_free(&u);
	buf_fini(&b);
}

/* ---- over the KV store ---- */

static int setup(void **state) { return fx_setup_meta(&F, &M); }

static int teardown(void **state) { return fx_teardown_meta(&F, &M); }

static void test_kv_set_get_release(void **state)
{
	struct meta_lock l = PX(11, 1, WR, 0, 99), c, list[8];
	assert_int_equal(meta_lock_set(M, 500, &l, NULL), 0);
	l = PX(12, 1, RD, 50, 50);
	assert_int_equal(meta_lock_set(M, 500, &l, &c), -EAGAIN);
	assert_int_equal(c.client, 11);
	assert_int_equal(meta_lock_get(M, 500, &l, &c), 1);
	assert_int_equal(c.end, 99);
	/* Other inodes are independent. */
	assert_int_equal(meta_lock_set(M, 501, &l, NULL), 0);
	/* Releasing client 11's owner 1 lets client 12 in. */
	assert_int_equal(meta_lock_release(M, 500, 11, 2, 0, META_LOCK_ALL_KINDS), 0);
	assert_int_equal(meta_lock_release(M, 500, 11, 1, 0, META_LOCK_KIND_BIT(META_LOCK_FLOCK)),
			 0);
	assert_int_equal(meta_lock_release(M, 500, 11, 1, 0, META_LOCK_ALL_KINDS), 1);
	assert_int_equal(meta_lock_get(M, 500, &l, NULL), 0);
	assert_int_equal(meta_lock_set(M, 500, &l, NULL), 0);
	assert_int_equal(meta_lock_list(M, 500, list, 8), 1);
	assert_int_equal(list[0].client, 12);
	/* Unlocking everything removes the record. */
	l.type = UN;
	assert_int_equal(meta_lock_set(M, 500, &l, NULL), 0);
	assert_int_equal(meta_lock_list(M, 500, list, 8), 0);
	l = PX(12, 1, WR, 5, 1);
	assert_int_equal(meta_lock_set(M, 500, &l, NULL), -EINVAL);
}

static int dead_13(void *arg, uint64_t client)
{
	(void)arg;
	return client == 13;
}

static void test_kv_prune(void **state)
{
	struct meta_lock l, list[8];
	for (uint64_t ino = 600; ino < 605; ino++) {
		l = PX(13, 1, WR, 0, 9);
		assert_int_equal(meta_lock_set(M, ino, &l, NULL), 0);
		l = FL(13, 2, RD);
		assert_int_equal(meta_lock_set(M, ino, &l, NULL), 0);
		l = PX(14, 1, RD, 10, 19);
		assert_int_equal(meta_lock_set(M, ino, &l, NULL), 0);
	}
	assert_int_equal(meta_lock_prune(M, dead_13, NULL), 10);
	assert_int_equal(meta_lock_prune(M, dead_13, NULL), 0);
	for (uint64_t ino = 600; ino < 605; ino++) {
		assert_int_equal(meta_lock_list(M, ino, list, 8), 1);
		assert_int_equal(list[0].client, 14);
	}
}

/* Threads of different clients take one write lock in turn (retrying on
 * -EAGAIN, as a waiting mount does) and increment a counter inside it
 * non-atomically: exclusion holds when none of the increments is lost and
 * no two threads were ever inside at once. */
#define EXCL_THREADS 4
#define EXCL_ROUNDS 25
static volatile int inside, max_inside;
static volatile long counter;

static void *excl_main(void *arg)
{
	uint64_t client = (uint64_t)(uintptr_t)arg;
	for (int i = 0; i < EXCL_ROUNDS; i++) {
		struct meta_lock l = PX(client, 1, WR, 100, 199);
		int rc;
		while ((rc = meta_lock_set(M, 700, &l, NULL)) == -EAGAIN)
			;
		if (rc)
			return (void *)(intptr_t)rc;
		int in = __atomic_add_fetch(&inside, 1, __ATOMIC_SEQ_CST);
		if (in > max_inside)
			max_inside = in;
		long v = counter;
		for (volatile int k = 0; k < 1000; k++)
			;
		counter = v + 1;
		__atomic_sub_fetch(&inside, 1, __ATOMIC_SEQ_CST);
		l.type = UN;
		if ((rc = meta_lock_set(M, 700, &l, NULL)))
			return (void *)(intptr_t)rc;
	}
	return NULL;
}

static void test_kv_exclusion(void **state)
{
	pthread_t th[EXCL_THREADS];
	counter = 0;
	max_inside = 0;
	for (int i = 0; i < EXCL_THREADS; i++)
		assert_int_equal(pthread_create(&th[i], NULL, excl_main, (void *)(uintptr_t)(20 + i)),
				 0);
	for (int i = 0; i < EXCL_THREADS; i++) {
		void *ret;
		pthread_join(th[i], &ret);
		assert_null(ret);
	}
	assert_int_equal(counter, EXCL_THREADS * EXCL_ROUNDS);
	assert_int_equal(max_inside, 1);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest pure[] = {
		cmocka_unit_test(test_posix_split_merge),
		cmocka_unit_test(test_posix_conflicts),
		cmocka_unit_test(test_flock),
		cmocka_unit_test(test_codec),
	};
	const struct CMUnitTest kv[] = {
		cmocka_unit_test_setup_teardown(test_kv_set_get_release, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kv_prune, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kv_exclusion, setup, teardown),
	};
	int fails = cmocka_run_group_tests_name("lock table", pure, NULL, NULL);
#ifdef META_LOCK_TEST_ETCD
	const char *etcd = "locks";
#else
	const char *etcd = NULL;
#endif
	int rc = fx_run_groups("meta locks", kv, sizeof(kv) / sizeof(kv[0]), argc, argv, etcd);
	return fails ? 1 : rc;
}
