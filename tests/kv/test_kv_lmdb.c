/* test_kv_lmdb.c - what only the LMDB backend promises.
 *
 * - Group commit: 64 threads committing at once share write txns (fewer
 *   batches than txns) and every commit is present afterwards.
 * - Durability: a child process runs committing threads and reports each
 *   key through a pipe only after kv_commit returned 0; the parent kills it
 *   with SIGKILL at a random moment, reopens the environment and finds every
 *   reported key.
 * - Several processes share one environment: transfers from two child
 *   processes and the parent keep the total constant (conflicts are
 *   validated across processes).
 * - A full map gives -ENOSPC for that txn only; the engine stays usable.
 * - A full reader table gives -CFS_EUNAVAIL; stale slots of a killed
 *   process are reclaimed.
 * - sync=window: commits survive kill -9 at once; kv_flush and the
 *   background sync make them durable (a copy of the files right after
 *   kv_flush holds them).
 * - sync=window, a failed sync (fsyncgate): once a sync of the file failed,
 *   every later kv_flush fails too, until the engine is reopened; the
 *   kernel reports a writeback error to one fsync only and may have
 *   dropped the pages, so a later sync's success proves nothing
 *   (t_window_sync_failed); also when the failed sync was the online
 *   compaction's first step (t_compact_sync_failed). And from then on
 *   every commit fails with -EIO (reads go on) until the store is
 *   reopened, in this process and in the others open on the store
 *   (t_sync_failed_other_process), and in an engine opened while the
 *   failed one is still open (t_sync_failed_open_beside).
 * - compact=1 (default): an environment whose free list dominates is
 *   rewritten without it at open (smaller file, same contents, writable),
 *   a left-over copy of an interrupted compaction is removed, and nothing
 *   is compacted while another process has the environment open or with
 *   compact=0.
 * - compact=1 online: a running engine whose free list dominates is
 *   compacted in place by its background thread (file shrinks, contents
 *   intact, versions keep increasing, commits racing with it succeed
 *   through kv_run's retry, an open read txn keeps its values and holds
 *   the compaction off); a process killed at any step of it leaves an
 *   environment that opens with every acknowledged key.
 * - Waits and the block hint: a commit calls the thread's block hint
 *   (block_hint.h) before it waits on LMDB's writer lock held by another
 *   process, and with sync=full (an fdatasync), but not when it will not
 *   wait (sync=window, lock free).
 * - URL and option errors are reported, not crashed on.
 * - kv_run_stats.alone (writemap and not): 1 for a write committed onto its
 *   own snapshot; 0 when another write committed after the snapshot (made
 *   from inside the body), for a read-only run, and for a run whose body
 *   wrote nothing; the engine reports it (kv_reports_alone), mem does not.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "common/block_hint.h"
#include "common/clock.h"
#include "common/status.h"
#include "kv/kv.h"
#include "kv/kv_int.h"
#include "lmdb_holder.h"
#include "testenv.h"

static char *dir;
static int ndir;

/* Children forked by a test; killed by pid if the test fails midway. */
static pid_t children[4];

static pid_t child_fork(void)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	for (int i = 0; pid > 0 && i < 4; i++)
		if (!children[i]) {
			children[i] = pid;
			break;
		}
	return pid;
}

/* SIGKILL and reap; returns the wait status. */
static int child_kill(pid_t pid)
{
	int st = 0;

	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	for (int i = 0; i < 4; i++)
		if (children[i] == pid)
			children[i] = 0;
	return st;
}

static int reap_children(void **state)
{
	for (int i = 0; i < 4; i++)
		if (children[i])
			child_kill(children[i]);
	return 0;
}

static void fresh_url(char *buf, size_t len, const char *opts)
{
	snprintf(buf, len, "lmdb://%s/e%d%s", dir, ndir++, opts ? opts : "");
}

static kv_engine *open_ok(const char *url)
{
	char err[256];
	kv_engine *e = NULL;

	if (kv_open(url, &e, err, sizeof(err)))
		fail_msg("kv_open %s: %s", url, err);
	return e;
}

/* Forks a child that opens URL, begins NREAD read txns (the first reads
 * KEY when not NULL, so its snapshot is taken) and then waits to be
 * killed; returns its pid once it holds them. */
static pid_t child_reader(const char *url, int nread, const char *key)
{
	int pfd[2];
	char c;

	assert_int_equal(pipe(pfd), 0);
	pid_t pid = child_fork();
	if (pid == 0) {
		char err[256];
		kv_engine *ce;
		kv_txn *t;
		struct kv_slice v;
		if (kv_open(url, &ce, err, sizeof(err)))
			_exit(2);
		for (int i = 0; i < nread; i++)
			if (kv_begin(ce, KV_RDONLY, &t) ||
			    (i == 0 && key && kv_get(t, kv_str(key), 1, &v) != 1))
				_exit(2);
		if (write(pfd[1], "r", 1) != 1)
			_exit(3);
		pause();
		_exit(0);
	}
	close(pfd[1]);
	assert_int_equal(read(pfd[0], &c, 1), 1);
	close(pfd[0]);
	return pid;
}

/* ---- group commit ------------------------------------------------------- */

#define GC_THREADS 64
#define GC_PER_THREAD 20

struct gc_arg {
	kv_engine *e;
	int id, failed;
};

static int gc_body(kv_txn *t, void *arg)
{
	int *ki = arg;
	char k[32], v[32];
	struct kv_slice old;
	int rc;

	snprintf(k, sizeof(k), "gc/%02d/%03d", ki[0], ki[1]);
	snprintf(v, sizeof(v), "value-%d-%d", ki[0], ki[1]);
	/* A conflict read as the meta service's create does. */
	if ((rc = kv_get(t, kv_str(k), 0, &old)) < 0)
		return rc;
	return kv_set(t, kv_str(k), kv_str(v));
}

static void *gc_thread(void *p)
{
	struct gc_arg *a = p;

	for (int i = 0; i < GC_PER_THREAD; i++) {
		int ki[2] = { a->id, i };
		if (kv_run(a->e, NULL, gc_body, ki, NULL))
			a->failed++;
	}
	return NULL;
}

static void group_commit_64(const char *opts)
{
	char url[512];
	kv_engine *e;
	pthread_t tid[GC_THREADS];
	struct gc_arg a[GC_THREADS];
	uint64_t batches = 0, txns = 0;
	struct kv_range r;
	kv_txn *t;

	fresh_url(url, sizeof(url), opts);
	e = open_ok(url);
	for (int i = 0; i < GC_THREADS; i++) {
		a[i] = (struct gc_arg){ e, i, 0 };
		assert_int_equal(pthread_create(&tid[i], NULL, gc_thread, &a[i]), 0);
	}
	for (int i = 0; i < GC_THREADS; i++) {
		pthread_join(tid[i], NULL);
		assert_int_equal(a[i].failed, 0);
	}
	kv_lmdb_stats(e, &batches, &txns);
	print_message("group commit: %llu txns in %llu write txns (%.1f per sync)\n",
		      (unsigned long long)txns, (unsigned long long)batches,
		      batches ? (double)txns / (double)batches : 0.0);
	assert_int_equal(txns, GC_THREADS * GC_PER_THREAD);
	assert_true(batches < txns); /* 64 concurrent committers shared syncs */
	assert_int_equal(kv_begin(e, KV_RDONLY, &t), 0);
	assert_int_equal(kv_get_range(t, kv_str("gc/"), kv_str("gc0"), 0, 1, 0, &r), 0);
	assert_int_equal(r.n, GC_THREADS * GC_PER_THREAD);
	kv_txn_free(t);
	kv_close(e);
}

static void t_group_commit_64(void **state)
{
	group_commit_64(NULL);
}

/* writemap=1: one write txn without nested ones carries several members. */
static void t_group_commit_64_writemap(void **state)
{
	group_commit_64("?writemap=1&map_size=64m");
}

/* ---- writemap=1: batches applied without nested txns -------------------- */

#define WM_THREADS 32
#define WM_PER_THREAD 20

/* Read-modify-write of one shared counter (a conflict read), plus a key of
 * the caller's own: members of one flat batch must see each other's writes
 * at validation, or increments would be lost. */
static int wm_body(kv_txn *t, void *arg)
{
	int *ki = arg;
	char k[32];
	struct kv_slice v;
	uint64_t n = 0;
	int rc = kv_get(t, kv_str("wm/ctr"), 0, &v);

	if (rc < 0)
		return rc;
	if (rc == 1 && v.n == sizeof(n))
		memcpy(&n, v.p, sizeof(n));
	n++;
	snprintf(k, sizeof(k), "wm/%02d/%03d", ki[0], ki[1]);
	if ((rc = kv_set(t, kv_str(k), kv_str("x"))) < 0)
		return rc;
	return kv_set(t, kv_str("wm/ctr"), kv_mem(&n, sizeof(n)));
}

static void *wm_thread(void *p)
{
	struct gc_arg *a = p;
	struct kv_run_opts o = { .max_retries = 1000, .backoff_max_us = 2000 };

	for (int i = 0; i < WM_PER_THREAD; i++) {
		int ki[2] = { a->id, i };
		if (kv_run(a->e, &o, wm_body, ki, NULL))
			a->failed++;
	}
	return NULL;
}

