/* test_chunk_flush.c - flush groups (chunk_flush.c): a member's flush is
 * covered by another member's that started after it asked, never by one
 * that started before; a failed flush fails every member that waited
 * through it; a leader killed after taking its ticket leaves the group
 * usable; a member's wait for another member's flush is bounded (a member
 * stopped while it holds the lock), and a leader that dies without waking
 * the waiters costs them a poll interval, not the whole wait. Members are
 * opened on a private group directory, so tests of other sessions on the
 * same disk do not join. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "storage/chunk_flush.h"
#include "../lib/testenv.h"

/* The mapped state, as chunk_flush.c lays it out. */
struct shared_view {
	_Atomic uint32_t magic;
	uint32_t pad;
	_Atomic uint64_t started, done, err_seq;
	_Atomic uint32_t gen, waiting;
};

struct fixture {
	char *dir;       /* a "target" directory */
	char *gdir;      /* the private group directory */
	char path[4096]; /* the group file */
};

static void fixture_init(struct fixture *f, const char *name)
{
	char n[128];
	snprintf(n, sizeof(n), "%s_t", name);
	f->dir = testenv_tmpdir(n);
	snprintf(n, sizeof(n), "%s_g", name);
	f->gdir = testenv_tmpdir(n);
	struct stat st;
	assert_int_equal(stat(f->dir, &st), 0);
	snprintf(f->path, sizeof(f->path), "%s/chainfs-flush-%u-%u", f->gdir, major(st.st_dev),
	         minor(st.st_dev));
	if (chunk_flush_fs_ok(f->dir) == -EOPNOTSUPP) {
		/* TMPDIR on a filesystem groups refuse (tmpfs, btrfs, ...):
		 * test_filesystems covers that; the protocol needs ext4/XFS. */
		skip();
	}
}

static void fixture_fini(struct fixture *f)
{
	free(f->dir);
	free(f->gdir);
}

/* Another handle on the group file, as a foreign member would hold. */
static int open_view(struct fixture *f, struct shared_view **v)
{
	int fd = open(f->path, O_RDWR);
	assert_true(fd >= 0);
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(p != MAP_FAILED);
	*v = p;
	return fd;
}

static void close_view(struct shared_view *v, int fd)
{
	munmap(v, 4096);
	close(fd);
}

struct flusher {
	struct chunk_flush_group *g;
	pthread_t th;
	unsigned wait_ms;
	int rc;
};

static void *flush_main(void *arg)
{
	struct flusher *fl = arg;
	fl->rc = chunk_flush_group_flush(fl->g, fl->wait_ms ? fl->wait_ms : 60000,
	                                 chunk_flush_group_sample(fl->g));
	return NULL;
}

/* Waits (bounded, 20 s) until N members have sampled `started` and wait
 * for a flush (the group file's waiting count, seen through V). */
static void wait_blocked(struct shared_view *v, unsigned n)
{
	for (int i = 0; i < 20000 && atomic_load(&v->waiting) < n; i++)
		usleep(1000);
	assert_int_equal(atomic_load(&v->waiting), n);
}

/* Opens N members of F's group (FL[0..N)) and a foreign handle on the
 * group file (*V; its descriptor returned) that holds the group's lock,
 * as a member whose flush is in progress would. */
static int members_locked_out(struct fixture *f, struct flusher *fl, int n, struct shared_view **v)
{
	for (int i = 0; i < n; i++)
		assert_int_equal(chunk_flush_group_open(f->dir, f->gdir, &fl[i].g), 0);
	int fd = open_view(f, v);
	assert_int_equal(flock(fd, LOCK_EX), 0);
	return fd;
}

/* Starts the flush of each of FL[0..N) on its own thread and waits until
 * every one waits for a flush. */
static void flushes_blocked(struct shared_view *v, struct flusher *fl, int n)
{
	for (int i = 0; i < n; i++)
		pthread_create(&fl[i].th, NULL, flush_main, &fl[i]);
	wait_blocked(v, (unsigned)n);
}

static void test_alone(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f, "flush_alone");
	struct chunk_flush_group *g = NULL;
	assert_int_equal(chunk_flush_group_open(f.dir, f.gdir, &g), 0);
	assert_int_equal(chunk_flush_group_flush(g, 60000, chunk_flush_group_sample(g)), 0);
	assert_int_equal(chunk_flush_group_flush(g, 60000, chunk_flush_group_sample(g)), 0);
	struct chunk_flush_stat st;
	chunk_flush_group_stat(g, &st);
	/* Alone, every call flushes itself: a flush it did not see start
	 * after it asked never covers it. */
	assert_int_equal(st.led, 2);
	assert_int_equal(st.covered, 0);
	struct shared_view *v;
	int fd = open_view(&f, &v);
	assert_int_equal(atomic_load(&v->started), 2);
	assert_int_equal(atomic_load(&v->done), 2);
	close_view(v, fd);
	chunk_flush_group_close(g);
	/* A missing group directory is an error, not a crash. */
	assert_int_equal(chunk_flush_group_open(f.dir, "/nonexistent/chainfs-test", &g), -ENOENT);
	fixture_fini(&f);
}

