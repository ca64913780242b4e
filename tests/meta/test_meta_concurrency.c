/* test_meta_concurrency.c - several meta instances (one per thread, as
 * separate processes would be) over one KV store.
 *
 * 1. Namespace churn: each thread creates, links, renames and unlinks its
 *    own files in shared directories, and races mkdir/rmdir of shared
 *    subdirectories against creates in them. Each thread keeps an exact
 *    model of its files; afterwards every modelled file is found where the
 *    model says (no lost files), nothing else of the thread exists, fsck
 *    finds no dangling dentry, nlink mismatch, orphan or cycle, and GC
 *    empties its queue.
 * 2. Racing directory renames: threads move six directories into each
 *    other's subtrees at random. Refusals (EINVAL) and stale parents
 *    (ENOENT) are expected; afterwards every directory is reachable from
 *    the root and parent fields agree with dentries (no cycle committed).
 * Threads count failures in atomics; the main thread asserts. Every loop is
 * bounded by a count and a deadline.
 */
#include <errno.h>
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
#include "meta_fixture.h"

#define N(s) meta_name_c(s)
#define R1 META_ROOT_INO
#define THREADS 4
#define NDIRS 3
#define RUN_MS 1500
#define MAX_OPS 3000
#define MAX_FILES 64

static struct fx F;
static uint64_t dirs[NDIRS];
static atomic_int failures;
static atomic_int ops_done;

static void fail_(const char *what, int rc, int line)
{
	fprintf(stderr, "thread failure at line %d: %s: %s\n", line, what, cfs_strerror(rc));
	atomic_fetch_add(&failures, 1);
}
#define FAIL(what, rc) fail_(what, rc, __LINE__)

struct mfile {
	uint64_t ino;
	int dir;               /* index into dirs */
	char name[32];
	int linked;            /* has a second name lname in dirs[link_dir] */
	char lname[48];
	int link_dir;
};

struct worker {
	int id;
	uint64_t seed;
	meta_ctx *m;
	struct mfile files[MAX_FILES];
	int nfiles, serial;
};

static uint64_t rnd(struct worker *w)
{
	return meta_splitmix64(&w->seed);
}

static void churn_one(struct worker *w)
{
	struct meta_inode in;
	struct meta_req rq = { (uint64_t)w->id + 100, 0, 0 };
	static atomic_ullong seq = 1;
	rq.seq = atomic_fetch_add(&seq, 1);
	int rc, op = (int)(rnd(w) % 6);
	struct mfile *f = w->nfiles ? &w->files[rnd(w) % (uint64_t)w->nfiles] : NULL;
	char name[48];
	switch (op) {
	case 0: /* create */
		if (w->nfiles == MAX_FILES)
			break;
		f = &w->files[w->nfiles];
		f->dir = (int)(rnd(w) % NDIRS);
		snprintf(f->name, sizeof(f->name), "t%d_%d", w->id, w->serial++);
		rc = meta_create(w->m, &FX_ROOT, &rq, dirs[f->dir], N(f->name), 0644, META_O_EXCL,
				 &in, NULL);
		if (rc) {
			FAIL("create", rc);
			break;
		}
		f->ino = in.ino;
		f->linked = 0;
		w->nfiles++;
		break;
	case 1: /* rename to a fresh name in a random directory */
		if (!f)
			break;
		{
			int nd = (int)(rnd(w) % NDIRS);
			char nn[32];
			snprintf(nn, sizeof(nn), "t%d_%d", w->id, w->serial++);
			rc = meta_rename(w->m, &FX_ROOT, &rq, dirs[f->dir], N(f->name), dirs[nd],
					 N(nn), 0);
			if (rc) {
				FAIL("rename", rc);
				break;
			}
			f->dir = nd;
			memcpy(f->name, nn, sizeof(nn));
		}
		break;
	case 2: /* hard link */
		if (!f || f->linked)
			break;
		f->link_dir = (int)(rnd(w) % NDIRS);
		snprintf(f->lname, sizeof(f->lname), "%sL", f->name);
		rc = meta_link(w->m, &FX_ROOT, &rq, f->ino, dirs[f->link_dir], N(f->lname), &in);
		if (rc) {
			FAIL("link", rc);
			break;
		}
		f->linked = 1;
		break;
	case 3: /* unlink (the extra link first) */
		if (!f)
			break;
		if (f->linked) {
			rc = meta_unlink(w->m, &FX_ROOT, &rq, dirs[f->link_dir], N(f->lname));
			if (rc)
				FAIL("unlink link", rc);
			f->linked = 0;
			break;
		}
		rc = meta_unlink(w->m, &FX_ROOT, &rq, dirs[f->dir], N(f->name));
		if (rc)
			FAIL("unlink", rc);
		*f = w->files[--w->nfiles];
		break;
	case 4: /* shared subdirectory: mkdir or rmdir, both may lose races */
		snprintf(name, sizeof(name), "s%d", (int)(rnd(w) % 2));
		if (rnd(w) % 2) {
			rc = meta_mkdir(w->m, &FX_ROOT, &rq, dirs[0], N(name), 0755, &in);
			if (rc && rc != -EEXIST)
				FAIL("mkdir", rc);
		} else {
			rc = meta_rmdir(w->m, &FX_ROOT, &rq, dirs[0], N(name));
			if (rc && rc != -ENOENT && rc != -ENOTEMPTY)
				FAIL("rmdir", rc);
		}
		break;
	default: { /* create in a shared subdirectory, then unlink it again */
		struct meta_inode sub;
		snprintf(name, sizeof(name), "s%d", (int)(rnd(w) % 2));
		rc = meta_lookup(w->m, &FX_ROOT, dirs[0], N(name), &sub);
		if (rc) {
			if (rc != -ENOENT)
				FAIL("lookup", rc);
			break;
		}
		char fn[32];
		snprintf(fn, sizeof(fn), "x%d", w->id);
		rc = meta_create(w->m, &FX_ROOT, &rq, sub.ino, N(fn), 0644, META_O_EXCL, &in, NULL);
		if (rc) {
			if (rc != -ENOENT) /* the subdirectory was removed meanwhile */
				FAIL("create in sub", rc);
			break;
		}
		rq.seq = atomic_fetch_add(&seq, 1);
		/* while it holds a file the subdirectory cannot be removed */
		rc = meta_unlink(w->m, &FX_ROOT, &rq, sub.ino, N(fn));
		if (rc)
			FAIL("unlink in sub", rc);
		break;
	}
	}
}