static void t_writemap_batches(void **state)
{
	char url[512];
	kv_engine *e;
	pthread_t tid[WM_THREADS];
	struct gc_arg a[WM_THREADS];
	uint64_t batches = 0, txns = 0, n = 0;
	struct kv_range r;
	struct kv_slice v;
	kv_txn *t;

	fresh_url(url, sizeof(url), "?writemap=1&map_size=64m");
	e = open_ok(url);
	for (int i = 0; i < WM_THREADS; i++) {
		a[i] = (struct gc_arg){ e, i, 0 };
		assert_int_equal(pthread_create(&tid[i], NULL, wm_thread, &a[i]), 0);
	}
	for (int i = 0; i < WM_THREADS; i++) {
		pthread_join(tid[i], NULL);
		assert_int_equal(a[i].failed, 0);
	}
	kv_lmdb_stats(e, &batches, &txns);
	print_message("writemap: %llu txns in %llu write txns\n", (unsigned long long)txns,
		      (unsigned long long)batches);
	assert_int_equal(txns, WM_THREADS * WM_PER_THREAD);
	assert_int_equal(kv_begin(e, KV_RDONLY, &t), 0);
	assert_int_equal(kv_get(t, kv_str("wm/ctr"), 1, &v), 1);
	assert_int_equal(v.n, sizeof(n));
	memcpy(&n, v.p, sizeof(n));
	assert_int_equal(n, WM_THREADS * WM_PER_THREAD);
	assert_int_equal(kv_get_range(t, kv_str("wm/0"), kv_str("wm/9"), 0, 1, 0, &r), 0);
	assert_int_equal(r.n, WM_THREADS * WM_PER_THREAD);
	kv_txn_free(t);
	kv_close(e);

	/* The file is the map's size, sparse, and allocated well past what
	 * the data uses (kv_lmdb.c WM_ROOM: no store into a hole). */
	char path[600];
	struct stat st;
	snprintf(path, sizeof(path), "%s", url + strlen("lmdb://"));
	*strchr(path, '?') = 0;
	strncat(path, "/data.mdb", sizeof(path) - strlen(path) - 1);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_size, 64 << 20);
	assert_true((uint64_t)st.st_blocks * 512 >= (uint64_t)24 << 20);
	assert_true((uint64_t)st.st_blocks * 512 < (uint64_t)st.st_size);
}

/* ---- durability across kill -9 ------------------------------------------ */

#define DUR_THREADS 16

struct dur_arg {
	kv_engine *e;
	int id, fd;
};

static int dur_body(kv_txn *t, void *arg)
{
	uint32_t *id = arg;
	char k[32];

	snprintf(k, sizeof(k), "dur/%08x", *id);
	return kv_set(t, kv_str(k), kv_str("acked"));
}

static void *dur_thread(void *p)
{
	struct dur_arg *a = p;

	for (uint32_t i = 0;; i++) {
		uint32_t id = (uint32_t)a->id << 24 | i;
		if (kv_run(a->e, NULL, dur_body, &id, NULL))
			_exit(3);
		/* Only now is the commit acknowledged; 4-byte pipe writes are
		 * atomic, so the parent never sees half an id. */
		if (write(a->fd, &id, sizeof(id)) != sizeof(id))
			_exit(4);
	}
	return NULL;
}

static void dur_child(const char *url, int fd)
{
	pthread_t tid[DUR_THREADS];
	struct dur_arg a[DUR_THREADS];
	char err[256];
	kv_engine *e;

	if (kv_open(url, &e, err, sizeof(err)))
		_exit(2);
	for (int i = 0; i < DUR_THREADS; i++) {
		a[i] = (struct dur_arg){ e, i, fd };
		pthread_create(&tid[i], NULL, dur_thread, &a[i]);
	}
	pause();
	_exit(0);
}

static void durable_after_kill9(const char *opts)
{
	char url[512];
	int pfd[2];
	pid_t pid;
	uint32_t *acked = NULL;
	size_t nacked = 0, cap = 0;
	uint64_t deadline, kill_at;
	kv_engine *e;
	kv_txn *t;

	fresh_url(url, sizeof(url), opts);
	assert_int_equal(pipe(pfd), 0);
	pid = child_fork();
	if (pid == 0) {
		close(pfd[0]);
		dur_child(url, pfd[1]);
	}
	close(pfd[1]);
	srand((unsigned)time(NULL));
	kill_at = 0; /* set once the first commit is acknowledged */
	deadline = clock_mono_ms() + 20000;
	fcntl(pfd[0], F_SETFL, O_NONBLOCK);
	for (int killed = 0;;) {
		uint32_t buf[256];
		ssize_t n = read(pfd[0], buf, sizeof(buf));
		if (n > 0) {
			assert_int_equal(n % 4, 0);
			if (nacked + (size_t)n / 4 > cap) {
				cap = (cap + (size_t)n / 4) * 2;
				acked = realloc(acked, cap * sizeof(*acked));
				assert_non_null(acked);
			}
			memcpy(acked + nacked, buf, (size_t)n);
			nacked += (size_t)n / 4;
			if (!kill_at) /* kill mid-stream, 50..550 ms after the first ack */
				kill_at = clock_mono_ms() + 50 + (uint64_t)(rand() % 500);
			continue;
		}
		if (n == 0)
			break; /* child gone and pipe drained */
		assert_int_equal(errno, EAGAIN);
		if (!killed && kill_at && clock_mono_ms() >= kill_at) {
			assert_int_equal(kill(pid, SIGKILL), 0);
			killed = 1;
		}
		assert_true(clock_mono_ms() < deadline);
		usleep(1000);
	}
	close(pfd[0]);
	{
		int st = child_kill(pid); /* already dead: just reaps it */
		assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	}
	print_message("durability: %zu commits acknowledged before kill -9\n", nacked);
	assert_true(nacked > 0);
	e = open_ok(url);
	assert_int_equal(kv_begin(e, KV_RDONLY, &t), 0);
	for (size_t i = 0; i < nacked; i++) {
		char k[32];
		struct kv_slice v;
		snprintf(k, sizeof(k), "dur/%08x", acked[i]);
		if (kv_get(t, kv_str(k), 1, &v) != 1)
			fail_msg("acknowledged commit %s lost", k);
	}
	kv_txn_free(t);
	kv_close(e);
	free(acked);
}

/* ---- several processes -------------------------------------------------- */

#define MP_ACCTS 6
#define MP_ROUNDS 150

static int64_t rd64(struct kv_slice v)
{
	int64_t x = 0;

	if (v.n == 8)
		memcpy(&x, v.p, 8);
	return x;
}

static int mp_body(kv_txn *t, void *arg)
{
	int *ft = arg;
	char ka[16], kb[16];
	struct kv_slice va, vb;
	int64_t a, b;
	int rc;

	snprintf(ka, sizeof(ka), "mp/%d", ft[0]);
	snprintf(kb, sizeof(kb), "mp/%d", ft[1]);
	if ((rc = kv_get(t, kv_str(ka), 0, &va)) < 0 || (rc = kv_get(t, kv_str(kb), 0, &vb)) < 0)
		return rc;
	a = rd64(va) - 7;
	b = rd64(vb) + 7;
	if ((rc = kv_set(t, kv_str(ka), kv_mem(&a, 8))))
		return rc;
	return kv_set(t, kv_str(kb), kv_mem(&b, 8));
}

static int mp_run(const char *url, int seed)
{
	struct kv_run_opts o = { .max_retries = 1000, .backoff_max_us = 5000 };
	char err[256];
	kv_engine *e;
	int bad = 0;

	if (kv_open(url, &e, err, sizeof(err)))
		return 1;
	for (int i = 0; i < MP_ROUNDS; i++) {
		int ft[2] = { (i + seed) % MP_ACCTS, (i * 7 + seed * 3 + 1) % MP_ACCTS };
		if (ft[0] == ft[1])
			ft[1] = (ft[1] + 1) % MP_ACCTS;
		if (kv_run(e, &o, mp_body, ft, NULL))
			bad++;
	}
	kv_close(e);
	return bad ? 1 : 0;
}

static int mp_init(kv_txn *t, void *arg)
{
	int64_t v = 1000;
	char k[16];
	int rc;

	for (int i = 0; i < MP_ACCTS; i++) {
		snprintf(k, sizeof(k), "mp/%d", i);
		if ((rc = kv_set(t, kv_str(k), kv_mem(&v, 8))))
			return rc;
	}
	return 0;
}

static void t_durable_after_kill9(void **state)
{
	durable_after_kill9(NULL);
}

/* sync=window: commits skip the fdatasync, yet a commit that returned is
 * in the page cache and survives the kill of the process at once. */
static void t_window_after_kill9(void **state)
{
	durable_after_kill9("?sync=window");
}

/* writemap=1: a commit stores into the shared map, which the page cache
 * keeps when the process dies. */
static void t_writemap_after_kill9(void **state)
{
	durable_after_kill9("?sync=window&writemap=1&map_size=256m");
}

static int win_body(kv_txn *t, void *arg)
{
	return kv_set(t, kv_str((const char *)arg), kv_str("v"));
}

static int win_has(kv_engine *e, const char *key)
{
	kv_txn *t = NULL;
	struct kv_slice v;
	assert_int_equal(kv_begin(e, KV_RDONLY, &t), 0);
	int rc = kv_get(t, kv_str(key), 1, &v);
	kv_txn_free(t);
	return rc;
}