/* Two members ask while a third party holds the group's lock (a flush in
 * progress that started before they asked): after it, one of them leads a
 * new flush and that flush covers the other. */
static void test_covered(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f, "flush_covered");
	struct flusher m[2] = {0};
	struct shared_view *v;
	int fd = members_locked_out(&f, m, 2, &v);
	/* "A flush in progress": its ticket is taken before they sample. */
	atomic_store(&v->started, 7);
	flushes_blocked(v, m, 2);
	/* It completes: it started before they asked, so covers neither. */
	atomic_store(&v->done, 7);
	assert_int_equal(flock(fd, LOCK_UN), 0);
	pthread_join(m[0].th, NULL);
	pthread_join(m[1].th, NULL);
	assert_int_equal(m[0].rc, 0);
	assert_int_equal(m[1].rc, 0);
	struct chunk_flush_stat sa, sb;
	chunk_flush_group_stat(m[0].g, &sa);
	chunk_flush_group_stat(m[1].g, &sb);
	assert_int_equal(sa.led + sb.led, 1);
	assert_int_equal(sa.covered + sb.covered, 1);
	assert_int_equal(atomic_load(&v->started), 8);
	assert_int_equal(atomic_load(&v->done), 8);
	close_view(v, fd);
	chunk_flush_group_close(m[0].g);
	chunk_flush_group_close(m[1].g);
	fixture_fini(&f);
}

/* A flush that fails while a member waits fails that member too, even
 * when a later flush covers it. */
static void test_failed_flush(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f, "flush_failed");
	struct flusher a = {0};
	struct shared_view *v;
	int fd = members_locked_out(&f, &a, 1, &v);
	flushes_blocked(v, &a, 1);
	atomic_fetch_add(&v->err_seq, 1); /* another member's flush failed */
	assert_int_equal(flock(fd, LOCK_UN), 0);
	pthread_join(a.th, NULL);
	assert_int_equal(a.rc, -EIO);
	/* Nothing failed since: the next call succeeds. */
	assert_int_equal(chunk_flush_group_flush(a.g, 60000, chunk_flush_group_sample(a.g)), 0);
	close_view(v, fd);
	chunk_flush_group_close(a.g);
	fixture_fini(&f);
}

/* A flush of the disk that failed after the member sampled the group
 * (before its writes were submitted) and before its call fails the call,
 * although the flush the call then leads works: the failed flush may have
 * lost the writes that had completed (chunk_flush.c "Errors"). Before,
 * the call took its sample itself, after the writes, and returned 0. A
 * member's own failed sync counts the same (chunk_flush_group_failed),
 * and chunk_flush_group_check sees what the call sees. */
static void test_failed_before_call(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f, "flush_before_call");
	struct chunk_flush_group *a = NULL, *b = NULL;
	assert_int_equal(chunk_flush_group_open(f.dir, f.gdir, &a), 0);
	assert_int_equal(chunk_flush_group_open(f.dir, f.gdir, &b), 0);
	uint64_t since = chunk_flush_group_sample(a); /* a's writes go out */
	assert_int_equal(chunk_flush_group_check(a, since), 0);
	chunk_flush_group_failed(b); /* b's flush fails */
	assert_int_equal(chunk_flush_group_check(a, since), -EIO);
	assert_int_equal(chunk_flush_group_flush(a, 60000, since), -EIO);
	/* Writes sampled after the failure are not affected. */
	assert_int_equal(chunk_flush_group_flush(a, 60000, chunk_flush_group_sample(a)), 0);
	chunk_flush_group_close(a);
	chunk_flush_group_close(b);
	fixture_fini(&f);
}

/* A leader killed after taking its ticket (before its flush ended) drops
 * the lock with its process; the next caller flushes itself. */
static void test_leader_killed(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f, "flush_killed");
	struct chunk_flush_group *g = NULL;
	assert_int_equal(chunk_flush_group_open(f.dir, f.gdir, &g), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct shared_view *v;
		int fd = open(f.path, O_RDWR);
		if (fd < 0 || flock(fd, LOCK_EX))
			_exit(1);
		v = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		if (v == MAP_FAILED)
			_exit(1);
		atomic_fetch_add(&v->started, 1);
		raise(SIGKILL);
		_exit(1);
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	assert_int_equal(chunk_flush_group_flush(g, 60000, chunk_flush_group_sample(g)), 0);
	struct chunk_flush_stat st;
	chunk_flush_group_stat(g, &st);
	assert_int_equal(st.led, 1);
	struct shared_view *v;
	int fd = open_view(&f, &v);
	assert_int_equal(atomic_load(&v->started), 2);
	assert_int_equal(atomic_load(&v->done), 2);
	close_view(v, fd);
	chunk_flush_group_close(g);
	fixture_fini(&f);
}