static void *churn_thread(void *arg)
{
	struct worker *w = arg;
	uint64_t end = clock_mono_ms() + RUN_MS;
	for (int i = 0; i < MAX_OPS && clock_mono_ms() < end; i++) {
		churn_one(w);
		atomic_fetch_add(&ops_done, 1);
	}
	return NULL;
}

static int setup(void **state)
{
	fx_setup(&F);
	atomic_store(&failures, 0);
	atomic_store(&ops_done, 0);
	return 0;
}

static int teardown(void **state)
{
	fx_teardown(&F);
	return 0;
}

static void check_fsck(meta_ctx *m, int expect_gc_empty)
{
	struct meta_fsck_report r;
	assert_int_equal(meta_fsck(m, NULL, 0, &r), 0);
	fx_assert_fsck_clean(&r);
	if (expect_gc_empty)
		assert_int_equal(r.gc_pending, 0);
}

static void test_churn(void **state)
{
	static struct worker w[THREADS];
	pthread_t th[THREADS];
	meta_ctx *m0 = fx_meta(&F, 1000);
	char name[16];
	for (int i = 0; i < NDIRS; i++) {
		struct meta_inode in;
		struct meta_req rq = { 1, (uint64_t)i + 1, 0 };
		snprintf(name, sizeof(name), "D%d", i);
		assert_int_equal(meta_mkdir(m0, &FX_ROOT, &rq, R1, N(name), 0777, &in), 0);
		dirs[i] = in.ino;
	}
	for (int i = 0; i < THREADS; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].id = i;
		w[i].seed = 0x1234 + (uint64_t)i;
		w[i].m = fx_meta(&F, (uint64_t)i + 1);
		assert_int_equal(pthread_create(&th[i], NULL, churn_thread, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(atomic_load(&failures), 0);
	print_message("churn: %d operations by %d instances\n", atomic_load(&ops_done), THREADS);
	assert_true(atomic_load(&ops_done) > THREADS * 20);

	/* every modelled file is where the model says, with its links */
	int expected_entries = 0;
	for (int i = 0; i < THREADS; i++) {
		for (int j = 0; j < w[i].nfiles; j++) {
			struct mfile *f = &w[i].files[j];
			struct meta_inode in;
			assert_int_equal(meta_lookup(m0, &FX_ROOT, dirs[f->dir], N(f->name), &in), 0);
			assert_int_equal(in.ino, f->ino);
			assert_int_equal(in.nlink, 1 + f->linked);
			expected_entries += 1 + f->linked;
		}
	}
	/* and nothing else of the threads exists */
	int found = 0;
	for (int d = 0; d < NDIRS; d++) {
		struct meta_dirent ents[32];
		char cursor[META_NAME_MAX + 1] = "";
		int n, eof = 0;
		for (int round = 0; round < 1000 && !eof; round++) {
			assert_int_equal(meta_readdir(m0, &FX_ROOT, dirs[d], N(cursor), ents, 32, &n,
						      &eof), 0);
			for (int k = 0; k < n; k++)
				found += ents[k].name[0] == 't';
			if (n)
				snprintf(cursor, sizeof(cursor), "%s", ents[n - 1].name);
		}
	}
	assert_int_equal(found, expected_entries);
	check_fsck(m0, 0);
	for (int i = 0; i < 10000; i++) {
		int rc = meta_gc_step(w[i % THREADS].m);
		assert_true(rc >= 0);
		if (rc == 0 && meta_gc_step(m0) == 0)
			break;
	}
	check_fsck(m0, 1);
	uint64_t txns = 0, retries = 0;
	for (int i = 0; i < THREADS; i++) {
		struct meta_stats st;
		meta_get_stats(w[i].m, &st);
		txns += st.txns;
		retries += st.retries;
		meta_free(w[i].m);
	}
	print_message("churn: %llu txns, %llu retries\n", (unsigned long long)txns,
		      (unsigned long long)retries);
	assert_true(txns >= (uint64_t)atomic_load(&ops_done));
	meta_free(m0);
}

/* ---- racing directory renames ---- */

#define LOOP_DIRS 6

static uint64_t loop_dirs[LOOP_DIRS];
static atomic_int loop_refused, loop_moved;

static void *loop_thread(void *arg)
{
	struct worker *w = arg;
	uint64_t end = clock_mono_ms() + RUN_MS;
	static atomic_ullong seq = 1;
	for (int i = 0; i < MAX_OPS && clock_mono_ms() < end; i++) {
		int x = (int)(rnd(w) % LOOP_DIRS), y = (int)(rnd(w) % (LOOP_DIRS + 1));
		uint64_t dst = y == LOOP_DIRS ? R1 : loop_dirs[y];
		struct meta_inode in;
		struct meta_req rq = { (uint64_t)w->id + 500, atomic_fetch_add(&seq, 1), 0 };
		char name[16];
		snprintf(name, sizeof(name), "L%d", x);
		int rc = meta_getattr(w->m, loop_dirs[x], &in);
		if (rc) {
			FAIL("getattr", rc);
			continue;
		}
		rc = meta_rename(w->m, &FX_ROOT, &rq, in.parent, N(name), dst, N(name), 0);
		if (rc == 0)
			atomic_fetch_add(&loop_moved, 1);
		else if (rc == -EINVAL)
			atomic_fetch_add(&loop_refused, 1);
		else if (rc != -ENOENT) /* moved by someone else since getattr */
			FAIL("rename dir", rc);
	}
	return NULL;
}

static void test_rename_loops(void **state)
{
	static struct worker w[THREADS];
	pthread_t th[THREADS];
	meta_ctx *m0 = fx_meta(&F, 1000);
	char name[16];
	atomic_store(&loop_refused, 0);
	atomic_store(&loop_moved, 0);
	for (int i = 0; i < LOOP_DIRS; i++) {
		struct meta_inode in;
		struct meta_req rq = { 1, (uint64_t)i + 1, 0 };
		snprintf(name, sizeof(name), "L%d", i);
		assert_int_equal(meta_mkdir(m0, &FX_ROOT, &rq, R1, N(name), 0777, &in), 0);
		loop_dirs[i] = in.ino;
	}
	for (int i = 0; i < THREADS; i++) {
		memset(&w[i], 0, sizeof(w[i]));
		w[i].id = i;
		w[i].seed = 0x777 + (uint64_t)i;
		w[i].m = fx_meta(&F, (uint64_t)i + 1);
		assert_int_equal(pthread_create(&th[i], NULL, loop_thread, &w[i]), 0);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(atomic_load(&failures), 0);
	print_message("rename race: %d moves, %d refused as loops\n", atomic_load(&loop_moved),
		      atomic_load(&loop_refused));
	assert_true(atomic_load(&loop_moved) > 0);
	assert_true(atomic_load(&loop_refused) > 0);
	/* every directory still reaches the root through its dentries */
	for (int i = 0; i < LOOP_DIRS; i++) {
		struct meta_inode in, parent;
		uint64_t cur = loop_dirs[i];
		int depth = 0;
		while (cur != R1 && depth++ <= LOOP_DIRS) {
			assert_int_equal(meta_getattr(m0, cur, &in), 0);
			assert_int_equal(meta_getattr(m0, in.parent, &parent), 0);
			cur = in.parent;
		}
		assert_int_equal(cur, R1);
	}
	check_fsck(m0, 1);
	for (int i = 0; i < THREADS; i++)
		meta_free(w[i].m);
	meta_free(m0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_churn, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rename_loops, setup, teardown),
	};
	return fx_run_groups("meta concurrency", tests, sizeof(tests) / sizeof(tests[0]), argc, argv,
			     NULL);
}