static void copy_file(const char *from, const char *to)
{
	char buf[65536];
	int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ssize_t n;
	assert_true(in >= 0 && out >= 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		assert_int_equal(write(out, buf, (size_t)n), n);
	assert_int_equal(n, 0);
	close(in);
	close(out);
}

/* sync=window: a commit is not synced until the period passes or kv_flush
 * runs; kv_flush syncs what was committed before it (one fdatasync for
 * several commits, none when nothing is new); the background sync makes a
 * commit durable within sync_ms; and a copy of the files taken right
 * after kv_flush opens with the flushed keys in it. */
static void t_window_sync(void **state)
{
	char url[1000], path[1000], copy[1100], from[1200], to[1200];
	int64_t committed, synced;
	uint64_t syncs, syncs2;
	kv_engine *e;

	fresh_url(url, sizeof(url), "?sync=window&sync_ms=60000");
	e = open_ok(url);
	assert_int_equal(kv_run(e, NULL, win_body, "w/1", NULL), 0);
	assert_int_equal(kv_run(e, NULL, win_body, "w/2", NULL), 0);
	kv_lmdb_sync_stats(e, &committed, &synced, &syncs);
	assert_true(committed > synced);
	assert_int_equal(syncs, 0);
	assert_int_equal(kv_flush(e), 0);
	kv_lmdb_sync_stats(e, &committed, &synced, &syncs);
	assert_true(synced >= committed);
	assert_int_equal(syncs, 1);
	assert_int_equal(kv_flush(e), 0); /* nothing new: no second sync */
	kv_lmdb_sync_stats(e, &committed, &synced, &syncs2);
	assert_int_equal(syncs2, syncs);

	/* The copy: what a power loss right after the flush would leave. */
	snprintf(path, sizeof(path), "%s", url + strlen("lmdb://"));
	*strchr(path, '?') = 0;
	snprintf(copy, sizeof(copy), "%s-copy", path);
	assert_int_equal(mkdir(copy, 0755), 0);
	snprintf(from, sizeof(from), "%s/data.mdb", path);
	snprintf(to, sizeof(to), "%s/data.mdb", copy);
	copy_file(from, to);
	kv_close(e);
	if (snprintf(url, sizeof(url), "lmdb://%s", copy) >= (int)sizeof(url))
		fail_msg("path too long");
	e = open_ok(url);
	assert_int_equal(win_has(e, "w/1"), 1);
	assert_int_equal(win_has(e, "w/2"), 1);
	kv_close(e);

	/* The background sync bounds the window. */
	fresh_url(url, sizeof(url), "?sync=window&sync_ms=20");
	e = open_ok(url);
	assert_int_equal(kv_run(e, NULL, win_body, "w/3", NULL), 0);
	kv_lmdb_sync_stats(e, &committed, &synced, &syncs);
	uint64_t until = clock_mono_ms() + 5000;
	while (synced < committed && clock_mono_ms() < until) {
		usleep(5000);
		kv_lmdb_sync_stats(e, &committed, &synced, &syncs);
	}
	assert_true(synced >= committed);
	assert_true(syncs >= 1);
	kv_close(e);
}

/* sync=window with two processes on one environment (a mount running meta
 * in-process, meta_local.h): a flush covers what the OTHER process
 * committed, since meta's META_FSYNC may have committed nothing itself.
 * The child commits and exits without closing (its window sync never
 * runs, as after kill -9); the parent's flush must then sync once, and a
 * second flush finds nothing new. Before, the parent compared only its
 * own commits and did not sync at all. */
static void t_window_sync_other_process(void **state)
{
	char url[1000];
	int64_t committed, synced;
	uint64_t syncs, syncs2, syncs3;
	kv_engine *e;
	int st;

	fresh_url(url, sizeof(url), "?sync=window&sync_ms=60000");
	e = open_ok(url);
	assert_int_equal(kv_flush(e), 0);
	kv_lmdb_sync_stats(e, &committed, &synced, &syncs);
	pid_t pid = child_fork();
	if (pid == 0) {
		kv_engine *c;
		char err[256];
		if (kv_open(url, &c, err, sizeof(err)))
			_exit(1);
		_exit(kv_run(c, NULL, win_body, "other/1", NULL) ? 2 : 0);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	for (int j = 0; j < 4; j++)
		if (children[j] == pid)
			children[j] = 0;
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	assert_int_equal(win_has(e, "other/1"), 1);
	assert_int_equal(kv_flush(e), 0);
	kv_lmdb_sync_stats(e, &committed, &synced, &syncs2);
	assert_int_equal(syncs2, syncs + 1);
	assert_int_equal(kv_flush(e), 0); /* nothing new: no second sync */
	kv_lmdb_sync_stats(e, &committed, &synced, &syncs3);
	assert_int_equal(syncs3, syncs2);
	kv_close(e);
}

/* Runs BODY in a child on an engine opened at URL with
 * CFS_TEST_LMDB_SYNC_FAIL=1 (its first sync fails); BODY's value is the
 * child's exit status, returned. Set in a child: no thread runs while it
 * is set. */
static int sync_fail_child(const char *url, int (*body)(kv_engine *))
{
	int st;
	pid_t pid = child_fork();
	if (pid == 0) {
		kv_engine *c;
		char err[256];
		setenv("CFS_TEST_LMDB_SYNC_FAIL", "1", 1);
		if (kv_open(url, &c, err, sizeof(err)))
			_exit(1);
		_exit(body(c));
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	for (int j = 0; j < 4; j++)
		if (children[j] == pid)
			children[j] = 0;
	assert_true(WIFEXITED(st));
	return WEXITSTATUS(st);
}

static int flush_twice(kv_engine *c)
{
	if (kv_run(c, NULL, win_body, "f/1", NULL))
		return 2;
	if (kv_write_error(c))
		return 9;
	if (kv_flush(c) != -EIO)
		return 3; /* the injected failure */
	if (kv_write_error(c) != -EIO)
		return 10;
	if (kv_run(c, NULL, win_body, "f/2", NULL) != -EIO)
		return 4; /* a commit after the failed sync was taken */
	if (win_has(c, "f/1") != 1 || win_has(c, "f/2") != 0)
		return 11; /* reads go on */
	int rc = kv_flush(c);
	return rc == 0 ? 5 : rc == -EIO ? 0 : 6; /* 5: success after the failure */
}

/* sync=window, a failed sync: Linux reports a writeback error to the
 * first fsync of a file description after it, then marks the pages clean
 * (possibly never written); the next fsync returns 0. So kv_flush (an
 * fsync(2) through the mount, META_FSYNC) must keep failing after a
 * failed sync, or it acknowledges changes that are lost; and no commit
 * may follow, or a later successful sync makes durable a root that points
 * at the lost pages. The hook CFS_TEST_LMDB_SYNC_FAIL=1 fails the
 * engine's first sync with EIO without syncing, as the kernel would after
 * dropping the pages. Before 221b2bd the second flush returned 0 (exit
 * 5); before writes were refused the commit of f/2 returned 0 (exit 4).
 * Reads go on in the failed engine; the store reopened holds f/1 and not
 * f/2, and takes writes again. */
/* A fresh sync=window store; BODY runs in sync_fail_child and must exit
 * 0; then the store reopened in this process (a reopened engine starts
 * clean), with KEY present. The caller closes it. */
static kv_engine *after_sync_fail(int (*body)(kv_engine *), const char *key)
{
	char url[1000];

	fresh_url(url, sizeof(url), "?sync=window&sync_ms=60000");
	assert_int_equal(sync_fail_child(url, body), 0);
	kv_engine *e = open_ok(url);
	assert_int_equal(win_has(e, key), 1);
	return e;
}

static void t_window_sync_failed(void **state)
{
	kv_engine *e = after_sync_fail(flush_twice, "f/1");
	assert_int_equal(win_has(e, "f/2"), 0);
	assert_int_equal(kv_write_error(e), 0);
	assert_int_equal(kv_run(e, NULL, win_body, "f/3", NULL), 0);
	assert_int_equal(kv_flush(e), 0);
	assert_int_equal(win_has(e, "f/3"), 1);
	kv_close(e);
}

static int compact_then_flush(kv_engine *c)
{
	if (kv_run(c, NULL, win_body, "c/1", NULL))
		return 2;
	int crc = kv_lmdb_compact(c, 1); /* its first sync fails */
	int rc = kv_flush(c);
	return rc == 0 ? (crc == 1 ? 5 : 6) : rc == -EIO ? (crc == 1 ? 7 : 0) : 8;
}

/* The same when the failed sync is the online compaction's first one (its
 * write-back before commits are held): that error was ignored ("shows
 * again in step 3"), but the kernel reports it once, so step 3's sync
 * succeeded, the compaction went on and the next kv_flush returned 0
 * (exit 5). Now the compaction stops and every later flush fails. */
static void t_compact_sync_failed(void **state)
{
	kv_close(after_sync_fail(compact_then_flush, "c/1"));
}

/* The failed sync in ANOTHER process on the environment (the meta
 * service's, while a mount runs meta in-process): that process writes
 * DIR/sync.failed, and this engine, open before, refuses commits with
 * -EIO within a few of its periods; reads go on. An engine opened after
 * the failure (meta restarted) takes writes and finds what was
 * committed. Before, this engine went on committing (its commit of o/3
 * returned 0). */
static int commit_then_flush(kv_engine *c)
{
	if (kv_run(c, NULL, win_body, "o/2", NULL))
		return 2;
	return kv_flush(c) == -EIO ? 0 : 3;
}

static void t_sync_failed_other_process(void **state)
{
	char url[1000];
	kv_engine *e;

	fresh_url(url, sizeof(url), "?sync=window&sync_ms=20&compact=0");
	e = open_ok(url);
	assert_int_equal(kv_run(e, NULL, win_body, "o/1", NULL), 0);
	assert_int_equal(sync_fail_child(url, commit_then_flush), 0);
	uint64_t until = clock_mono_ms() + 5000;
	while (!kv_write_error(e) && clock_mono_ms() < until)
		usleep(5000);
	assert_int_equal(kv_write_error(e), -EIO);
	assert_int_equal(kv_run(e, NULL, win_body, "o/3", NULL), -EIO);
	assert_int_equal(win_has(e, "o/1"), 1);
	assert_int_equal(win_has(e, "o/2"), 1);
	assert_int_equal(win_has(e, "o/3"), 0);
	kv_close(e);

	e = open_ok(url);
	usleep(100 * 1000); /* a few periods: sync.failed holds the token it found at open */
	assert_int_equal(kv_write_error(e), 0);
	assert_int_equal(kv_run(e, NULL, win_body, "o/4", NULL), 0);
	assert_int_equal(win_has(e, "o/2"), 1);
	assert_int_equal(kv_flush(e), 0);
	kv_close(e);
}

/* An engine opened while the process whose sync of the store failed is
 * still open on it (a mount starting meta in-process while the meta
 * service refuses writes, not yet restarted) must refuse writes too: the
 * token it finds at open is not of a failure before a restart. Before,
 * it took the token for an earlier failure's and took writes
 * (kv_write_error 0): roots that the failed process's later syncs could
 * make durable over the lost pages. Once that process is gone
 * (restarted), an engine opened then takes writes. */
static void t_sync_failed_open_beside(void **state)
{
	(void)state;
	char url[1000];
	int up[2], down[2];
	kv_engine *e;

	fresh_url(url, sizeof(url), "?sync=window&sync_ms=20&compact=0");
	kv_close(open_ok(url));
	assert_int_equal(pipe(up), 0);
	assert_int_equal(pipe(down), 0);
	pid_t pid = child_fork();
	if (pid == 0) {
		kv_engine *c;
		char err[256], b = 0;
		setenv("CFS_TEST_LMDB_SYNC_FAIL", "1", 1);
		if (kv_open(url, &c, err, sizeof(err)))
			_exit(1);
		b = (char)commit_then_flush(c);
		if (write(up[1], &b, 1) != 1 || read(down[0], &b, 1) < 0)
			_exit(4);
		_exit(0); /* without kv_close, as a process that dies */
	}
	char b = 9;
	assert_int_equal(read(up[0], &b, 1), 1);
	assert_int_equal(b, 0);
	e = open_ok(url);
	assert_int_equal(kv_write_error(e), -EIO);
	assert_int_equal(kv_run(e, NULL, win_body, "o/3", NULL), -EIO);
	assert_int_equal(win_has(e, "o/2"), 1); /* reads go on */
	kv_close(e);
	assert_int_equal(write(down[1], &b, 1), 1);
	int st;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	for (int j = 0; j < 4; j++)
		if (children[j] == pid)
			children[j] = 0;
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	close(up[0]);
	close(up[1]);
	close(down[0]);
	close(down[1]);
	e = open_ok(url);
	assert_int_equal(kv_write_error(e), 0);
	assert_int_equal(kv_run(e, NULL, win_body, "o/4", NULL), 0);
	assert_int_equal(kv_flush(e), 0);
	kv_close(e);
}

/* The two syncer tests' start: a fresh store URL with a 20 ms window and
 * no compaction, and the pipes to and from the child (child_reap closes
 * them). */
static void syncer_setup(char *url, size_t len, int p2c[2], int c2p[2])
{
	fresh_url(url, len, "?sync=window&sync_ms=20&compact=0");
	assert_int_equal(pipe(p2c), 0);
	assert_int_equal(pipe(c2p), 0);
}

/* Waits for child PID (child_fork), no longer reaped at teardown, and
 * closes the two pipes the test talked to it through: its wait status. */
static int child_reap(pid_t pid, int p2c[2], int c2p[2])
{
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	for (int j = 0; j < 4; j++)
		if (children[j] == pid)
			children[j] = 0;
	close(p2c[0]);
	close(p2c[1]);
	close(c2p[0]);
	close(c2p[1]);
	return st;
}

/* Waits up to MS for E to be its store's background syncer. */
static int wait_owner(kv_engine *e, int ms)
{
	uint64_t until = clock_mono_ms() + (uint64_t)ms;
	while (!kv_lmdb_sync_owner(e) && clock_mono_ms() < until)
		usleep(5000);
	return kv_lmdb_sync_owner(e);
}

/* One background syncer per store (kv_lmdb.c "one background syncer"):
 * with the parent's engine syncing, a second process's engine commits but
 * its background thread never syncs (the parent's syncs cover its commit);
 * once the parent's engine closes, the child's takes over and syncs its
 * next commit within the window. Before, both synced every period. */
static void t_one_background_syncer(void **state)
{
	char url[1000];
	int64_t committed, synced;
	uint64_t syncs0, syncs1;
	int p2c[2], c2p[2], st;
	char b;

	syncer_setup(url, sizeof(url), p2c, c2p);
	/* Forked before the parent's engine opens: a child must not inherit
	 * its sync.lock descriptor (flock belongs to the open file). */
	pid_t pid = child_fork();
	if (pid == 0) {
		kv_engine *c;
		char err[256];
		if (read(p2c[0], &b, 1) != 1 || kv_open(url, &c, err, sizeof(err)))
			_exit(1);
		if (kv_run(c, NULL, win_body, "child/1", NULL))
			_exit(2);
		usleep(300000); /* 15 periods */
		kv_lmdb_sync_stats(c, &committed, &synced, &syncs0);
		if (kv_lmdb_sync_owner(c) || syncs0)
			_exit(3);
		if (write(c2p[1], "r", 1) != 1 || read(p2c[0], &b, 1) != 1)
			_exit(4);
		/* the parent's engine is closed: this one takes over */
		if (!wait_owner(c, 2000))
			_exit(5);
		if (kv_run(c, NULL, win_body, "child/2", NULL))
			_exit(6);
		uint64_t until = clock_mono_ms() + 2000;
		do {
			usleep(5000);
			kv_lmdb_sync_stats(c, &committed, &synced, &syncs1);
		} while (synced < committed && clock_mono_ms() < until);
		_exit(synced >= committed && syncs1 >= 1 ? 0 : 7);
	}
	kv_engine *e = open_ok(url);
	assert_true(wait_owner(e, 2000));
	assert_int_equal(write(p2c[1], "o", 1), 1);
	kv_lmdb_sync_stats(e, &committed, &synced, &syncs0);
	assert_int_equal(read(c2p[0], &b, 1), 1);
	kv_lmdb_sync_stats(e, &committed, &synced, &syncs1);
	assert_true(syncs1 > syncs0); /* the child's commit, synced here */
	kv_close(e);
	assert_int_equal(write(p2c[1], "g", 1), 1);
	st = child_reap(pid, p2c, c2p);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* A background syncer that is alive but stopped (SIGSTOP: it keeps
 * sync.lock and syncs nothing) must not leave another process's commits
 * unsynced: the in-process meta acknowledges them without the service.
 * The child holds the lock and is stopped; the parent's commit is synced
 * by the parent's own background thread once the child's heartbeat is
 * late (kv_lmdb.c "one background syncer"). Before, the parent never
 * synced while the child lived. */
static void t_syncer_stopped(void **state)
{
	char url[1000];
	int64_t committed = 0, synced = 0;
	uint64_t syncs0, syncs1 = 0;
	int p2c[2], c2p[2], st;
	char b;

	syncer_setup(url, sizeof(url), p2c, c2p);
	pid_t pid = child_fork();
	if (pid == 0) {
		kv_engine *c;
		char err[256];
		if (kv_open(url, &c, err, sizeof(err)))
			_exit(1);
		if (!wait_owner(c, 2000))
			_exit(2);
		if (write(c2p[1], "o", 1) != 1 || read(p2c[0], &b, 1) != 1)
			_exit(3);
		kv_close(c);
		_exit(0);
	}
	assert_int_equal(read(c2p[0], &b, 1), 1);
	kv_engine *e = open_ok(url);
	usleep(100000); /* the parent's thread has tried the lock */
	assert_false(kv_lmdb_sync_owner(e));
	assert_int_equal(testenv_stop(pid), 0);
	kv_lmdb_sync_stats(e, &committed, &synced, &syncs0);
	assert_int_equal(kv_run(e, NULL, win_body, "stopped/1", NULL), 0);
	uint64_t until = clock_mono_ms() + 2000;
	do {
		usleep(5000);
		kv_lmdb_sync_stats(e, &committed, &synced, &syncs1);
	} while ((synced < committed || syncs1 == syncs0) && clock_mono_ms() < until);
	assert_int_equal(kill(pid, SIGCONT), 0);
	assert_false(kv_lmdb_sync_owner(e));
	assert_int_equal(write(p2c[1], "g", 1), 1);
	st = child_reap(pid, p2c, c2p);
	kv_close(e);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_true(synced >= committed);
	assert_true(syncs1 > syncs0);
}

/* A process that opens the store while a compaction replaces data.mdb
 * gets LMDB's shared lock when the compacting environment closes, and
 * then nobody re-reads the last txn id that lock.mdb keeps (kv_lmdb.c
 * "Stale lock file"). Here a child keeps the old environment open (as
 * the opener would), data.mdb is replaced by a compacting copy (its ids
 * restart at 1) at an even last id, and the parent opens while the child
 * still holds it: the parent must see the data (and may then write).
 * Before, it read through the empty meta page: the key was gone, and its
 * first commit would have written an empty database over it. */
static void t_stale_lock_after_swap(void **state)
{
	char url[1000], path[1000], cp[1100], from[1200], to[1200];
	int64_t committed, synced;
	uint64_t syncs;
	int p2c[2], c2p[2], st, n = 0;
	char b;

	fresh_url(url, sizeof(url), "?sync=full&compact=0");
	snprintf(path, sizeof(path), "%s", url + 7);
	*strchr(path, '?') = 0;
	kv_engine *e = open_ok(url);
	assert_int_equal(kv_run(e, NULL, win_body, "swap/1", NULL), 0);
	do { /* an even last id: the stale parity picks the empty meta page */
		char k[32];
		snprintf(k, sizeof(k), "swap/x%d", n++);
		assert_int_equal(kv_run(e, NULL, win_body, k, NULL), 0);
		kv_lmdb_sync_stats(e, &committed, &synced, &syncs);
	} while (committed % 2 || committed < 4);
	kv_close(e);

	assert_int_equal(pipe(p2c), 0);
	assert_int_equal(pipe(c2p), 0);
	pid_t pid = child_fork();
	if (pid == 0) {
		MDB_env *env;
		if (mdb_env_create(&env) || mdb_env_open(env, path, 0, 0644))
			_exit(1);
		if (write(c2p[1], "o", 1) != 1 || read(p2c[0], &b, 1) != 1)
			_exit(2);
		usleep(300000); /* the parent's open starts while this holds it */
		mdb_env_close(env);
		_exit(0);
	}
	assert_int_equal(read(c2p[0], &b, 1), 1);
	{
		MDB_env *env;
		snprintf(cp, sizeof(cp), "%s.cp", path);
		assert_int_equal(mkdir(cp, 0755), 0);
		assert_int_equal(mdb_env_create(&env), 0);
		assert_int_equal(mdb_env_open(env, path, 0, 0644), 0);
		assert_int_equal(mdb_env_copy2(env, cp, MDB_CP_COMPACT), 0);
		mdb_env_close(env);
		snprintf(from, sizeof(from), "%s/data.mdb", cp);
		snprintf(to, sizeof(to), "%s/data.mdb", path);
		assert_int_equal(rename(from, to), 0);
		rmdir(cp);
	}
	assert_int_equal(write(p2c[1], "g", 1), 1);
	e = open_ok(url);
	int has = win_has(e, "swap/1");
	int wrote = kv_run(e, NULL, win_body, "swap/2", NULL);
	st = child_reap(pid, p2c, c2p);
	assert_int_equal(has, 1);
	assert_int_equal(wrote, 0);
	assert_int_equal(win_has(e, "swap/1"), 1);
	assert_int_equal(win_has(e, "swap/2"), 1);
	kv_close(e);
	e = open_ok(url); /* and again, alone */
	assert_int_equal(win_has(e, "swap/1"), 1);
	assert_int_equal(win_has(e, "swap/2"), 1);
	kv_close(e);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

/* The race t_stale_lock_after_swap sets up by hand: a child opens,
 * reads and closes the store in a loop while the parent compacts it in a
 * loop (one commit between compactions, so the old last id is even). An
 * open that begins while a compaction holds LMDB's exclusive lock must
 * still see the data. Before, some opens saw an empty store. */
static void t_open_during_compaction(void **state)
{
	char url[1000], curl[1000];
	int st, n = 0, compacted = 0;

	(void)state;
	fresh_url(url, sizeof(url), "?sync=full&compact=1");
	snprintf(curl, sizeof(curl), "%.*s?sync=full&compact=0", (int)(strchr(url, '?') - url),
		 url);
	kv_engine *e = open_ok(url);
	assert_int_equal(kv_run(e, NULL, win_body, "race/base", NULL), 0);
	pid_t pid = child_fork();
	if (pid == 0) {
		int bad = 0;
		uint64_t until = clock_mono_ms() + 3000;
		while (clock_mono_ms() < until) {
			kv_engine *c;
			char err[256];
			if (kv_open(curl, &c, err, sizeof(err)))
				_exit(100);
			if (win_has(c, "race/base") != 1)
				bad++;
			kv_close(c);
		}
		_exit(bad > 99 ? 99 : bad);
	}
	uint64_t until = clock_mono_ms() + 3000;
	while (clock_mono_ms() < until) {
		char k[32];
		snprintf(k, sizeof(k), "race/%d", n++);
		if (kv_run(e, NULL, win_body, k, NULL) == 0 && kv_lmdb_compact(e, 1) == 1)
			compacted++;
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	for (int j = 0; j < 4; j++)
		if (children[j] == pid)
			children[j] = 0;
	print_message("open during compaction: %d compactions\n", compacted);
	assert_int_equal(win_has(e, "race/base"), 1);
	kv_close(e);
	assert_true(compacted > 0);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
}

static void t_multi_process(void **state)
{
	char url[512];
	pid_t pids[2];
	kv_engine *e;
	kv_txn *t;
	struct kv_range r;
	int64_t sum = 0;

	fresh_url(url, sizeof(url), "?sync=nometa");
	e = open_ok(url);
	assert_int_equal(kv_run(e, NULL, mp_init, NULL, NULL), 0);
	kv_close(e);
	for (int i = 0; i < 2; i++) {
		pids[i] = child_fork();
		if (pids[i] == 0)
			_exit(mp_run(url, i + 1));
	}
	assert_int_equal(mp_run(url, 0), 0);
	for (int i = 0; i < 2; i++) {
		int st;
		assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
		for (int j = 0; j < 4; j++)
			if (children[j] == pids[i])
				children[j] = 0;
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	e = open_ok(url);
	assert_int_equal(kv_begin(e, KV_RDONLY, &t), 0);
	assert_int_equal(kv_get_range(t, kv_str("mp/"), kv_str("mp0"), 0, 1, 0, &r), 0);
	assert_int_equal(r.n, MP_ACCTS);
	for (int i = 0; i < r.n; i++)
		sum += rd64(r.kvs[i].val);
	assert_int_equal(sum, MP_ACCTS * 1000);
	kv_txn_free(t);
	kv_close(e);
}

/* ---- full map, options -------------------------------------------------- */

static int fill_body(kv_txn *t, void *arg)
{
	int *i = arg;
	static char big[60000];
	char k[32];

	snprintf(k, sizeof(k), "fill/%06d", *i);
	return kv_set(t, kv_str(k), kv_mem(big, sizeof(big)));
}

static void t_map_full(void **state)
{
	char url[512];
	kv_engine *e;
	kv_txn *t;
	struct kv_slice v;
	int rc = 0, i;

	fresh_url(url, sizeof(url), "?map_size=2m&sync=none");
	e = open_ok(url);
	for (i = 0; i < 200 && !rc; i++)
		rc = kv_run(e, NULL, fill_body, &i, NULL);
	assert_int_equal(rc, -ENOSPC);
	assert_true(i > 3);
	/* Reads still work; reopening with a larger map_size grows it. */
	assert_int_equal(kv_begin(e, KV_RDONLY, &t), 0);
	assert_int_equal(kv_get(t, kv_str("fill/000000"), 0, &v), 1);
	kv_txn_free(t);
	kv_close(e);
	snprintf(strrchr(url, '?'), 32, "?map_size=16m&sync=none");
	e = open_ok(url);
	rc = kv_run(e, NULL, fill_body, &i, NULL);
	assert_int_equal(rc, 0);
	assert_int_equal(kv_begin(e, KV_RDONLY, &t), 0);
	assert_int_equal(kv_get(t, kv_str("fill/000000"), 0, &v), 1);
	assert_int_equal(v.n, 60000);
	kv_txn_free(t);
	kv_close(e);
}

/* A body that writes its key; on its first attempt (ARG's count 0) it
 * first lets another txn commit a different key after its snapshot. */
struct alone_arg {
	kv_engine *e;
	int interleave, calls;
};

static int other_body(kv_txn *t, void *arg)
{
	(void)arg;
	return kv_set(t, kv_str("alone/other"), kv_str("x"));
}

static int alone_body(kv_txn *t, void *arg)
{
	struct alone_arg *a = arg;
	struct kv_slice v;
	int rc = kv_get(t, kv_str("alone/mine"), 0, &v); /* takes the snapshot */
	if (rc < 0)
		return rc;
	if (a->interleave && a->calls++ == 0 &&
	    (rc = kv_run(a->e, NULL, other_body, NULL, NULL)))
		return rc;
	return kv_set(t, kv_str("alone/mine"), kv_str("y"));
}

static int noop_body(kv_txn *t, void *arg)
{
	struct kv_slice v;
	(void)arg;
	return kv_get(t, kv_str("alone/mine"), 0, &v) < 0 ? -EIO : 0;
}

static void t_alone(void **state)
{
	const char *opts[] = { "?sync=none", "?sync=window&writemap=1&map_size=64m" };
	(void)state;
	for (int i = 0; i < 2; i++) {
		char url[512];
		struct kv_run_stats st;
		struct kv_run_opts ro = { .flags = KV_RDONLY };
		fresh_url(url, sizeof(url), opts[i]);
		kv_engine *e = open_ok(url);
		struct alone_arg a = { .e = e };
		assert_int_equal(kv_reports_alone(e), 1);
		assert_int_equal(kv_run(e, NULL, alone_body, &a, &st), 0);
		assert_int_equal(st.alone, 1);
		a.interleave = 1;
		assert_int_equal(kv_run(e, NULL, alone_body, &a, &st), 0);
		assert_int_equal(a.calls, 1); /* no conflict: other keys */
		assert_int_equal(st.alone, 0);
		a.interleave = 0;
		assert_int_equal(kv_run(e, NULL, alone_body, &a, &st), 0);
		assert_int_equal(st.alone, 1);
		assert_int_equal(kv_run(e, &ro, noop_body, NULL, &st), 0);
		assert_int_equal(st.alone, 0);
		assert_int_equal(kv_run(e, NULL, noop_body, NULL, &st), 0);
		assert_int_equal(st.alone, 0);
		kv_close(e);
	}
	char err[256];
	kv_engine *m = NULL;
	struct kv_run_stats st;
	struct alone_arg a = { 0 };
	assert_int_equal(kv_open("mem://", &m, err, sizeof(err)), 0);
	assert_int_equal(kv_reports_alone(m), 0);
	a.e = m;
	assert_int_equal(kv_run(m, NULL, alone_body, &a, &st), 0);
	assert_int_equal(st.alone, 0);
	kv_close(m);
}

/* kv.c "The thread's spare txn": a txn begun after another was freed on
 * the same thread reuses its record and arena chunk, and must start as a
 * new one: no pending write of the aborted txn commits, no error or
 * conflict count carries over, and values read into the kept chunk stay
 * intact while the txn reads more (a large value first, as an inode
 * record is, so the chunk is the one a namespace change leaves). */
static void t_spare_txn_reuse(void **state)
{
	(void)state;
	char url[512];
	fresh_url(url, sizeof(url), "?sync=none");
	kv_engine *e = open_ok(url);
	char big[5000];
	memset(big, 'b', sizeof(big));
	kv_txn *t = NULL;
	assert_int_equal(kv_begin(e, 0, &t), 0);
	assert_int_equal(kv_set(t, kv_str("big"), (struct kv_slice){ big, sizeof(big) }), 0);
	assert_int_equal(kv_set(t, kv_str("small"), kv_str("v")), 0);
	assert_int_equal(kv_commit(t, NULL), 0);
	kv_txn_free(t);
	for (int round = 0; round < 3; round++) {
		/* a write left pending, then the txn freed without commit */
		assert_int_equal(kv_begin(e, 0, &t), 0);
		assert_int_equal(kv_set(t, kv_str("aborted"), kv_str("x")), 0);
		struct kv_slice v;
		assert_int_equal(kv_get(t, kv_str("missing"), 0, &v), 0);
		assert_int_equal(kv_get(t, kv_str("big"), 0, &v), 1); /* a chunk to keep */
		kv_txn_free(t);
		/* the next txn on this thread: nothing of the last one */
		assert_int_equal(kv_begin(e, 0, &t), 0);
		struct kv_slice b, sm;
		assert_int_equal(kv_get(t, kv_str("big"), 0, &b), 1);
		assert_int_equal(kv_get(t, kv_str("small"), 0, &sm), 1);
		for (int i = 0; i < 64; i++) { /* more reads into the arena */
			struct kv_slice x;
			assert_int_equal(kv_get(t, kv_str("small"), 1, &x), 1);
		}
		assert_int_equal(b.n, sizeof(big));
		assert_memory_equal(b.p, big, sizeof(big));
		assert_int_equal(sm.n, 1);
		assert_memory_equal(sm.p, "v", 1);
		assert_int_equal(kv_set(t, kv_str("round"), kv_str("r")), 0);
		assert_int_equal(kv_commit(t, NULL), 0);
		kv_txn_free(t);
		assert_int_equal(kv_begin(e, KV_RDONLY, &t), 0);
		assert_int_equal(kv_get(t, kv_str("aborted"), 0, &v), 0);
		assert_int_equal(kv_get(t, kv_str("round"), 0, &v), 1);
		kv_txn_free(t);
	}
	kv_close(e);
}

/* writemap=1, several threads filling a small map: a member whose apply
 * fails drops the flat batch, whose other members then commit alone; so
 * every acknowledged fill is present, and the only error is -ENOSPC. */
#define FILL_THREADS 6

struct fill_arg {
	kv_engine *e;
	int base, acked, other;
	int ack[64];
};

static void *fill_thread(void *p)
{
	struct fill_arg *a = p;

	for (int i = 0; i < 64; i++) {
		int k = a->base + i;
		int rc = kv_run(a->e, NULL, fill_body, &k, NULL);
		if (rc == 0)
			a->ack[a->acked++] = k;
		else if (rc != -ENOSPC)
			a->other = rc;
	}
	return NULL;
}

static void t_writemap_map_full(void **state)
{
	char url[512];
	kv_engine *e;
	kv_txn *t;
	struct kv_slice v;
	pthread_t tid[FILL_THREADS];
	struct fill_arg *a = calloc(FILL_THREADS, sizeof(*a));
	int acked = 0;

	assert_non_null(a);
	fresh_url(url, sizeof(url), "?map_size=4m&sync=none&writemap=1");
	e = open_ok(url);
	for (int i = 0; i < FILL_THREADS; i++) {
		a[i].e = e;
		a[i].base = i * 1000;
		assert_int_equal(pthread_create(&tid[i], NULL, fill_thread, &a[i]), 0);
	}
	for (int i = 0; i < FILL_THREADS; i++)
		pthread_join(tid[i], NULL);
	assert_int_equal(kv_begin(e, KV_RDONLY, &t), 0);
	for (int i = 0; i < FILL_THREADS; i++) {
		assert_int_equal(a[i].other, 0);
		for (int j = 0; j < a[i].acked; j++) {
			char k[32];
			snprintf(k, sizeof(k), "fill/%06d", a[i].ack[j]);
			assert_int_equal(kv_get(t, kv_str(k), 1, &v), 1);
			assert_int_equal(v.n, 60000);
		}
		acked += a[i].acked;
	}
	kv_txn_free(t);
	kv_close(e);
	assert_true(acked > 3 && acked < FILL_THREADS * 64); /* some fit, the map filled */
	free(a);
}

/* A full reader table is -CFS_EUNAVAIL, not a crash; slots of a process
 * killed with -9 are reclaimed when the table fills up. */
static void t_readers_full(void **state)
{
	char url[512];
	kv_engine *e;
	kv_txn *t[3] = { NULL, NULL, NULL };
	pid_t pid;

	fresh_url(url, sizeof(url), "?max_readers=2");
	e = open_ok(url);
	assert_int_equal(kv_begin(e, KV_RDONLY, &t[0]), 0);
	assert_int_equal(kv_begin(e, KV_RDONLY, &t[1]), 0);
	assert_int_equal(kv_begin(e, KV_RDONLY, &t[2]), -CFS_EUNAVAIL);
	kv_txn_free(t[0]);
	assert_int_equal(kv_begin(e, 0, &t[0]), 0);
	kv_txn_free(t[0]);
	kv_txn_free(t[1]);
	kv_close(e);

	/* A child takes both slots and dies holding them. */
	e = open_ok(url);
	pid = child_reader(url, 2, NULL);
	/* While it lives, nothing is stale: opening needs a slot too. */
	{
		char err[256];
		kv_engine *e2 = NULL;
		assert_int_equal(kv_open(url, &e2, err, sizeof(err)), -CFS_EUNAVAIL);
		assert_int_equal(kv_begin(e, KV_RDONLY, &t[0]), -CFS_EUNAVAIL);
	}
	child_kill(pid);
	assert_int_equal(kv_begin(e, KV_RDONLY, &t[0]), 0);
	kv_txn_free(t[0]);
	kv_close(e);
}

/* A process that shares the environment (a mount running meta in-process)
 * dies inside a read txn: its reader slot keeps the txn id it read at,
 * and LMDB frees no page newer than the oldest reader's snapshot. The
 * surviving engine must clear the dead slot while it runs, or every
 * commit from then on takes fresh pages and the file grows without end
 * (until a restart). */
#define PIN_VAL (64 * 1024)
#define PIN_ROUNDS 300

static int pin_body(kv_txn *t, void *arg)
{
	static char v[PIN_VAL];
	memset(v, *(int *)arg & 0xff, sizeof(v));
	return kv_set(t, kv_str("pin"), kv_mem(v, sizeof(v)));
}

static off_t data_size(const char *url)
{
	char path[1000];
	struct stat st;
	const char *p = strstr(url, "://") + 3;
	snprintf(path, sizeof(path), "%.*s/data.mdb", (int)strcspn(p, "?"), p);
	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

static void t_dead_reader_cleared(void **state)
{
	char url[1000];
	int i = 0;
	kv_engine *e;

	fresh_url(url, sizeof(url), "?sync=none&compact=0&writemap=0");
	e = open_ok(url);
	assert_int_equal(kv_run(e, NULL, pin_body, &i, NULL), 0);
	pid_t pid = child_reader(url, 1, "pin");
	/* Killed holding its snapshot. */
	child_kill(pid);
	/* A few commits, then the file should stop growing. */
	for (i = 1; i <= 10; i++)
		assert_int_equal(kv_run(e, NULL, pin_body, &i, NULL), 0);
	clock_sleep_ms(1100);
	for (; i <= 20; i++)
		assert_int_equal(kv_run(e, NULL, pin_body, &i, NULL), 0);
	off_t before = data_size(url);
	for (; i <= 20 + PIN_ROUNDS; i++)
		assert_int_equal(kv_run(e, NULL, pin_body, &i, NULL), 0);
	off_t grown = data_size(url) - before;
	/* Pinned, each round takes ~17 new pages (~20 MiB in all). */
	if (grown > 4 * 1024 * 1024)
		fail_msg("data.mdb grew %lld bytes over %d rewrites of one %d-byte value",
			 (long long)grown, PIN_ROUNDS, PIN_VAL);
	kv_close(e);
}

/* ---- waits and the block hint ------------------------------------------- */

static int hint_calls;
static int hint_release_fd = -1; /* the holder's release pipe, when set */
static uint64_t hint_ns;

static void count_hint(void)
{
	hint_calls++;
	hint_ns = clock_mono_ns();
	/* Let the writer lock's holder go: without this call the commit
	 * waits for the holder's own timeout. */
	if (hint_release_fd >= 0 && write(hint_release_fd, "g", 1) != 1)
		fail_msg("release pipe");
}

/* lmdb_hold_writer on URL's directory; the child is killed if the test
 * fails midway. */
static pid_t child_writer(const char *url, int hold_ms, int *release)
{
	char p[512];
	const char *path = url + strlen("lmdb://");
	snprintf(p, sizeof(p), "%.*s", (int)strcspn(path, "?"), path);
	pid_t pid = lmdb_hold_writer(p, hold_ms, release);
	assert_true(pid > 0);
	for (int i = 0; i < 4; i++)
		if (!children[i]) {
			children[i] = pid;
			break;
		}
	return pid;
}

/* Block hints in one commit of a fresh engine of OPTS. */
static int hints_of_a_commit(const char *opts)
{
	char url[512];
	fresh_url(url, sizeof(url), opts);
	kv_engine *e = open_ok(url);
	hint_calls = 0;
	assert_int_equal(kv_run(e, NULL, win_body, "a", NULL), 0);
	kv_close(e);
	return hint_calls;
}

static void t_writer_wait_hint(void **state)
{
	char url[512];
	kv_engine *e;
	int st;
	(void)state;

	block_hint_set(count_hint);
	/* sync=window, lock free: the commit does not wait, no hint. Also
	 * shows that the writer lock was found (else every write hints). */
	assert_int_equal(hints_of_a_commit("?sync=window"), 0);
	/* sync=full: every commit waits for the disk. */
	assert_int_equal(hints_of_a_commit("?sync=full"), 1);

	fresh_url(url, sizeof(url), "?sync=window");
	e = open_ok(url);

	/* Another process holds the writer lock: the commit hints first,
	 * and the hint (releasing the holder) comes before the commit ends;
	 * without it the commit would wait the holder's 5 s. */
	pid_t pid = child_writer(url, 5000, &hint_release_fd);
	hint_calls = 0;
	uint64_t t0 = clock_mono_ns();
	assert_int_equal(kv_run(e, NULL, win_body, "b", NULL), 0);
	uint64_t t1 = clock_mono_ns();
	assert_int_equal(hint_calls, 1);
	assert_true(hint_ns >= t0 && hint_ns <= t1);
	assert_true(t1 - t0 < 4000000000ull);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	for (int j = 0; j < 4; j++)
		if (children[j] == pid)
			children[j] = 0;
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	close(hint_release_fd);
	hint_release_fd = -1;
	assert_int_equal(win_has(e, "b"), 1);
	kv_close(e);
	block_hint_set(NULL);
}

static void t_bad_urls(void **state)
{
	const char *bad[] = {
		"lmdb://relative/path", "lmdb://", "lmdb:///tmp/x?sync=maybe",
		"lmdb:///tmp/x?bogus=1", "lmdb:///tmp/x?sync=window&sync_ms=0", "lmdb:///tmp/x?map_size=12q", "nosuch:///x",
		"no-scheme", "mem://host", "mem://?faults=2", "mem://?faults=abc",
		"lmdb:///tmp/x%zz", "lmdb:///proc/no/such/dir", "lmdb:///tmp/x?compact=2",
	};
	char err[256];
	kv_engine *e = NULL;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		int rc = kv_open(bad[i], &e, err, sizeof(err));
		assert_true(rc < 0);
		assert_true(err[0] != 0);
		assert_null(e);
	}
}


/* ---- compaction at open ------------------------------------------------- */

static int age_fill(kv_txn *t, void *arg)
{
	int *i = arg, rc = 0;
	static char big[60000];
	char k[32];

	for (int j = 0; j < 16 && !rc; j++) {
		snprintf(k, sizeof(k), "big/%03d/%02d", *i, j);
		rc = kv_set(t, kv_str(k), kv_mem(big, sizeof(big)));
	}
	snprintf(k, sizeof(k), "keep/%03d", *i);
	return rc ? rc : kv_set(t, kv_str(k), kv_str(k));
}

static int age_drop(kv_txn *t, void *arg)
{
	(void)arg;
	return kv_clear_range(t, kv_str("big/"), kv_str("big0"));
}

static off_t file_size(const char *path)
{
	struct stat st;
	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

/* All 40 keep/ keys are there and the engine takes a write. */
static void aged_check(kv_engine *e)
{
	char k[32];
	int i = 999;

	for (int j = 0; j < 40; j++) {
		snprintf(k, sizeof(k), "keep/%03d", j);
		assert_int_equal(win_has(e, k), 1);
	}
	assert_int_equal(win_has(e, "big/000/00"), 0);
	assert_int_equal(kv_run(e, NULL, age_fill, &i, NULL), 0);
	assert_int_equal(win_has(e, "keep/999"), 1);
}

static void t_compact_at_open(void **state)
{
	char url[512], data[512], tmp[600];
	int pfd[2], one = 1;
	kv_engine *e;
	off_t aged;
	pid_t pid;
	char c;

	(void)state;
	fresh_url(url, sizeof(url), "?sync=none");
	snprintf(data, sizeof(data), "%.*s/data.mdb",
		 (int)(strchr(url, '?') - url - strlen("lmdb://")), url + strlen("lmdb://"));
	snprintf(tmp, sizeof(tmp), "%s.compact", data);
	e = open_ok(url);
	for (int i = 0; i < 40; i++)
		assert_int_equal(kv_run(e, NULL, age_fill, &i, NULL), 0);
	assert_int_equal(kv_run(e, NULL, age_drop, NULL, NULL), 0);
	kv_close(e);
	aged = file_size(data);
	assert_true(aged > (off_t)30 << 20); /* 640 values of 15 pages, now free */

	/* compact=0 leaves the file as it is. */
	snprintf(strrchr(url, '?'), 32, "?sync=none&compact=0");
	e = open_ok(url);
	kv_close(e);
	assert_true(file_size(data) == aged);

	/* Another process has it open: no compaction. */
	assert_int_equal(pipe(pfd), 0);
	pid = child_fork();
	if (pid == 0) {
		kv_engine *ce = NULL;
		char err[256];
		close(pfd[0]);
		if (kv_open(url, &ce, err, sizeof(err)))
			_exit(1);
		if (write(pfd[1], &one, 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	close(pfd[1]);
	assert_int_equal(read(pfd[0], &c, 1), 1);
	close(pfd[0]);
	snprintf(strrchr(url, '?'), 32, "?sync=none");
	e = open_ok(url);
	assert_true(file_size(data) >= aged);
	{
		/* Nor online, and commits are not even held for the attempt. */
		uint64_t n = 1, stall = 1;
		assert_int_equal(kv_lmdb_compact(e, 0), 0);
		kv_lmdb_compact_stats(e, &n, &stall);
		assert_int_equal(n, 0);
		assert_int_equal(stall, 0);
		assert_true(file_size(data) >= aged);
	}
	kv_close(e);
	child_kill(pid);

	/* A crash mid-compaction left a partial copy: it goes, and the
	 * environment is compacted with its contents intact. */
	{
		int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, "partial", 7), 7);
		close(fd);
	}
	e = open_ok(url);
	assert_true(file_size(data) < (off_t)2 << 20);
	assert_int_equal(access(tmp, F_OK), -1);
	aged_check(e);
	kv_close(e);

	/* writemap=1 reopens the compacted file (the map's sparse size). */
	snprintf(strrchr(url, '?'), 32, "?sync=window&writemap=1");
	e = open_ok(url);
	aged_check(e);
	kv_close(e);
}

/* ---- online compaction -------------------------------------------------- */

/* Ages URL's environment: N fills of 16 x 60 KB values, then all dropped. */
static void age(kv_engine *e, int n)
{
	for (int i = 0; i < n; i++)
		assert_int_equal(kv_run(e, NULL, age_fill, &i, NULL), 0);
	assert_int_equal(kv_run(e, NULL, age_drop, NULL, NULL), 0);
}

static void data_path(const char *url, char *out, size_t n)
{
	snprintf(out, n, "%.*s/data.mdb", (int)(strchr(url, '?') - url - strlen("lmdb://")),
		 url + strlen("lmdb://"));
}

struct churn {
	kv_engine *e;
	atomic_int stop;
	int n, failed;
};

static int churn_body(kv_txn *t, void *arg)
{
	struct churn *c = arg;
	char k[32];
	snprintf(k, sizeof(k), "churn/%06d", c->n);
	return kv_set(t, kv_str(k), kv_str(k));
}

static void *churn_main(void *arg)
{
	struct churn *c = arg;
	while (!atomic_load(&c->stop)) {
		if (kv_run(c->e, NULL, churn_body, c, NULL))
			c->failed++;
		else
			c->n++;
	}
	return NULL;
}

struct holder {
	kv_engine *e;
	int hold_ms, ok;
	atomic_int got;
};

/* Holds a read txn with a value pointer for hold_ms, then checks it. */
static void *holder_main(void *arg)
{
	struct holder *h = arg;
	kv_txn *t = NULL;
	struct kv_slice v;
	struct timespec ts = { h->hold_ms / 1000, (long)(h->hold_ms % 1000) * 1000000 };

	if (kv_begin(h->e, KV_RDONLY, &t) || kv_get(t, kv_str("keep/007"), 0, &v) != 1) {
		atomic_store(&h->got, -1);
		return NULL;
	}
	atomic_store(&h->got, 1);
	nanosleep(&ts, NULL);
	h->ok = v.n == 8 && !memcmp(v.p, "keep/007", 8);
	kv_txn_free(t);
	return NULL;
}

static void *compact_main(void *arg)
{
	return (void *)(intptr_t)kv_lmdb_compact(arg, 0);
}

static void compact_online_case(const char *opts, int check_size)
{
	char url[512], data[512];
	kv_engine *e;
	kv_txn *t;
	int64_t v0, v1;
	uint64_t n = 0, stall = 0;
	off_t aged;
	struct churn c = { 0 };
	struct holder h = { 0 };
	pthread_t th, ct;
	void *res;

	fresh_url(url, sizeof(url), opts);
	data_path(url, data, sizeof(data));
	e = open_ok(url);
	age(e, 40);
	aged = file_size(data);
	assert_int_equal(kv_begin(e, KV_RDONLY, &t), 0);
	assert_int_equal(kv_read_version(t, &v0), 0);
	kv_txn_free(t);

	/* A read txn open past the drain limit: the compaction gives up. */
	kv_lmdb_compact_drain_ms = 200;
	h = (struct holder){ .e = e, .hold_ms = 1000 };
	assert_int_equal(pthread_create(&th, NULL, holder_main, &h), 0);
	while (!atomic_load(&h.got))
		usleep(1000);
	assert_int_equal(kv_lmdb_compact(e, 0), 0);
	pthread_join(th, NULL);
	assert_true(h.ok);

	/* One that ends in time keeps its values, then the compaction runs;
	 * commits racing with it all land. (No limit: a loaded host must not
	 * make the 100 ms holder late.) */
	kv_lmdb_compact_drain_ms = 600000;
	c.e = e;
	assert_int_equal(pthread_create(&ct, NULL, churn_main, &c), 0);
	h = (struct holder){ .e = e, .hold_ms = 100 };
	assert_int_equal(pthread_create(&th, NULL, holder_main, &h), 0);
	while (!atomic_load(&h.got))
		usleep(1000);
	{
		pthread_t cp;
		assert_int_equal(pthread_create(&cp, NULL, compact_main, e), 0);
		pthread_join(cp, &res);
	}
	pthread_join(th, NULL);
	assert_true(h.ok);
	assert_int_equal((int)(intptr_t)res, 1);
	usleep(50000);
	atomic_store(&c.stop, 1);
	pthread_join(ct, NULL);
	assert_int_equal(c.failed, 0);
	kv_lmdb_compact_stats(e, &n, &stall);
	print_message("online compaction: %llu, stall %.1f ms, %d racing commits\n",
		      (unsigned long long)n, (double)stall / 1e6, c.n);
	assert_int_equal(n, 1);
	if (check_size)
		assert_true(file_size(data) < aged / 8);
	for (int i = 0; i < c.n; i++) {
		char k[32];
		snprintf(k, sizeof(k), "churn/%06d", i);
		assert_int_equal(win_has(e, k), 1);
	}
	assert_int_equal(kv_begin(e, KV_RDONLY, &t), 0);
	assert_int_equal(kv_read_version(t, &v1), 0);
	kv_txn_free(t);
	assert_true(v1 > v0); /* versions go on increasing */
	aged_check(e);

	/* The background thread does it by itself once the list dominates
	 * again and stops growing. */
	age(e, 40);
	kv_lmdb_compact_check_ms = 20;
	for (int i = 0; i < 200 && n < 2; i++) {
		usleep(50000);
		kv_lmdb_compact_stats(e, &n, &stall);
	}
	kv_lmdb_compact_check_ms = 0;
	assert_int_equal(n, 2);
	aged_check(e);
	kv_close(e);

	/* Reopened: same contents, versions need not continue (kv.h). */
	e = open_ok(url);
	aged_check(e);
	assert_int_equal(win_has(e, "churn/000000"), 1);
	kv_close(e);
}

static void t_compact_online(void **state)
{
	(void)state;
	kv_lmdb_compact_check_ms = 0; /* the test says when, until it checks the thread */
	compact_online_case("?sync=window", 1);
	compact_online_case("?sync=window&writemap=1", 0);
	compact_online_case("?sync=full", 1);
	kv_lmdb_compact_check_ms = 100;
	kv_lmdb_compact_drain_ms = 250;
}

/* Values of 60 KB, 15 pages each, under "PREFIX/%04d" for [from, to). */
struct span {
	const char *prefix;
	int from, to;
};

static int span_fill(kv_txn *t, void *arg)
{
	const struct span *sp = arg;
	static char big[60000];
	char k[32];
	int rc = 0;

	for (int i = sp->from; i < sp->to && !rc; i++) {
		snprintf(k, sizeof(k), "%s/%04d", sp->prefix, i);
		rc = kv_set(t, kv_str(k), kv_mem(big, sizeof(big)));
	}
	return rc;
}

static int span_drop(kv_txn *t, void *arg)
{
	const struct span *sp = arg;
	char b[32], e[32];

	snprintf(b, sizeof(b), "%s/%04d", sp->prefix, sp->from);
	snprintf(e, sizeof(e), "%s/%04d", sp->prefix, sp->to);
	return kv_clear_range(t, kv_str(b), kv_str(e));
}

static void span_add(kv_engine *e, const char *prefix, int from, int to, int drop)
{
	for (int i = from; i < to; i += 10) {
		struct span sp = { prefix, i, i + 10 < to ? i + 10 : to };
		assert_int_equal(kv_run(e, NULL, span_fill, &sp, NULL), 0);
	}
	if (drop) {
		struct span sp = { prefix, from, to };
		assert_int_equal(kv_run(e, NULL, span_drop, &sp, NULL), 0);
	}
}

/* The online bar (free list >= 512 pages and >= 1/4 of the file) sits
 * below the rule at open (4096 pages and half the file): a mass delete
 * too small for the latter still compacts a running engine, and a short
 * list, or one that is a small share of the file, does not. */
static void t_compact_online_bar(void **state)
{
	char url[512], k[32];
	kv_engine *e;
	uint64_t n = 0, stall = 0;

	(void)state;
	kv_lmdb_compact_check_ms = 0; /* the test says when */
	fresh_url(url, sizeof(url), "?sync=window&writemap=1");
	e = open_ok(url);
	span_add(e, "live", 0, 300, 0);   /* 4500 live pages */
	span_add(e, "tmp", 0, 16, 1);     /* ~240 free pages: too few */
	assert_int_equal(kv_lmdb_compact(e, 0), 0);
	span_add(e, "tmp", 100, 160, 1);  /* ~900 free pages of ~5500: too small a share */
	assert_int_equal(kv_lmdb_compact(e, 0), 0);
	kv_lmdb_compact_stats(e, &n, &stall);
	assert_int_equal(n, 0);
	{
		struct span sp = { "live", 100, 300 }; /* 3000 more: ~70% free, < 4096 */
		assert_int_equal(kv_run(e, NULL, span_drop, &sp, NULL), 0);
	}
	assert_int_equal(kv_lmdb_compact(e, 0), 1);
	kv_lmdb_compact_stats(e, &n, &stall);
	assert_int_equal(n, 1);
	for (int i = 0; i < 300; i++) {
		snprintf(k, sizeof(k), "live/%04d", i);
		assert_int_equal(win_has(e, k), i < 100);
	}
	kv_close(e);
	kv_lmdb_compact_check_ms = 100;
}

/* A child ages an environment, commits ack/ keys, and is SIGKILLed at
 * STEP of a forced online compaction; the environment then opens (without
 * compaction at open, then with it) with every key, and takes writes. */
static void compact_crash_case(const char *opts, int step)
{
	char url[512], data[512], tmp[600], raw[600];
	kv_engine *e;
	pid_t pid;
	int st = 0;

	fresh_url(url, sizeof(url), opts);
	data_path(url, data, sizeof(data));
	snprintf(tmp, sizeof(tmp), "%s.compact", data);
	pid = child_fork();
	if (pid == 0) {
		kv_engine *ce = NULL;
		char err[256];
		if (kv_open(url, &ce, err, sizeof(err)))
			_exit(2);
		for (int i = 0; i < 40; i++)
			if (kv_run(ce, NULL, age_fill, &i, NULL))
				_exit(3);
		if (kv_run(ce, NULL, age_drop, NULL, NULL))
			_exit(3);
		kv_lmdb_crash_step = step;
		kv_lmdb_compact(ce, 1);
		_exit(4); /* the step was not reached */
	}
	waitpid(pid, &st, 0);
	for (int i = 0; i < 4; i++)
		if (children[i] == pid)
			children[i] = 0;
	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL)
		fail_msg("step %d: child ended with status %#x", step, st);
	snprintf(raw, sizeof(raw), "%.*s%s&compact=0", (int)(strchr(url, '?') - url), url,
		 strchr(url, '?'));
	e = open_ok(raw);
	aged_check(e);
	kv_close(e);
	e = open_ok(url);
	aged_check(e);
	assert_int_equal(access(tmp, F_OK), -1);
	kv_close(e);
}

static void t_compact_online_crash(void **state)
{
	(void)state;
	kv_lmdb_compact_check_ms = 0; /* only the forced compaction, in the child */
	kv_lmdb_compact_drain_ms = 600000;
	for (int step = 1; step <= 6; step++) {
		compact_crash_case("?sync=window", step);
		compact_crash_case("?sync=window&writemap=1", step);
	}
	kv_lmdb_compact_check_ms = 100;
	kv_lmdb_compact_drain_ms = 250;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(t_group_commit_64, reap_children),
		cmocka_unit_test_teardown(t_group_commit_64_writemap, reap_children),
		cmocka_unit_test_teardown(t_durable_after_kill9, reap_children),
		cmocka_unit_test_teardown(t_window_after_kill9, reap_children),
		cmocka_unit_test_teardown(t_writemap_after_kill9, reap_children),
		cmocka_unit_test_teardown(t_writemap_batches, reap_children),
		cmocka_unit_test_teardown(t_writemap_map_full, reap_children),
		cmocka_unit_test_teardown(t_window_sync, reap_children),
		cmocka_unit_test_teardown(t_window_sync_other_process, reap_children),
		cmocka_unit_test_teardown(t_window_sync_failed, reap_children),
		cmocka_unit_test_teardown(t_compact_sync_failed, reap_children),
		cmocka_unit_test_teardown(t_sync_failed_other_process, reap_children),
		cmocka_unit_test_teardown(t_sync_failed_open_beside, reap_children),
		cmocka_unit_test_teardown(t_one_background_syncer, reap_children),
		cmocka_unit_test_teardown(t_syncer_stopped, reap_children),
		cmocka_unit_test_teardown(t_stale_lock_after_swap, reap_children),
		cmocka_unit_test_teardown(t_open_during_compaction, reap_children),
		cmocka_unit_test_teardown(t_multi_process, reap_children),
		cmocka_unit_test_teardown(t_map_full, reap_children),
		cmocka_unit_test_teardown(t_readers_full, reap_children),
		cmocka_unit_test_teardown(t_compact_at_open, reap_children),
		cmocka_unit_test_teardown(t_compact_online, reap_children),
		cmocka_unit_test_teardown(t_compact_online_crash, reap_children),
		cmocka_unit_test_teardown(t_compact_online_bar, reap_children),
		cmocka_unit_test_teardown(t_dead_reader_cleared, reap_children),
		cmocka_unit_test_teardown(t_bad_urls, reap_children),
		cmocka_unit_test_teardown(t_writer_wait_hint, reap_children),
		cmocka_unit_test_teardown(t_alone, reap_children),
		cmocka_unit_test_teardown(t_spare_txn_reuse, reap_children),
	};
	int rc;

	dir = testenv_tmpdir("kv-lmdb");
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	free(dir);
	testenv_cleanup();
	return rc;
}