/* A member stopped while it holds the lock (here: the test holds it):
 * a call gives up after its wait with -ETIMEDOUT, having flushed nothing,
 * and counts it; once the lock is free the next call flushes. */
static void test_bounded_wait(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f, "flush_bounded");
	struct chunk_flush_group *g = NULL;
	assert_int_equal(chunk_flush_group_open(f.dir, f.gdir, &g), 0);
	struct shared_view *v;
	int fd = open_view(&f, &v);
	assert_int_equal(flock(fd, LOCK_EX), 0);
	atomic_store(&v->started, 3); /* its flush, begun before we ask */
	assert_int_equal(chunk_flush_group_flush(g, 30, chunk_flush_group_sample(g)), -ETIMEDOUT);
	struct chunk_flush_stat st;
	chunk_flush_group_stat(g, &st);
	assert_int_equal(st.timeouts, 1);
	assert_int_equal(st.led + st.covered, 0);
	assert_true(st.wait_us >= 30000);
	assert_int_equal(atomic_load(&v->started), 3);
	assert_int_equal(atomic_load(&v->done), 0);
	assert_int_equal(atomic_load(&v->waiting), 0);
	assert_int_equal(flock(fd, LOCK_UN), 0);
	assert_int_equal(chunk_flush_group_flush(g, 30, chunk_flush_group_sample(g)), 0);
	chunk_flush_group_stat(g, &st);
	assert_int_equal(st.led, 1);
	assert_int_equal(atomic_load(&v->done), 4);
	close_view(v, fd);
	chunk_flush_group_close(g);
	fixture_fini(&f);
}

/* A leader that dies mid-flush wakes nobody; the kernel drops its lock.
 * A member that was waiting for it (with a long bound) notices the free
 * lock at its next poll and flushes itself, long before its bound. */
static void test_waiter_after_dead_leader(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f, "flush_dead_leader");
	struct flusher a = { .wait_ms = 60000 };
	assert_int_equal(chunk_flush_group_open(f.dir, f.gdir, &a.g), 0);
	struct shared_view *v;
	int fd = open_view(&f, &v);
	int lk = open(f.path, O_RDWR); /* the leader's own open file description */
	assert_true(lk >= 0);
	assert_int_equal(flock(lk, LOCK_EX), 0);
	atomic_fetch_add(&v->started, 1); /* its ticket, never completed */
	pthread_create(&a.th, NULL, flush_main, &a);
	wait_blocked(v, 1);
	uint64_t t0 = (uint64_t)time(NULL);
	close(lk); /* as the kernel does for a killed process: no gen bump, no wake */
	pthread_join(a.th, NULL);
	assert_int_equal(a.rc, 0);
	assert_true((uint64_t)time(NULL) - t0 < 30); /* not the 60 s bound */
	struct chunk_flush_stat st;
	chunk_flush_group_stat(a.g, &st);
	assert_int_equal(st.led, 1);
	assert_int_equal(st.timeouts, 0);
	assert_int_equal(atomic_load(&v->started), 2);
	assert_int_equal(atomic_load(&v->done), 2);
	close_view(v, fd);
	chunk_flush_group_close(a.g);
	fixture_fini(&f);
}

/* Groups open only where a clean file's fdatasync flushes the device
 * (ext4, XFS); tmpfs (/dev/shm) is refused with -EOPNOTSUPP, and so the
 * engine syncs its files there. */
static void test_filesystems(void **state)
{
	(void)state;
	struct statfs sf;
	if (statfs("/dev/shm", &sf) == 0 && (uint32_t)sf.f_type == 0x01021994u) {
		struct chunk_flush_group *g = NULL;
		assert_int_equal(chunk_flush_fs_ok("/dev/shm"), -EOPNOTSUPP);
		assert_int_equal(chunk_flush_group_open("/dev/shm", "/dev/shm", &g), -EOPNOTSUPP);
		assert_null(g);
	}
	assert_int_equal(chunk_flush_fs_ok("/nonexistent/chainfs-test"), -ENOENT);
	char *d = testenv_tmpdir("flush_fs");
	if (statfs(d, &sf) == 0 &&
	    ((uint32_t)sf.f_type == 0xEF53u || (uint32_t)sf.f_type == 0x58465342u))
		assert_int_equal(chunk_flush_fs_ok(d), 0);
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_alone),
	    cmocka_unit_test(test_covered),
	    cmocka_unit_test(test_failed_flush),
	    cmocka_unit_test(test_failed_before_call),
	    cmocka_unit_test(test_leader_killed),
	    cmocka_unit_test(test_bounded_wait),
	    cmocka_unit_test(test_waiter_after_dead_leader),
	    cmocka_unit_test(test_filesystems),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	testenv_cleanup();
	return rc;
}
