/* test_chunk_flush.c - flush groups (chunk_flush.c): a member's flush is
 * covered by another member's that started after it asked, never by one
 * that started before; a failed flush fails every member that waited
 * through it; a leader killed after taking its ticket leaves the group
 * usable. Members are opened on a private group directory, so tests of
 * other sessions on the same disk do not join. */
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
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
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
	int rc;
};

static void *flush_main(void *arg)
{
	struct flusher *fl = arg;
	fl->rc = chunk_flush_group_flush(fl->g);
	return NULL;
}

/* Blocked flock waiters ("->" lines of /proc/locks) on F's group file. */
static int blocked_waiters(struct fixture *f)
{
	struct stat st;
	if (stat(f->path, &st))
		return 0;
	char ino[32];
	snprintf(ino, sizeof(ino), ":%llu ", (unsigned long long)st.st_ino);
	FILE *fp = fopen("/proc/locks", "r");
	if (!fp)
		return -1;
	char line[512];
	int n = 0;
	while (fgets(line, sizeof(line), fp))
		if (strstr(line, "->") && strstr(line, "FLOCK") && strstr(line, ino))
			n++;
	fclose(fp);
	return n;
}

/* Waits (bounded, 20 s) until N members block on F's lock. */
static void wait_blocked(struct fixture *f, int n)
{
	for (int i = 0; i < 20000 && blocked_waiters(f) < n; i++)
		usleep(1000);
	assert_int_equal(blocked_waiters(f), n);
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
 * every one blocks on the lock. */
static void flushes_blocked(struct fixture *f, struct flusher *fl, int n)
{
	for (int i = 0; i < n; i++)
		pthread_create(&fl[i].th, NULL, flush_main, &fl[i]);
	wait_blocked(f, n);
}

static void test_alone(void **state)
{
	(void)state;
	struct fixture f;
	fixture_init(&f, "flush_alone");
	struct chunk_flush_group *g = NULL;
	assert_int_equal(chunk_flush_group_open(f.dir, f.gdir, &g), 0);
	assert_int_equal(chunk_flush_group_flush(g), 0);
	assert_int_equal(chunk_flush_group_flush(g), 0);
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
	flushes_blocked(&f, m, 2);
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
	flushes_blocked(&f, &a, 1);
	atomic_fetch_add(&v->err_seq, 1); /* another member's flush failed */
	assert_int_equal(flock(fd, LOCK_UN), 0);
	pthread_join(a.th, NULL);
	assert_int_equal(a.rc, -EIO);
	/* Nothing failed since: the next call succeeds. */
	assert_int_equal(chunk_flush_group_flush(a.g), 0);
	close_view(v, fd);
	chunk_flush_group_close(a.g);
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
	assert_int_equal(chunk_flush_group_flush(g), 0);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_alone),
	    cmocka_unit_test(test_covered),
	    cmocka_unit_test(test_failed_flush),
	    cmocka_unit_test(test_leader_killed),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	testenv_cleanup();
	return rc;
}
